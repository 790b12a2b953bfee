"""``./run demo`` end to end with a short training budget (slow: about a minute on a busy CPU)."""

from __future__ import annotations

import re

import pytest

from SegNetsLib.demo import main
from SegNetsLib.segio import read_labelmap


@pytest.mark.slow
def test_demo_writes_segmentation_figure_and_dice(tmp_path, capsys):
    assert main(["--output", str(tmp_path), "--time-limit", "20"]) == 0
    out = capsys.readouterr().out
    dice = float(re.search(r"boundary refinement: ([0-9.]+)", out).group(1))
    assert dice > 0.7
    assert "Fill between slices" in out
    assert (tmp_path / "liver_slices.png").stat().st_size > 10_000
    labelmap = read_labelmap(tmp_path / "liver.seg.nrrd")
    assert labelmap.shape_kji == (112, 101, 122) and labelmap.array.max() == 1
