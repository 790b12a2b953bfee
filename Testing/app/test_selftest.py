"""The SegNetsTest bodies (SegNetsLib.app.selftest) under pytest with slicer-core, as Slicer runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("slicer")

from SegNetsLib.app import selftest  # noqa: E402


def test_find_test_data_in_a_clone(data_dir):
    module_dir = Path(__file__).resolve().parents[2] / "SegNets"
    assert selftest.find_test_data(module_dir) == data_dir


def test_painted_annotation_covers_three_liver_slices(mrml, data_dir):
    from SegNetsLib import mrml as bridge

    image, reference = selftest.load_case(data_dir)
    volume_node = bridge.volume_node_from_volume(mrml.scene, image, "CT")
    node, segment_id, slices = selftest.paint_annotation(mrml.scene, volume_node, reference)
    painted = selftest.segment_mask(node, "Liver", volume_node)
    assert len(slices) == 3 and all(reference[s].any() for s in slices)
    assert sorted(set(painted.nonzero()[0].tolist())) == slices
    assert (painted[slices] == reference[slices]).all()


@pytest.mark.slow
def test_segment_then_finetune_from_three_slices(mrml, data_dir, tmp_path):
    """Segment with a tiny model, then Fine-tune from 3 painted slices on the CPU (about 50 s on 2 busy cores)."""
    report = selftest.run_all(mrml.scene, tmp_path / "models", data_dir)
    print("\n".join(report.lines()))
    assert report.segment_names == ["Liver"]
    assert report.annotation_unchanged
    assert report.finetuned_dice >= selftest.MIN_FINETUNED_DICE
    assert report.finetuned_model.endswith("@1.0.0")
