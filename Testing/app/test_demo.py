"""``./run demo`` end to end with a short, fixed amount of training (slow: about a minute on 2 cores)."""

from __future__ import annotations

import re

import pytest

from SegNetsLib.app.demo import main
from SegNetsLib.imageio.segmentations import read_labelmap


@pytest.mark.slow
def test_demo_writes_segmentation_figure_and_dice(tmp_path, capsys):
    # a fixed number of iterations, not seconds: a 20 s budget gave 35-40 iterations on a slow machine and Dice
    # from 0.22 to 0.91 between runs; 120 iterations gave 0.880 and 0.906
    assert main(["--output", str(tmp_path), "--iterations", "120"]) == 0
    out = capsys.readouterr().out
    dice = float(re.search(r"boundary refinement: ([0-9.]+)", out).group(1))
    assert dice > 0.7
    assert "Fill between slices" in out
    assert "nan" not in out  # no held-out slice from 3 painted ones: nothing to print, not a NaN
    correction = re.search(
        r"Correction round 2: SegNets suggested axial slice (\d+).*\(([+-][0-9.]+)\) in ([0-9.]+) s", out
    )
    assert correction is not None, out
    assert int(correction.group(1)) not in (76, 90, 104)  # not one of the painted slices
    assert re.search(r"axial slice \d+ \((halfway between|beyond) the painted slice", out), out  # where it lies
    assert (tmp_path / "liver_slices.png").stat().st_size > 10_000
    labelmap = read_labelmap(tmp_path / "liver.seg.nrrd")
    assert labelmap.shape_kji == (112, 101, 122) and labelmap.array.max() == 1


def test_an_output_folder_that_takes_no_files_stops_the_demo_before_training(tmp_path, monkeypatch, capsys):
    """An output place that cannot hold files (here a file stands where its folder should be) used to fail only
    at the end, after minutes of training."""
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be")

    def no_training(*args, **kwargs):
        raise AssertionError("training started with an output folder that takes no files")

    monkeypatch.setattr("SegNetsLib.finetune.rounds.finetune_round", no_training)
    with pytest.raises(SystemExit) as stop:
        main(["--output", str(blocker / "demo"), "--iterations", "1"])
    assert stop.value.code == 2
    assert f"--output {blocker / 'demo'}: cannot write there" in capsys.readouterr().err
