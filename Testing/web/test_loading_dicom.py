"""SegNets Web and DICOM: a series uploaded as several files (or a folder) or found in a ``--data`` folder loads with
the series' geometry; an upload of several series, a broken series or DICOM files mixed with a volume file is
refused in one sentence, with the scene as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_helpers import ct_crop, write_series
from fuzz_helpers import one_sentence

from SegNetsLib.core.errors import SegNetsError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def loader():
    pytest.importorskip("trame_slicer")
    from trame_slicer.core import SlicerApp

    from SegNetsLib.web.loading import VolumeLoader

    return VolumeLoader(SlicerApp())


@pytest.fixture
def crop(data_dir) -> sitk.Image:
    return ct_crop(data_dir / "ts_ct_sm" / "image.nii.gz")


def _upload(files: list[Path], folder: str = "") -> list[dict]:
    """trame upload dicts for ``files``, each sent in two chunks, named as a browser folder upload may name them."""
    dicts = []
    for path in files:
        content = path.read_bytes()
        dicts.append({"name": f"{folder}{path.name}", "size": len(content), "content": [content[:100], content[100:]]})
    return dicts


def _series_image(files: list[Path]) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(path) for path in files])
    return reader.Execute()


def test_an_uploaded_series_loads_with_the_series_geometry(loader, crop, tmp_path):
    files = write_series(crop, tmp_path / "series")
    (tmp_path / "series" / "notes.txt").write_text("scanned on Monday")  # ignored: not a volume
    upload = _upload(sorted((tmp_path / "series").iterdir())[::-1], folder="../../etc/")
    node = loader.load_uploaded(upload)
    expected = _series_image(files)
    assert node.GetName().startswith("CT_abdomen_3_")
    assert np.allclose(node.GetSpacing(), expected.GetSpacing())
    assert np.allclose(node.GetOrigin(), LPS_TO_RAS @ np.array(expected.GetOrigin()))
    from vtkmodules.util.numpy_support import vtk_to_numpy

    voxels = vtk_to_numpy(node.GetImageData().GetPointData().GetScalars())
    assert np.array_equal(voxels, sitk.GetArrayFromImage(expected).ravel())


def _refused(loader, upload: list[dict]) -> str:
    """The message of a refused upload, after checking the scene (holding a loaded volume) did not change."""
    scene = loader._slicer_app.scene
    volume = scene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
    before = scene.GetNumberOfNodes()
    with pytest.raises(SegNetsError) as refused:
        loader.load_uploaded(upload)
    assert volume is not None and scene.GetNumberOfNodes() == before
    assert scene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode") is volume
    return one_sentence(refused.value)


def test_two_series_a_series_with_a_missing_slice_or_duplicate_names_are_refused(loader, crop, tmp_path):
    good = write_series(crop, tmp_path / "good")
    loader.load_uploaded(_upload(good))
    other = write_series(crop, tmp_path / "mr", description="MR t1", number=4, names="MR{:04d}")
    message = _refused(loader, _upload(good + other))
    assert message.startswith("the upload holds 2 DICOM series (CT_abdomen_3_"), message
    assert "MR_t1_4_" in message and message.endswith("upload the files of one series."), message
    gap = write_series(crop, tmp_path / "gap")
    gap[6].unlink()
    message = _refused(loader, _upload(gap[:6] + gap[7:]))
    assert message.startswith("'CT_abdomen_3_") and "1 slice(s) missing between IM0006 and IM0008." in message
    assert str(tmp_path) not in message and "segnets-upload" not in message, message
    message = _refused(loader, _upload(good) + _upload(good[:1], folder="copy/"))
    assert message == "the upload holds two files named 'IM0001'; upload the files of one series.", message


def test_dicom_files_mixed_with_a_volume_file_are_refused(loader, crop, tmp_path, data_dir):
    files = write_series(crop, tmp_path / "series")
    loader.load_uploaded(_upload(files))
    ct = tmp_path / "ct.nii.gz"
    ct.write_bytes((data_dir / "ts_ct_sm" / "image.nii.gz").read_bytes())
    message = _refused(loader, _upload([*files, ct]))
    assert message.startswith("the upload mixes DICOM files with the volume file 'ct.nii.gz'"), message


def test_the_size_limit_applies_to_the_sum_of_the_files(loader, crop, tmp_path, monkeypatch):
    from SegNetsLib.web import loading

    files = write_series(crop, tmp_path / "series")
    loader.load_uploaded(_upload(files))
    largest = max(path.stat().st_size for path in files)
    monkeypatch.setattr(loading, "MAX_UPLOAD_BYTES", largest + 1)  # each file is under it, the series is not
    message = _refused(loader, _upload(files))
    assert message.startswith(f"the upload of {len(files)} files is "), message


def test_a_data_folder_lists_its_series_beside_its_volume_files(loader, crop, tmp_path, data_dir):
    from SegNetsLib.web.loading import volume_files_in

    files = write_series(crop, tmp_path)
    (tmp_path / "ct.nii.gz").write_bytes((data_dir / "ts_ct_sm" / "image.nii.gz").read_bytes())
    listed = volume_files_in(tmp_path)
    assert listed == [files[0], tmp_path / "ct.nii.gz"]
    node = loader.load_path(listed[0])
    assert node.GetName().startswith("CT_abdomen_3_")
    assert np.allclose(node.GetOrigin(), LPS_TO_RAS @ np.array(_series_image(files).GetOrigin()))
