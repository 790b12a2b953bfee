"""MetaImage headers ITK cannot read safely are refused before ITK reads them
(metaimage_header.check_metaimage_header); the refusals are asked of a child process, which ITK crashes (NDims
-3 or 100) or never returns in (a matrix of 1e308 entries) without the check."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from fuzz_helpers import HEADER_TEST_VOXELS, read_volume_in_child, written_volume
from robustness_cases import expect

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.imageio.metaimage_header import check_metaimage_header
from SegNetsLib.imageio.volumes import read_volume

VOXELS = HEADER_TEST_VOXELS
MARK = b"ElementDataFile = LOCAL\n"


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> bytes:
    return written_volume(tmp_path_factory.mktemp("metaimage"), "ct.mha")


def _with(plain: bytes, **fields: str) -> bytes:
    """``plain`` with header ``fields`` replaced (or added before ElementDataFile)."""
    header, mark, data = plain.partition(MARK)
    lines = header.decode().splitlines()
    for key, value in fields.items():
        found = [i for i, line in enumerate(lines) if line.split(" = ")[0] == key]
        if found:
            lines[found[0]] = f"{key} = {value}"
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines).encode() + b"\n" + mark + data


@pytest.mark.parametrize("ndims", ["-3", "100"])
def test_a_dimension_count_itk_crashes_on_is_refused(plain, tmp_path, ndims):
    path = tmp_path / "ct.mha"
    path.write_bytes(_with(plain, NDims=ndims))
    message = read_volume_in_child(path)
    expect("mha-header", message)
    assert message == f"{path}: the MetaImage header's NDims {ndims} is not from 1 to 4."


def test_a_matrix_of_huge_entries_is_refused_before_itk_loops_on_it(plain, tmp_path):
    path = tmp_path / "ct.mha"
    path.write_bytes(_with(plain, TransformMatrix="4 9999999999 2147483647 1 -1 1 2147483647 1e308 1e30"))
    message = read_volume_in_child(path)
    expect("mha-header", message)
    assert "TransformMatrix holds a value beyond ±1,000,000" in message


def test_voxels_shorter_than_declared_are_refused_here_and_in_a_detached_file(plain, tmp_path):
    path = tmp_path / "ct.mha"
    path.write_bytes(plain[:-100])
    expect("file-cut-short", read_volume_in_child(path))
    sitk.WriteImage(sitk.GetImageFromArray(VOXELS), str(tmp_path / "ct.mhd"))
    raw = tmp_path / "ct.raw"
    raw.write_bytes(raw.read_bytes()[: VOXELS.nbytes // 2])
    message = read_volume_in_child(tmp_path / "ct.mhd")
    assert message.startswith(f"{raw}: the file holds {VOXELS.nbytes // 2:,} bytes but its MetaImage header")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"NDims": "three"}, "NDims 'three' is not 1 integers"),
        ({"DimSize": "18 20"}, "DimSize '18 20' is not 3 integers"),
        ({"DimSize": "18 0 24"}, "DimSize [18, 0, 24] is not a valid image size"),
        ({"ElementSpacing": "4 nan 5"}, "ElementSpacing '4 nan 5' is not 3 finite numbers"),
        ({"Offset": "0 0"}, "Offset '0 0' is not 3 finite numbers"),
        ({"ElementType": "MET_STRING"}, "ElementType 'MET_STRING' is unknown"),
        ({"ElementNumberOfChannels": "1000000"}, "ElementNumberOfChannels 1000000 is not from 1 to 256"),
        ({"HeaderSize": "-7"}, "HeaderSize -7 is below -1"),
    ],
    ids=["ndims-text", "sizes-count", "size-zero", "spacing-nan", "origin-count", "type", "channels", "skip"],
)
def test_each_field_gets_a_refusal_naming_it(plain, tmp_path, fields, named):
    path = tmp_path / "ct.mha"
    path.write_bytes(_with(plain, **fields))
    with pytest.raises(SegNetsError) as refusal:
        check_metaimage_header(path)
    assert str(refusal.value) == f"{path}: the MetaImage header's {named}."


def test_sound_files_are_read_as_before(tmp_path):
    """Plain, compressed, detached (.mhd + .raw) and three-channel files pass the check and read as before."""
    vector = sitk.Compose([sitk.GetImageFromArray(VOXELS)] * 3)
    cases = {"plain.mha": (VOXELS, False), "zipped.mha": (VOXELS, True), "detached.mhd": (VOXELS, False)}
    for name, (array, compress) in cases.items():
        sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / name), useCompression=compress)
        check_metaimage_header(tmp_path / name)
        assert np.array_equal(read_volume(tmp_path / name).array, array)
    sitk.WriteImage(vector, str(tmp_path / "rgb.mha"))
    check_metaimage_header(tmp_path / "rgb.mha")
    assert read_volume(tmp_path / "rgb.mha").array.shape == (3, *VOXELS.shape)


def test_a_header_without_its_data_line_is_refused(tmp_path):
    path = tmp_path / "ct.mha"
    path.write_bytes(b"ObjectType = Image\nNDims = 3\n" + b"x" * 70000)
    with pytest.raises(SegNetsError, match="has no ElementDataFile line"):
        check_metaimage_header(path)
