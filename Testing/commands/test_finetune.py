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
        (["--time-limit", "0"], "--time-limit 0.0 must be a positive"),
        (["--iterations", "0"], "--iterations 0 must be at least 1"),
        (["--output", "seg.txt"], "unknown output type"),
        (["--slices", "9:1"], "must name an axis 0, 1 or 2"),
        (["--model", "no-such-model"], "no-such-model"),
    ],
)
def test_bad_options_are_refused(files, capsys, model_library, extra, message):
    folder, paths = files
    code, err = _run(capsys, "--input", paths["image"], "--annotations", paths["annotation"], "--no-save", *extra)
    assert code == 1 and message in err and "segnets finetune: error:" in err
    assert not (folder / "seg.txt").exists()


def test_missing_input_is_refused(files, capsys):
    folder, paths = files
    code, err = _run(capsys, "--input", folder / "nope.nii.gz", "--annotations", paths["annotation"])
    assert code == 1 and "nope.nii.gz: no such file (--input)" in err


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
