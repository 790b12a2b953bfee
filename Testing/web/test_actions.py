"""SegNets Web's panel actions on a real worker and a real MRML scene, without a browser."""

from __future__ import annotations

import types

import pytest

from SegNetsLib.models.library import ModelLibrary


def test_a_failed_finetune_leaves_no_loss_curve_on_the_page(mrml, tmp_path):
    pytest.importorskip("trame_slicer")
    from SegNetsLib.app.logic import SegmentationLogic
    from SegNetsLib.app.worker import ThreadWorker
    from SegNetsLib.web.actions import PanelActions
    from SegNetsLib.web.state import PanelState

    worker = ThreadWorker("test worker")
    job = worker.submit("finetune", description="Fine-tune")  # no volume: the task itself fails
    assert job.wait(30)
    actions = PanelActions.__new__(PanelActions)  # the page's server is not needed to finish a job
    actions._panel = types.SimpleNamespace(
        data=PanelState(busy=True, job_kind="finetune", losses=[0.9, 0.5], iteration=2, validation_dice=0.7)
    )
    actions.logic = SegmentationLogic(mrml.scene, library=ModelLibrary(tmp_path), worker=worker)
    actions._finish(job, "finetune")
    worker.shutdown()
    page = actions.data
    assert page.error.startswith("Fine-tune failed") and not page.busy
    assert (page.losses, page.iteration, page.validation_dice) == ([], 0, None)


def test_the_end_of_a_job_clears_a_refusal_made_while_it_ran():
    from SegNetsLib.app.worker import JobState
    from SegNetsLib.web.actions import PanelActions
    from SegNetsLib.web.state import PanelState

    actions = PanelActions.__new__(PanelActions)  # the page's server is not needed to finish a job
    refusal = "SegNets is working on the current volume; wait or Cancel, then load."
    actions._panel = types.SimpleNamespace(data=PanelState(busy=True, job_kind="finetune", error=refusal))
    actions._finish(types.SimpleNamespace(state=JobState.CANCELLED), "finetune")
    page = actions.data
    assert not page.busy and "cancelled" in page.message
    assert page.error == "", "the page still says a job is running, and hides the cancel message"


def test_back_one_round_replaces_the_newer_rounds_message(mrml, tmp_path):
    """After Back one round the page named the newer round's model as the one kept."""
    pytest.importorskip("trame_slicer")
    from dataclasses import replace

    from model_helpers import tiny_model

    from SegNetsLib.app.logic import SegmentationLogic
    from SegNetsLib.app.worker import ThreadWorker
    from SegNetsLib.card.card import Provenance
    from SegNetsLib.web.actions import PanelActions
    from SegNetsLib.web.state import PanelState

    library = ModelLibrary(tmp_path)
    net, first = tiny_model(id="tiny", provenance=Provenance(round=1))
    library.add(net, first)
    second = replace(
        first, version="1.1.0", provenance=Provenance(round=2, base_model_id="tiny", base_model_version="1.0.0")
    )
    library.add(net, second)
    worker = ThreadWorker("test worker")
    actions = PanelActions.__new__(PanelActions)  # the page's server is not needed to step back
    actions._job, actions._volume_node_id = None, None
    actions._slicer_app = types.SimpleNamespace(scene=mrml.scene)
    actions.logic = SegmentationLogic(mrml.scene, library=library, worker=worker)
    newer = "Fine-tuned (validation Dice 0.700); the volume was segmented with the model kept. New model tiny 1.1.0."
    actions._panel = types.SimpleNamespace(data=PanelState(model_key="tiny@1.1.0", round=2, message=newer))
    actions.back_one_round()
    page = actions.data
    assert (page.model_key, page.round) == ("tiny@1.0.0", 1)
    assert "1.1.0" not in page.message and "tiny@1.0.0" in page.message, page.message
    # round 1 was made before this page opened: its result is not kept, and the page must not say it is shown
    actions._panel.data = PanelState(model_key="tiny@1.1.0", round=2, has_result=True, result_name="CT tiny 1.1.0")
    actions.back_one_round()
    worker.shutdown()
    page = actions.data
    assert (page.model_key, page.result_name) == ("tiny@1.0.0", "CT tiny 1.1.0")
    assert "its result is shown" not in page.message, page.message
    assert "the result shown is still round 2's (tiny@1.1.0)" in page.message, page.message


