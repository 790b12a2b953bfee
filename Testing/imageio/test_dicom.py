"""DICOM series as volumes: real series written with SimpleITK, read back with their geometry, broken ones
refused in one sentence naming the series."""

from __future__ import annotations

import re

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_helpers import ct_crop, write_series

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.imageio.volumes import input_stem, listed_volume_files, listed_volumes, read_volume


@pytest.fixture
def crop(data_dir) -> sitk.Image:
    return ct_crop(data_dir / "ts_ct_sm" / "image.nii.gz")


def _oblique(image: sitk.Image) -> sitk.Image:
    rotation = sitk.VersorTransform((0.3, 0.2, 0.9), 0.4).GetMatrix()  # an oblique acquisition
    image = sitk.Image(image)
    image.SetDirection(rotation)
    return image


@pytest.mark.parametrize("oblique", [False, True])
def test_a_series_folder_and_any_of_its_files_read_as_the_volume_with_its_geometry(crop, tmp_path, oblique):
    image = _oblique(crop) if oblique else crop
    files = write_series(image, tmp_path / "series")
    for source in (tmp_path / "series", files[5], files[0]):
        volume = read_volume(source)
        assert np.array_equal(volume.array, sitk.GetArrayFromImage(image))
        assert np.allclose(volume.spacing, image.GetSpacing()) and np.allclose(volume.origin, image.GetOrigin())
        assert np.allclose(volume.direction.ravel(), image.GetDirection(), atol=1e-5)


def test_slices_written_in_reverse_file_order_still_stack_from_first_to_last(crop, tmp_path):
    files = write_series(crop, tmp_path / "series", names="{:03d}")
    for k, path in enumerate(files):  # file names now run against the slice positions
        path.rename(path.with_name(f"x{len(files) - k:03d}"))
    volume = read_volume(tmp_path / "series")
    assert np.array_equal(volume.array, sitk.GetArrayFromImage(crop)) and np.allclose(volume.origin, crop.GetOrigin())


@pytest.mark.parametrize(
    "variant, problem",
    [
        ({"remove": 7}, r"1 slice\(s\) missing between IM0007 and IM0009"),
        ({"remove": (6, 7, 8)}, r"3 slice\(s\) missing between IM0006 and IM0010"),
        ({"tilt_slice": 4}, r"do not all have the same orientation \(IM0005 differs from IM0001\)"),
        ({"depth": 1}, r"a single slice \(a localizer or a 2D image\), not a 3D volume"),
        ({"moved": {9: -1.5}}, r"not evenly spaced \(IM0009 and IM0010 are 1\.5 mm apart, the others 3 mm\)"),
        ({"moved": {1: -3.0}}, r"IM0001 and IM0002 lie at the same slice position"),
    ],
)
def test_a_broken_series_is_refused_in_one_sentence_naming_it(crop, tmp_path, variant, problem):
    image = crop[:, :, : variant.get("depth", crop.GetDepth())]
    files = write_series(
        image, tmp_path / "s", "CT abdomen", 7, tilt_slice=variant.get("tilt_slice"), moved=variant.get("moved")
    )
    removed = variant.get("remove", ())
    for k in (removed,) if isinstance(removed, int) else removed:
        files[k].unlink()
    with pytest.raises(SegNetsError) as raised:
        read_volume(tmp_path / "s")
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 's'}: DICOM series 7 'CT abdomen' (UID ...") and "\n" not in message
    assert re.search(problem, message), message


def test_a_folder_lists_one_file_per_series_beside_its_volume_files_with_safe_unique_stems(crop, tmp_path, data_dir):
    folder = tmp_path / "mixed"
    first = write_series(
        crop, folder, description="CT/abd\x07 ../x", number=2, uid="1.2.840.99.123456", names="A{:02d}"
    )
    second = write_series(
        crop, folder, description="CT/abd\x07 ../x", number=2, uid="1.2.840.98.123456", names="B{:02d}"
    )
    (folder / "ct.nii.gz").write_bytes((data_dir / "ts_ct_sm" / "image.nii.gz").read_bytes())
    (folder / "notes.txt").write_text("not an image")
    assert listed_volumes(folder) == [first[0], second[0], folder / "ct.nii.gz"]
    assert listed_volume_files(folder) == [folder / "ct.nii.gz"]  # volume files only, as before
    stems = [input_stem(path) for path in listed_volumes(folder)]
    assert stems[2] == "ct" and len({stem.casefold() for stem in stems}) == 3
    for stem in stems[:2]:
        assert re.fullmatch(r"CT_abd_x_2_[0-9_]+", stem), stem
    assert input_stem(first[3]) == stems[0]
    with pytest.raises(SegNetsError, match=r"a folder with 2 DICOM series \(CT_abd_x_2_.*\); give one volume file"):
        read_volume(folder)


def test_a_multi_frame_object_is_refused_not_misread(crop, tmp_path):
    image = sitk.Cast(crop + 1024, sitk.sitkUInt16)  # GDCM writes a 3D image as one multi-frame file
    image.SetMetaData("0008|103e", "enhanced")
    (tmp_path / "mf").mkdir()
    sitk.WriteImage(image, str(tmp_path / "mf" / "frames.dcm"))
    with pytest.raises(SegNetsError, match=r"DICOM series 'enhanced' .*: a multi-frame \(enhanced\) DICOM object"):
        read_volume(tmp_path / "mf" / "frames.dcm")
