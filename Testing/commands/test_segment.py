"""``segnets segment`` on real files: outputs, folders, probabilities, exit codes and bad input."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from inference_helpers import TINY_CARD, tiny_unet
from robustness_cases import expect

from SegNetsLib.cli import main
from SegNetsLib.imageio.segmentations import read_labelmap
from SegNetsLib.imageio.volumes import read_volume
from SegNetsLib.models.store import save


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save(tiny_unet(), TINY_CARD, tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def ct_path(data_dir):
    return data_dir / "ts_ct_sm" / "image.nii.gz"


def _segment(model, *arguments):
    return main(["segment", "--model", str(model), *map(str, arguments)])


def test_segments_a_file_into_a_named_seg_nrrd_and_probabilities(model, ct_path, tmp_path, capsys):
    output, probabilities = tmp_path / "ct.seg.nrrd", tmp_path / "ct_probabilities.nii.gz"
    assert (
        _segment(model, "--input", ct_path, "--output", output, "--device", "cpu", "--probabilities", probabilities)
        == 0
    )
    ct = read_volume(ct_path)
    labelmap = read_labelmap(output)
    assert labelmap.same_geometry(ct) and set(np.unique(labelmap.array)) <= {0, 5}
    assert slicerio.segment_names(slicerio.read_segmentation(str(output), skip_voxels=True)) == ["liver"]
    image = sitk.ReadImage(str(probabilities))
    assert image.GetNumberOfComponentsPerPixel() == 2 and image.GetSize() == sitk.ReadImage(str(ct_path)).GetSize()
    assert f"-> {output}" in capsys.readouterr().err


def test_roi_off_and_quiet_write_a_nifti_labelmap_silently(model, ct_path, tmp_path, capsys):
    output = tmp_path / "ct_labels.nii.gz"
    assert _segment(model, "--input", ct_path, "--output", output, "--roi", "off", "--quiet") == 0
    assert read_labelmap(output).same_geometry(read_volume(ct_path))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_a_folder_is_segmented_volume_by_volume_and_a_bad_file_is_reported(model, data_dir, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(data_dir / "ts_ct_sm" / "image.nii.gz", inputs / "ct.nii.gz")
    shutil.copy(data_dir / "ts_mr_sm" / "image.nii.gz", inputs / "mr.nii.gz")
    (inputs / "broken.nrrd").write_bytes(b"NRRD0004\nthis is not an image\n")
    (inputs / "notes.txt").write_text("not a volume")
    outputs = tmp_path / "out"

    assert _segment(model, "--input", inputs, "--output", outputs, "--format", "nii.gz") == 1
    assert sorted(p.name for p in outputs.iterdir()) == ["ct.nii.gz", "mr.nii.gz"]
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "broken.nrrd" in errors[0] and "not a readable image" in errors[0]


def _write(array: np.ndarray, path, vector: bool = False):
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=vector), str(path))
    return path


@pytest.mark.parametrize(
    "name, make, problem",
    [
        ("flat.nii.gz", lambda p: _write(np.random.default_rng(0).random((20, 30)).astype(np.float32), p), "2D image"),
        (
            "multi.nii.gz",
            lambda p: _write(np.random.default_rng(0).random((4, 5, 6, 3)).astype(np.float32), p, True),
            r"3 channel\(s\) but model 'tiny-untrained' expects 1",
        ),
        ("constant.nrrd", lambda p: _write(np.full((6, 7, 8), 40, np.int16), p), "constant"),
        (
            "nan.mha",
            lambda p: _write(np.where(np.eye(8)[None] > 0, np.nan, 1.0).repeat(5, 0).astype(np.float32), p),
            "NaN or infinite",
        ),
        ("garbage.nii.gz", lambda p: p.write_bytes(b"\x1f\x8b garbage"), "not a readable image"),
        ("missing.nii.gz", lambda p: None, "no such file"),
    ],
)
def test_bad_input_exits_1_with_one_line_and_no_output(model, tmp_path, capsys, name, make, problem):
    source = tmp_path / name
    make(source)
    output = tmp_path / "result.seg.nrrd"
    assert _segment(model, "--input", source, "--output", output) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segnets segment: error: ") and name in lines[0]
    assert re.search(problem, lines[0])
    assert not output.exists() and not [p for p in tmp_path.iterdir() if "result" in p.name]


def test_a_4d_nifti_holds_the_channels_of_a_multi_channel_model(tmp_path, data_dir):
    """A Medical Segmentation Decathlon image (4D NIfTI, channels on the last axis) gives the same probabilities
    as the same channels in a vector image, in the same order, on its 3D grid."""
    from SegNetsLib.card.card import ChannelInfo
    from SegNetsLib.nets import build

    card = replace(TINY_CARD, id="tiny-two", in_channels=[ChannelInfo("T1", "MR"), ChannelInfo("T2", "MR")])
    build_args = dict(card.build_args)
    net = build(card.architecture, 2, card.num_classes, build_args.pop("preset"), **build_args).eval()
    model = save(net, card, tmp_path / "two")
    ct = sitk.ReadImage(str(data_dir / "ts_ct_sm" / "image.nii.gz"), sitk.sitkFloat32)
    channels = [ct, sitk.InvertIntensity(ct, 2000.0)]
    sitk.WriteImage(sitk.JoinSeries(channels), str(tmp_path / "msd.nii.gz"))
    for name, order in (("vector.nrrd", channels), ("swapped.nrrd", channels[::-1])):
        sitk.WriteImage(sitk.Compose(order), str(tmp_path / name))
    probabilities = {}
    for name in ("msd.nii.gz", "vector.nrrd", "swapped.nrrd"):
        output, probability = tmp_path / f"{name}.seg.nrrd", tmp_path / f"{name}-p.nii.gz"
        assert _segment(model, "--input", tmp_path / name, "--output", output, "--probabilities", probability) == 0
        assert read_labelmap(output).same_geometry(read_volume(data_dir / "ts_ct_sm" / "image.nii.gz"))
        probabilities[name] = sitk.GetArrayFromImage(sitk.ReadImage(str(probability)))
    assert np.array_equal(probabilities["msd.nii.gz"], probabilities["vector.nrrd"])
    assert not np.allclose(probabilities["msd.nii.gz"], probabilities["swapped.nrrd"], atol=1e-3)


def test_unknown_output_type_is_refused_before_any_work(model, ct_path, tmp_path, capsys):
    assert _segment(model, "--input", ct_path, "--output", tmp_path / "out.png") == 1
    assert "out.png: unknown output type" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--output", "{tmp}/out.mhd"], "out.mhd: unknown output type"),  # a detached header: voxels elsewhere
        (
            ["--output", "{tmp}/o.seg.nrrd", "--probabilities", "{tmp}/p.seg.nrrd"],
            "p.seg.nrrd: probabilities can be written only as",
        ),
        (["--output", "{tmp}/a-file/o.seg.nrrd"], "a-file is a file, not a folder"),
        (["--output", "{tmp}/o.nii.gz", "--probabilities", "{tmp}/o.nii.gz"], "would both be written there"),
    ],
)
def test_unwritable_or_colliding_outputs_are_refused_before_any_work(model, ct_path, tmp_path, capsys, extra, problem):
    (tmp_path / "a-file").write_text("x")
    assert _segment(model, "--input", ct_path, *(e.format(tmp=tmp_path) for e in extra)) == 1
    err = capsys.readouterr().err
    assert problem in err and len(err.strip().splitlines()) == 1, err
    expect("output-over-input", err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing written


def test_a_folder_whose_results_would_collide_or_overwrite_an_input_is_refused(model, data_dir, tmp_path, capsys):
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(data_dir / "ts_ct_sm" / "image.nii.gz", folder / "a.nii.gz")
    shutil.copy(data_dir / "ts_ct_sm" / "image.nii.gz", folder / "b.nii.gz")
    sitk.WriteImage(sitk.ReadImage(str(folder / "a.nii.gz")), str(folder / "a.nrrd"))  # a.nii.gz's result's name
    (folder / "old.seg.nrrd").write_bytes(b"NRRD0004\n")  # a result of an earlier run: never an input
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert _segment(model, "--input", folder, "--output", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "would both be written there" in err
    expect("output-over-input", err)
    assert _segment(model, "--input", folder, "--output", folder, "--format", "nii.gz") == 1
    err = capsys.readouterr().err
    assert "would overwrite --input" in err
    expect("output-over-input", err)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before and not (tmp_path / "out").exists()


def test_hidden_files_of_a_folder_are_no_input(model, data_dir, tmp_path, capsys):
    """The temporary file of a write cut short (a killed run writing beside its inputs) and a macOS '._' copy."""
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    image = (data_dir / "ts_mr_sm" / "image.nii.gz").read_bytes()
    (inputs / "mr.nii.gz").write_bytes(image)
    (inputs / ".mr.nii.gz.k2j4d8aa.partial.nii.gz").write_bytes(image[:5000])
    (inputs / "._mr.nii.gz").write_bytes(b"\x00\x05\x16\x07 Mac OS X")
    assert _segment(model, "--input", inputs, "--output", outputs, "--roi", "off") == 0, capsys.readouterr().err
    assert [p.name for p in outputs.iterdir()] == ["mr.seg.nrrd"]


def test_a_segmentation_given_as_input_is_refused(model, data_dir, tmp_path, capsys):
    """A .seg.nrrd named by mistake (the annotation, not its image) used to be segmented as an image, exit 0."""
    annotation = tmp_path / "ct.seg.nrrd"
    labels = sitk.Cast(sitk.ReadImage(str(data_dir / "ts_ct_sm" / "label.nii.gz")) > 0, sitk.sitkUInt8)
    sitk.WriteImage(labels, str(annotation))  # a 3D 0/1 labelmap: readable as a volume
    assert _segment(model, "--input", annotation, "--output", tmp_path / "out.seg.nrrd", "--roi", "off") == 1
    err = capsys.readouterr().err
    assert "ct.seg.nrrd: a segmentation, not an image volume" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.seg.nrrd").exists()


def test_results_already_in_the_output_folder_are_never_replaced_without_overwrite(model, data_dir, tmp_path, capsys):
    """Output folder = input folder: ct.seg.nrrd beside ct.nii.gz (the user's own segmentation, not an input) was
    replaced silently, as the batch script did before it refused it."""
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(data_dir / "ts_mr_sm" / "image.nii.gz", folder / "ct.nii.gz")
    (folder / "ct.seg.nrrd").write_bytes(b"the user's own segmentation")
    arguments = ["--input", folder, "--output", folder, "--roi", "off", "--device", "cpu", "--quiet"]
    assert _segment(model, *arguments) == 1
    err = capsys.readouterr().err
    assert f"{folder / 'ct.seg.nrrd'} already exists; give another output folder, or --overwrite" in err, err
    assert len(err.strip().splitlines()) == 1
    assert (folder / "ct.seg.nrrd").read_bytes() == b"the user's own segmentation"
    assert _segment(model, "--input", folder / "ct.nii.gz", "--output", folder, "--roi", "off", "--quiet") == 1
    assert (folder / "ct.seg.nrrd").read_bytes() == b"the user's own segmentation"  # a name SegNets chose there too
    assert _segment(model, *arguments, "--overwrite") == 0
    assert slicerio.segment_names(slicerio.read_segmentation(str(folder / "ct.seg.nrrd"))) == ["liver"]