def test_back_one_round_over_a_removed_round_says_so_and_changes_nothing(mrml, tmp_path):
    """Round 2 removed from the library (segnets models remove): Back one round from round 3 did nothing at all."""
    pytest.importorskip("trame_slicer")
    from dataclasses import replace

    from model_helpers import tiny_model

    from SegNetsLib.app.logic import SegmentationLogic
    from SegNetsLib.app.worker import ThreadWorker
    from SegNetsLib.card.card import Provenance
    from SegNetsLib.web.actions import PanelActions
    from SegNetsLib.web.state import PanelState

    library = ModelLibrary(tmp_path)
    net, first = tiny_model(id="tiny", provenance=Provenance(round=1))
    library.add(net, first)
    for version, number, base in (("1.1.0", 2, "1.0.0"), ("1.2.0", 3, "1.1.0")):
        round_provenance = Provenance(round=number, base_model_id="tiny", base_model_version=base)
        library.add(net, replace(first, version=version, provenance=round_provenance))
    library.remove("tiny", "1.1.0")
    worker = ThreadWorker("test worker")
    actions = PanelActions.__new__(PanelActions)  # the page's server is not needed to step back
    actions._job, actions._volume_node_id = None, None
    actions._slicer_app = types.SimpleNamespace(scene=mrml.scene)
    actions.logic = SegmentationLogic(mrml.scene, library=library, worker=worker)
    actions._panel = types.SimpleNamespace(data=PanelState(model_key="tiny@1.2.0", round=3))
    actions.back_one_round()
    worker.shutdown()
    page = actions.data
    assert (page.model_key, page.round) == ("tiny@1.2.0", 3)
    assert "tiny@1.1.0, which is not in the model library" in page.error and "tiny@1.0.0" in page.error, page.error


def test_fine_tune_refuses_a_segment_wholly_under_a_later_one_rather_than_leaving_it_out(mrml, tmp_path):
    """Painted segments are the ones to learn: a lesion covered wholly by the liver painted over it in another
    layer was left out without a word; the page now says why it cannot be learned."""
    pytest.importorskip("trame_slicer")
    import numpy as np
    import slicer.util
    from trame.app import get_server
    from trame_server.utils.typed_state import TypedState

    from SegNetsLib import mrml as bridge
    from SegNetsLib.app.logic import SegmentationLogic
    from SegNetsLib.app.worker import ThreadWorker
    from SegNetsLib.core.volume import Volume
    from SegNetsLib.web.actions import PanelActions
    from SegNetsLib.web.state import PanelState

    volume_node = bridge.volume_node_from_volume(mrml.scene, Volume(np.zeros((10, 12, 14), np.int16)), "CT")
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "painted")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    lesion = node.GetSegmentation().AddEmptySegment("", "lesion", [0.9, 0.9, 0.1])
    liver = node.GetSegmentation().AddEmptySegment("", "liver", [0.8, 0.4, 0.3])
    masks = {lesion: np.zeros((10, 12, 14), np.uint8), liver: np.zeros((10, 12, 14), np.uint8)}
    masks[liver][4, 2:10, 2:10], masks[lesion][4, 4:6, 4:6] = 1, 1
    for segment_id, mask in masks.items():
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask, node, segment_id, volume_node)
    worker = ThreadWorker("test worker")
    actions = PanelActions.__new__(PanelActions)
    actions._server = get_server(f"segnets-actions-{tmp_path.name}", client_type="vue3")  # the click reads its state
    actions._panel = TypedState(actions._server.state, PanelState)
    actions.data.model_key, actions.data.time_budget_s = "unet3d", 10
    actions._slicer_app = types.SimpleNamespace(scene=mrml.scene)
    actions._volume_node_id, actions._annotation_node_id, actions._job = volume_node.GetID(), node.GetID(), None
    actions.logic = SegmentationLogic(mrml.scene, library=ModelLibrary(tmp_path), worker=worker)
    actions.finetune()
    worker.shutdown()
    assert "segment 'lesion' of 'painted' lies wholly under later segments" in actions.data.error
    assert actions._job is None
