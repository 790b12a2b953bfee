"""NRRD axis vectors too long for ITK (which then reads the axis as 1 mm, silently) are refused as the spacings
they are (nrrd_header.check_nrrd_header)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from robustness_cases import expect

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.imageio.nrrd_header import check_nrrd_header
from SegNetsLib.imageio.volumes import read_volume

VOXELS = np.random.default_rng(0).normal(100, 30, (24, 20, 18)).astype(np.int16)


def _nrrd(tmp_path, directions: str | None, name: str = "ct.nrrd"):
    path = tmp_path / name
    image = sitk.GetImageFromArray(VOXELS)
    image.SetSpacing((4.0, 4.0, 5.0))
    sitk.WriteImage(image, str(path), useCompression=False)
    header, blank, data = path.read_bytes().partition(b"\n\n")
    lines = [ln for ln in header.decode().split("\n") if directions is not None or not ln.startswith("space")]
    if directions is not None:
        lines = [f"space directions: {directions}" if ln.startswith("space directions") else ln for ln in lines]
    path.write_bytes("\n".join(lines).encode() + blank + data)
    return path


def test_vectors_itk_reads_as_one_millimetre_are_refused(tmp_path):
    path = _nrrd(tmp_path, "(1e200,0,0) (0,1e200,0) (0,0,1e200)")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    assert reader.GetSpacing() == (1.0, 1.0, 1.0)  # what ITK alone makes of it
    with pytest.raises(SegNetsError) as refusal:
        read_volume(path)
    expect("nrrd-huge-directions", str(refusal.value))
    assert str(refusal.value).startswith(f"{path}: voxel spacing (1e+200, 1e+200, 1e+200) mm is outside")


def test_one_overlong_axis_among_sound_ones_is_refused(tmp_path):
    with pytest.raises(SegNetsError, match=r"\(4.0, 4.0, 1e\+308\) mm is outside"):
        check_nrrd_header(_nrrd(tmp_path, "(4,0,0) (0,4,0) (1e308,0,5)"))


def test_sound_files_and_non_spatial_axes_pass(tmp_path):
    assert read_volume(_nrrd(tmp_path, "(0,4,0) (4,0,0) (0,0,-5)")).spacing == pytest.approx((4.0, 4.0, 5.0))
    check_nrrd_header(_nrrd(tmp_path, "none (4,0,0) (0,4,0) (0,0,5)", "layers.nrrd"))  # a segmentation's layers
    check_nrrd_header(_nrrd(tmp_path, None, "plain.nrrd"))  # no space fields at all
    check_nrrd_header(_nrrd(tmp_path, "(a,b,c) (0,4,0) (0,0,5)", "text.nrrd"))  # left to ITK, which refuses it
    with pytest.raises(SegNetsError, match="not a readable image file"):
        read_volume(tmp_path / "text.nrrd")
