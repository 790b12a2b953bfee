"""``segnets finetune`` on bad input: one-line errors, exit 1, nothing written."""

from __future__ import annotations

import numpy as np
import pytest

from SegNetsLib.cli import main
from SegNetsLib.core.volume import Volume
from SegNetsLib.imageio.volumes import write_volume


@pytest.fixture
def files(tmp_path):
    image = Volume(np.random.default_rng(0).normal(size=(8, 16, 16)).astype(np.float32), spacing=(2, 2, 2))
    labels = np.zeros((8, 16, 16), np.uint8)
    labels[4, 4:10, 4:10] = 1
    paths = {
        "image": write_volume(image, tmp_path / "image.nii.gz"),
        "annotation": write_volume(image.with_array(labels), tmp_path / "ann.nii.gz"),
        "empty": write_volume(image.with_array(np.zeros_like(labels)), tmp_path / "empty.nii.gz"),
        "other": write_volume(Volume(labels, spacing=(1, 1, 1)), tmp_path / "other.nii.gz"),
    }
    return tmp_path, paths


def _run(capsys, *argv) -> tuple[int, str]:
    code = main(["finetune", *map(str, argv)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--time-limit", "-3"], "argument --time-limit: '-3' is not a positive, finite duration"),
        (["--time-limit", "inf"], "argument --time-limit: 'inf' is not a positive, finite duration"),
        (["--iterations", "0"], "argument --iterations: 0 is not a positive integer"),
        (["--output", "seg.txt"], "unknown output type"),
        (["--slices", "9:1"], "must name an axis 0, 1 or 2"),
        (["--model", "no-such-model"], "no-such-model"),
    ],
)
def test_bad_options_are_refused(files, capsys, model_library, extra, message):
    folder, paths = files
    try:
        code, err = _run(capsys, "--input", paths["image"], "--annotations", paths["annotation"], "--no-save", *extra)
    except SystemExit as exit:  # the parser's refusal of an option's value: exit 2, as for every command
        code, err = exit.code, capsys.readouterr().err
    assert code == (2 if "argument --" in message else 1) and message in err and "segnets finetune: error:" in err
    assert not (folder / "seg.txt").exists()


def test_missing_input_is_refused(files, capsys):
    folder, paths = files
    code, err = _run(capsys, "--input", folder / "nope.nii.gz", "--annotations", paths["annotation"])
    assert code == 1 and "nope.nii.gz: no such file (--input)" in err


def test_folder_given_for_a_file_is_named_as_a_folder(files, capsys):
    folder, paths = files
    code, err = _run(capsys, "--input", folder, "--annotations", paths["annotation"])
    assert code == 1 and f"{folder}: is a folder, not a file (--input)" in err
    code, err = _run(capsys, "--input", paths["image"], "--annotations", folder)
    assert code == 1 and f"{folder}: is a folder, not a file (--annotations)" in err


def test_annotation_without_slices_is_refused(files, capsys):
    folder, paths = files
    code, err = _run(
        capsys, "--input", paths["image"], "--annotations", paths["empty"], "--output", folder / "o.seg.nrrd"
    )
    assert code == 1 and "no annotated slice" in err and not (folder / "o.seg.nrrd").exists()


def test_annotation_in_another_geometry_is_refused(files, capsys):
    folder, paths = files
    code, err = _run(
        capsys, "--input", paths["image"], "--annotations", paths["other"], "--output", folder / "o.nii.gz"
    )
    assert code == 1 and "different geometry" in err and not (folder / "o.nii.gz").exists()
    assert "other.nii.gz" in err and "spacing (1.0, 1.0, 1.0) against (2.0, 2.0, 2.0)" in err


@pytest.mark.parametrize("which", ["annotation", "image"])
def test_an_output_that_would_overwrite_an_input_is_refused(files, capsys, which):
    folder, paths = files
    before = paths[which].read_bytes()
    code, err = _run(
        capsys, "--input", paths["image"], "--annotations", paths["annotation"], "--output", paths[which], "--no-save"
    )
    assert code == 1 and "would overwrite" in err and paths[which].read_bytes() == before


def test_out_of_range_and_ignore_valued_paintings_are_refused_naming_the_file(files, capsys, model_library):
    folder, paths = files
    image_path = paths["image"]
    labels = np.zeros((8, 16, 16), np.int16)
    labels[4, 4:10, 4:10] = 300
    big = write_volume(Volume(labels, spacing=(2, 2, 2)), folder / "big.nii.gz")
    code, err = _run(capsys, "--input", image_path, "--annotations", big, "--no-save")
    assert code == 1 and "big.nii.gz holds the label value 300" in err
    labels[4, 4:10, 4:10] = 255
    ignored = write_volume(Volume(labels.astype(np.uint8), spacing=(2, 2, 2)), folder / "ignored.nii.gz")
    code, err = _run(capsys, "--input", image_path, "--annotations", ignored, "--no-save")
    assert code == 1 and "ignored.nii.gz marks every painted voxel with 255" in err


