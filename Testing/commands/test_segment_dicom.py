"""``segnets segment`` on a folder of DICOM series: each series one result with the series' geometry, a broken
series refused in one line while the others are segmented."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_helpers import ct_crop, write_series
from inference_helpers import TINY_CARD, tiny_unet

from SegNetsLib.cli import main
from SegNetsLib.imageio.segmentations import read_labelmap
from SegNetsLib.imageio.volumes import volume_from_sitk, write_volume
from SegNetsLib.models.store import save


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save(tiny_unet(), TINY_CARD, tmp_path_factory.mktemp("models") / "tiny")


def _series_image(folder) -> sitk.Image:
    """The series as SimpleITK's GDCM series reader gives it, independently of SegNets."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def test_a_folder_of_series_is_segmented_series_by_series_on_the_series_grid(model, data_dir, tmp_path, capsys):
    crop = ct_crop(data_dir / "ts_ct_sm" / "image.nii.gz")
    inputs = tmp_path / "in"
    write_series(crop, inputs, "CT abdomen", 3, names="A{:04d}")
    write_series(crop, inputs, "gap", 4, names="B{:04d}")[7].unlink()
    write_series(crop, inputs, "tilted", 5, names="C{:04d}", tilt_slice=5)
    write_series(crop[:, :, :1], inputs, "scout", 6, names="D{:04d}")
    (inputs / "notes.txt").write_text("not an image")
    outputs = tmp_path / "out"
    outputs.mkdir()

    assert (
        main(["segment", "--model", str(model), "--input", str(inputs), "--output", str(outputs), "--roi", "off"]) == 1
    )
    err = capsys.readouterr().err
    [result] = list(outputs.iterdir())
    assert result.name.startswith("CT_abdomen_3_") and result.name.endswith(".seg.nrrd")
    assert f"CT_abdomen_3_{result.name.split('_')[-1][: -len('.seg.nrrd')]}: segmented -> {result}" in err
    errors = [line for line in err.splitlines() if "error" in line]
    assert [line.split("DICOM series ")[1].split(" (")[0] for line in errors] == ["4 'gap'", "5 'tilted'", "6 'scout'"]
    assert all(line.startswith(f"segnets segment: error: {inputs}: ") for line in errors)

    labelmap = read_labelmap(result)
    only = tmp_path / "only"
    write_series(crop, only, "CT abdomen", 3)
    reference = volume_from_sitk(_series_image(only))
    assert labelmap.array.shape == reference.array.shape and labelmap.same_geometry(reference)
    # the same voxels as a NIfTI file give the same labels, voxel for voxel
    write_volume(reference, tmp_path / "ct.nii.gz")
    nifti = tmp_path / "ct.seg.nrrd"
    assert (
        main(
            [
                "segment",
                "--model",
                str(model),
                "--input",
                str(tmp_path / "ct.nii.gz"),
                "--output",
                str(nifti),
                "--roi",
                "off",
                "--quiet",
            ]
        )
        == 0
    )
    expected = read_labelmap(nifti).array
    assert np.array_equal(labelmap.array, expected) and 0 < np.count_nonzero(expected) < expected.size


def test_one_file_of_a_series_or_its_folder_segments_the_whole_series(model, data_dir, tmp_path):
    crop = ct_crop(data_dir / "ts_ct_sm" / "image.nii.gz")
    files = write_series(crop, tmp_path / "series")
    for source, output in ((files[3], tmp_path / "one.nii.gz"), (tmp_path / "series", tmp_path / "all")):
        arguments = ["segment", "--model", str(model), "--input", str(source), "--output", str(output), "--quiet"]
        assert main(arguments) == 0
    [folder_result] = list((tmp_path / "all").iterdir())
    assert np.array_equal(read_labelmap(tmp_path / "one.nii.gz").array, read_labelmap(folder_result).array)
    assert read_labelmap(tmp_path / "one.nii.gz").same_geometry(volume_from_sitk(_series_image(tmp_path / "series")))


def test_finetune_reads_a_series_folder_and_writes_its_result_on_the_series_grid(data_dir, tmp_path, capsys):
    crop = ct_crop(data_dir / "ts_ct_sm" / "image.nii.gz")
    write_series(crop, tmp_path / "series")
    series = volume_from_sitk(_series_image(tmp_path / "series"))
    labels = np.zeros(series.array.shape, np.uint8)
    labels[8, 8:20, 8:20] = 1
    write_volume(series.with_array(labels), tmp_path / "painted.nii.gz")
    output = tmp_path / "result.seg.nrrd"
    arguments = ["--input", tmp_path / "series", "--annotations", tmp_path / "painted.nii.gz", "--output", output]
    code = main(["finetune", *map(str, arguments), "--iterations", "1", "--device", "cpu", "--no-save"])
    assert code == 0, capsys.readouterr().err
    assert read_labelmap(output).same_geometry(series)
