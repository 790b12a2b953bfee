"""SegNets Web with an empty model library: a new network learns from the painting alone (from scratch), as the
panel's "New ... (from scratch)" does. The whole app on a real scene and worker, driven from Python (no browser)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from SegNetsLib.models.library import ModelLibrary


def test_a_new_network_is_offered_learns_from_the_painting_and_joins_the_library(tmp_path, monkeypatch, data_dir):
    """With no model in the library the page had nothing to Segment or Fine-tune with."""
    pytest.importorskip("trame_slicer")
    from trame.app import get_server

    from SegNetsLib.app.selftest import load_case
    from SegNetsLib.imageio.volumes import write_volume
    from SegNetsLib.mrml import segmentation_from_labelmap, volume_from_node
    from SegNetsLib.web.app import SegNetsWebApp
    from SegNetsLib.web.models import NEW_NETWORK_LABELS

    monkeypatch.setenv("SEGNETS_MODELS", str(tmp_path / "models"))
    image, liver = load_case(data_dir)
    crop = write_volume(image, tmp_path / "crop.nii.gz")
    app = SegNetsWebApp(get_server(f"segnets-new-{tmp_path.name}", client_type="vue3"))
    actions = app.actions
    try:
        assert actions.data.model_key == "unet3d"
        assert [c.title for c in actions.data.models][:1] == ["New unet3d (from scratch)"]

        async def scenario() -> None:
            app._show_volume(app.loader.load_path(crop))
            annotation = actions.annotation_node.GetSegmentation()
            assert [annotation.GetNthSegment(i).GetName() for i in range(annotation.GetNumberOfSegments())] == [
                "Structure"
            ]
            actions.segment()
            assert "has learned nothing yet" in actions.data.error and not actions.data.busy
            actions.data.error = ""
            volume = volume_from_node(actions.volume_node)
            painted = np.zeros(volume.shape_kji, np.uint8)
            slices = np.nonzero(liver.any(axis=(1, 2)))[0][[2, -3]]
            painted[slices] = liver[slices]
            segmentation_from_labelmap(
                actions.scene, volume.with_array(painted), NEW_NETWORK_LABELS, actions.volume_node, "Annotation",
                segmentation_node=actions.annotation_node,
            )  # fmt: skip
            actions.data.time_budget_s = 8
            actions.finetune()
            assert actions.data.busy, actions.data.error
            while actions.data.busy:
                await asyncio.sleep(0.1)

        asyncio.run(scenario())
        assert actions.data.error == "", actions.data.error
        entries = ModelLibrary(tmp_path / "models").list()
        assert len(entries) == 1 and entries[0].card.architecture == "unet3d"
        assert [label.name for label in entries[0].card.labels] == ["Structure"]
        assert actions.data.model_key == f"{entries[0].id}@{entries[0].version}" and actions.data.has_result
    finally:
        actions.logic.worker.shutdown(wait=False)