def test_segment_names_colors_and_terminology_of_a_seg_nrrd_annotation_describe_the_result(
    files, capsys, model_library
):
    """As in the panel, which takes them from the painted segments (the terminology was dropped here)."""
    import slicerio

    from SegNetsLib.card.card import Code, LabelInfo, Terminology
    from SegNetsLib.imageio.segmentations import write_segmentation

    folder, paths = files
    image = Volume(np.random.default_rng(0).normal(size=(8, 16, 16)).astype(np.float32), spacing=(2, 2, 2))
    labels = np.zeros((8, 16, 16), np.uint8)
    labels[4, 2:7, 2:7], labels[4, 9:14, 9:14] = 1, 2
    kidney = Terminology(
        Code("SCT", "123037004", "Anatomical Structure"), Code("SCT", "64033007", "Kidney"),
        Code("SCT", "24028007", "Right"),
    )  # fmt: skip
    painted = [LabelInfo(1, "Liver", (0.8, 0.4, 0.3)), LabelInfo(2, "Right kidney", (0.7, 0.5, 0.3), kidney)]
    write_segmentation(image.with_array(labels), painted, folder / "painted.seg.nrrd")
    out = folder / "result.seg.nrrd"
    code, err = _run(
        capsys, "--input", paths["image"], "--annotations", folder / "painted.seg.nrrd", "--output", out,
        "--iterations", "1", "--device", "cpu", "--no-save",
    )  # fmt: skip
    assert code == 0, err
    segments = slicerio.read_segmentation(str(out))["segments"]
    assert [s["name"] for s in segments] == ["Liver", "Right kidney"]
    assert [[round(c, 3) for c in s["color"]] for s in segments] == [[0.8, 0.4, 0.3], [0.7, 0.5, 0.3]]
    assert "terminology" not in segments[0]
    assert segments[1]["terminology"]["type"] == ["SCT", "64033007", "Kidney"]
    assert segments[1]["terminology"]["typeModifier"] == ["SCT", "24028007", "Right"]


def test_a_several_channel_image_learns_from_scratch_on_every_channel(files, capsys, model_library):
    """A 4D NIfTI (channels last) is read as [c, k, j, i]; the new network takes every channel, each z-scored."""
    import SimpleITK as sitk

    folder, paths = files
    image = sitk.GetImageFromArray(
        np.random.default_rng(0).normal(size=(2, 8, 16, 16)).astype(np.float32), isVector=False
    )
    image.SetSpacing((2.0, 2.0, 2.0, 1.0))
    sitk.WriteImage(image, str(folder / "two.nii.gz"))
    code, err = _run(
        capsys, "--input", folder / "two.nii.gz", "--annotations", paths["annotation"], "--no-save", "--iterations", "2"
    )
    assert code == 0 and "Traceback" not in err, err


def test_a_model_of_another_channel_count_is_refused_naming_the_image_file(files, capsys, model_library):
    """A one-channel library model and a two-channel 4D NIfTI: one sentence that names the file."""
    import SimpleITK as sitk
    from model_helpers import tiny_model

    from SegNetsLib.models.library import ModelLibrary

    folder, paths = files
    net, card = tiny_model(id="one-channel", labels=("liver",))
    ModelLibrary(model_library).add(net, card)
    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(size=(2, 8, 16, 16)).astype(np.float32), False)
    image.SetSpacing((2.0, 2.0, 2.0, 1.0))
    sitk.WriteImage(image, str(folder / "two.nii.gz"))
    code, err = _run(
        capsys,
        "--input",
        folder / "two.nii.gz",
        "--annotations",
        paths["annotation"],
        "--model",
        "one-channel",
        "--no-save",
        "--iterations",
        "1",
    )
    assert code == 1 and "Traceback" not in err
    assert "segnets finetune: error: two.nii.gz: the image has 2 channel(s) but model 'one-channel' expects 1" in err


def test_a_run_that_trained_no_iteration_says_so_and_saves_no_model(files, capsys, model_library, monkeypatch):
    """A time limit spent before the first step (a busy machine, a large volume) leaves the new network untrained:
    the run says so and adds no model to the library (the next user would segment with a random network); the
    segmentation is written all the same."""
    import SegNetsLib.finetune.run as run

    monkeypatch.setattr(run, "training_budget_s", lambda *args: 1e-9)  # the budget spent before the first step
    folder, paths = files
    code, err = _run(
        capsys, "--input", paths["image"], "--annotations", paths["annotation"], "--time-limit", "60",
        "--device", "cpu", "--output", folder / "seg.nii.gz",
    )  # fmt: skip
    assert code == 0, err
    assert "the new network trained 0 iterations within the time limit; raise --time-limit" in err
    assert "note: the new network trained 0 iterations within the time limit, so no model was saved" in err
    assert "model: the new network is untrained; nothing new saved" in err and "model -> library" not in err
    assert not any(model_library.iterdir()) and (folder / "seg.nii.gz").is_file()


def test_a_network_from_scratch_is_reported_as_trained_not_fine_tuned(files, capsys, model_library):
    folder, paths = files
    code, err = _run(
        capsys, "--input", paths["image"], "--annotations", paths["annotation"], "--iterations", "2",
        "--device", "cpu", "--no-save",
    )  # fmt: skip
    assert code == 0, err
    assert "trained a new network for 2 iterations" in err and "kept the fine-tuned model" not in err
