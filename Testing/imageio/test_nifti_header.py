"""NIfTI headers ITK cannot read safely are refused before ITK reads them (nifti_header.check_nifti_header).

The refusals are asked of a child process with a time limit: without the check, ITK never returns on the sform
case and crashes or allocates gigabytes on a cut-short file, which would stop the test run itself.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import SimpleITK as sitk
from fuzz_helpers import HEADER_TEST_VOXELS, read_volume_in_child, written_volume
from robustness_cases import expect

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.imageio.nifti_header import check_nifti_header
from SegNetsLib.imageio.volumes import read_volume

VOXELS = HEADER_TEST_VOXELS
SROW = 280  # NIfTI-1 byte offset of srow_x[0]; srow_y follows at +16, srow_z at +32


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> bytes:
    return written_volume(tmp_path_factory.mktemp("nifti"), "ct.nii")


def _changed(plain: bytes, changes: dict[int, tuple[str, object]]) -> bytes:
    raw = bytearray(plain)
    for offset, (kind, value) in changes.items():
        struct.pack_into("<" + kind, raw, offset, value)
    return bytes(raw)


# an sform whose first row starts at 0 and holds an infinite value: ITK's ReadImageInformation never returns
SFORM_INF = {SROW: ("f", 0.0), SROW + 20: ("f", float("inf"))}


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_an_infinite_sform_is_refused_before_itk_reads_it(plain, tmp_path, suffix):
    raw = _changed(plain, SFORM_INF)
    path = tmp_path / f"ct{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix == ".nii.gz" else raw)
    message = read_volume_in_child(path)
    expect("nifti-sform-infinite", message)
    assert message.startswith(f"{path}: ") and "srow" in message and "\n" not in message


def test_an_infinite_sform_is_read_when_sform_code_says_unused(plain, tmp_path):
    path = tmp_path / "ct.nii"
    path.write_bytes(_changed(plain, {**SFORM_INF, 254: ("h", 0)}))  # sform_code 0: the rows are not used
    check_nifti_header(path)
    assert read_volume(path).array.shape == VOXELS.shape


@pytest.mark.parametrize("datatype", [4, 128], ids=["int16", "rgb24"])
def test_a_file_shorter_than_its_header_declares_is_refused(plain, tmp_path, datatype):
    """RGB24 on int16 voxels reads past the end (a crash in the fuzzing run); int16 cut in half is the
    plain case of a file copied incompletely."""
    path = tmp_path / "ct.nii"
    path.write_bytes(_changed(plain, {70: ("h", datatype)})[: len(plain) - (VOXELS.nbytes // 2) * (datatype == 4)])
    message = read_volume_in_child(path)
    expect("file-cut-short", message)
    assert f"{path.stat().st_size:,} bytes" in message


def test_a_gzip_stream_cut_short_or_shorter_than_declared_is_refused(plain, tmp_path):
    """ITK reads both silently, filling the missing voxels with zeros."""
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(plain)[:-500])
    with pytest.raises(SegNetsError, match="the compressed file is damaged or cut short"):
        read_volume(cut)
    longer = tmp_path / "longer.nii.gz"
    longer.write_bytes(gzip.compress(_changed(plain, {44: ("h", 30000)})))  # dim[2]: 30000 rows declared
    with pytest.raises(SegNetsError) as refusal:
        read_volume(longer)
    expect("file-cut-short", str(refusal.value))
    assert f"holds {len(plain):,} bytes" in str(refusal.value)


def test_a_written_gzip_file_is_checked_by_its_trailer(plain, tmp_path):
    """A file ITK just wrote is checked by its gzip trailer's length (4 bytes read, no decompression): a complete
    file passes, one cut short, or declaring more voxels than it holds, is refused."""
    whole = tmp_path / "whole.nii.gz"
    whole.write_bytes(gzip.compress(plain))
    check_nifti_header(whole, written=True)
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(plain)[:-500])
    with pytest.raises(SegNetsError, match=f"^{cut}: the compressed file's trailer gives .* the file is cut short"):
        check_nifti_header(cut, written=True)
    longer = tmp_path / "longer.nii.gz"
    longer.write_bytes(gzip.compress(_changed(plain, {44: ("h", 30000)})))  # dim[2]: 30000 rows declared
    with pytest.raises(SegNetsError, match=f"trailer gives {len(plain):,} bytes"):
        check_nifti_header(longer, written=True)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({70: ("h", 3)}, "datatype 3"),
        ({40: ("h", 9)}, "dim field"),
        ({44: ("h", 0)}, "dim field"),
        ({80: ("f", float("nan"))}, "pixdim"),
        ({256: ("f", float("inf"))}, "qform"),
        ({108: ("f", 12.0)}, "vox_offset"),
    ],
    ids=["datatype", "dimension-count", "zero-size", "spacing", "quaternion", "offset-in-header"],
)
def test_each_field_gets_a_refusal_naming_it(plain, tmp_path, changes, field):
    path = tmp_path / "ct.nii"
    path.write_bytes(_changed(plain, changes))
    with pytest.raises(SegNetsError, match=field) as refusal:
        check_nifti_header(path)
    assert str(refusal.value).startswith(f"{path}: the NIfTI header's ")


# the whole NIfTI-1 header as struct fields, for writing it in the other byte order
HEADER_FIELDS = "i10s18sihsB8h3f4h8f3fh2B4f2i80s24s2h6f12f16s4s"


def test_big_endian_headers_are_checked_too(plain, tmp_path):
    fields = struct.unpack_from("<" + HEADER_FIELDS, plain)
    offset = int(struct.unpack_from("<f", plain, 108)[0])
    big_endian = struct.pack(">" + HEADER_FIELDS, *fields) + plain[348:offset] + VOXELS.astype(">i2").tobytes()
    path = tmp_path / "ct.nii"
    path.write_bytes(big_endian)
    check_nifti_header(path)
    assert np.array_equal(read_volume(path).array, VOXELS)  # ITK reads it as the check does
    path.write_bytes(big_endian[:SROW] + struct.pack(">2f", 0.0, float("inf")) + big_endian[SROW + 8 :])
    with pytest.raises(SegNetsError, match="srow"):
        check_nifti_header(path)


def test_a_header_size_field_itk_ignores_does_not_skip_the_check(plain, tmp_path):
    path = tmp_path / "ct.nii"
    path.write_bytes(_changed(plain, {**SFORM_INF, 0: ("i", 540)}))
    with pytest.raises(SegNetsError, match="srow"):
        check_nifti_header(path)


def test_other_files_are_left_to_their_readers(tmp_path):
    image = sitk.GetImageFromArray(VOXELS)
    for name in ("ct.nrrd", "ct.mha", "ct.nii.gz"):
        sitk.WriteImage(image, str(tmp_path / name))
        check_nifti_header(tmp_path / name)
        assert read_volume(tmp_path / name).array.shape == VOXELS.shape
    (tmp_path / "empty.nii").write_bytes(b"")
    check_nifti_header(tmp_path / "empty.nii")  # too short for a NIfTI header: ITK's reader refuses it
    with pytest.raises(SegNetsError, match="not a readable image file"):
        read_volume(tmp_path / "empty.nii")
