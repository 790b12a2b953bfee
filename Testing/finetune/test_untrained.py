"""A new network that trained no iteration (the time budget spent before its first step: a busy machine, a large
volume, a tiny budget) is no model: the run gives the random walker's result from the painted slices, saves
nothing and says so; the worker the panel and SegNets Web use shows no new model and no round to continue."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from finetune_helpers import TINY

from SegNetsLib.core.progress import CancelToken
from SegNetsLib.core.volume import Volume
from SegNetsLib.evaluation.metrics import dice
from SegNetsLib.finetune.rounds import finetune_round
from SegNetsLib.finetune.save import save_result
from SegNetsLib.models.library import ModelLibrary

OPTIONS = dataclasses.replace(TINY, iterations=None, time_limit_s=60.0)
NOTE = (
    "the new network trained 0 iterations within the time limit, so no model was saved and the result is the random "
    "walker's own from the painted slices; give a larger time budget"
)


@pytest.fixture
def no_training_time(monkeypatch):
    """The run's time budget spent before training's first step: the budget's answer is a nanosecond, and the
    training loop itself runs as ever and stops before its first step."""
    import SegNetsLib.finetune.run as run

    monkeypatch.setattr(run, "training_budget_s", lambda *args: 1e-9)


def _painted() -> tuple[Volume, Volume, np.ndarray]:
    """(image, painting on 3 slices, truth): a bright ellipsoid in noise, 2 mm voxels."""
    rng = np.random.default_rng(0)
    z, y, x = np.indices((16, 24, 24))
    truth = (((z - 8) / 6) ** 2 + ((y - 12) / 8) ** 2 + ((x - 12) / 7) ** 2 <= 1).astype(np.uint8)
    image = Volume((100.0 * truth + rng.normal(0, 10, truth.shape)).astype(np.float32), spacing=(2.0, 2.0, 2.0))
    painted = np.zeros_like(truth)
    painted[[4, 8, 12]] = truth[[4, 8, 12]]
    return image, image.with_array(painted), truth


def test_a_new_network_that_trained_no_iteration_is_not_saved_and_the_result_is_the_walkers(no_training_time, tmp_path):
    image, annotation, truth = _painted()
    result = finetune_round(image, annotation, "unet3d", OPTIONS)
    assert result.iterations == 0 and result.kept == "untrained"
    # no model to continue: no round and no slice to paint next, as the panel and the web page show none
    assert (result.round, result.added_slices, result.suggestion) == (0, {}, None)
    assert [note for note in result.notes if "0 iterations" in note or "refinement" in note] == [NOTE]
    painted = annotation.array > 0
    assert np.array_equal(result.labelmap.array[[4, 8, 12]], annotation.array[[4, 8, 12]])
    assert np.array_equal(result.network_labelmap, result.labelmap.array)  # no random network's labels anywhere
    assert dice(result.labelmap.array == 1, truth == 1) > 0.8 and (result.labelmap.array[~painted] == 1).any()
    library = ModelLibrary(tmp_path / "models")
    assert save_result(result, "ellipsoid", library) is None and library.list() == []


def test_the_worker_of_the_panel_and_the_web_page_saves_no_model_and_says_so(no_training_time, tmp_path):
    from SegNetsLib.app import tasks
    from SegNetsLib.app.logic import where_saved
    from SegNetsLib.app.outcomes import FinetuneOutcome, SegmentResult
    from SegNetsLib.card.card import LabelInfo

    image, annotation, _ = _painted()
    library = ModelLibrary(tmp_path / "models")
    output = tasks.finetune(
        tasks.TaskState(),
        library_root=library.root,
        volume=image,
        annotation=annotation,
        start="unet3d",
        labels=[LabelInfo(1, "ellipsoid", (1.0, 0.5, 0.0), None)],
        options=OPTIONS,
        progress=lambda *args, **kwargs: None,
        cancel=CancelToken(),
    )
    assert output.kept == "untrained" and library.list() == [] and NOTE in output.notes
    # the result's segments are the painted ones, named and colored as painted, as `segnets finetune` writes them
    assert output.entry.card.labels == [LabelInfo(1, "ellipsoid", (1.0, 0.5, 0.0), None)]
    assert where_saved(output, library) == "the new network trained 0 iterations and no model was saved."
    segmentation = SegmentResult(None, None, output.entry.card, [])
    outcome = FinetuneOutcome(output.entry, segmentation, None, output.kept, output.notes, output.round)
    assert not outcome.in_library(library)
    assert outcome.summary(library).startswith(f"No new model. Note: {NOTE}.")


def test_the_web_page_and_the_panel_show_no_new_model_and_no_round_to_continue(no_training_time, mrml, tmp_path):
    """Through the logic both front ends use, on real MRML nodes: the page's model stays the new network to train
    (no round, no suggested slice, no model to step back from), and the panel keeps no round to Update."""
    pytest.importorskip("trame_slicer")
    import types

    import panel_source
    import slicer.util

    from SegNetsLib import mrml as bridge
    from SegNetsLib.app.logic import SegmentationLogic
    from SegNetsLib.app.selftest import wait
    from SegNetsLib.app.worker import ThreadWorker
    from SegNetsLib.web.actions import PanelActions
    from SegNetsLib.web.state import PanelState

    image, annotation, _ = _painted()
    volume_node = bridge.volume_node_from_volume(mrml.scene, image, "CT")
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "painting")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segment = node.GetSegmentation().AddEmptySegment("", "ellipsoid", [1.0, 0.5, 0.0])
    slicer.util.updateSegmentBinaryLabelmapFromArray(annotation.array, node, segment, volume_node)
    worker, library = ThreadWorker("test worker"), ModelLibrary(tmp_path / "models")
    logic = SegmentationLogic(mrml.scene, library=library, worker=worker)
    job = wait(logic.start_finetune(volume_node, node, [segment], "unet3d", 60.0, device="cpu"))
    actions = PanelActions.__new__(PanelActions)  # the page's server is not needed to finish a job
    actions._job, actions._result_node_id, actions._roi_node_id = job, None, None
    actions._volume_node_id, actions._annotation_node_id = volume_node.GetID(), node.GetID()
    actions._slicer_app = types.SimpleNamespace(scene=mrml.scene)
    actions.logic = logic
    actions._panel = types.SimpleNamespace(data=PanelState(busy=True, job_kind="finetune", model_key="unet3d"))
    actions._finish(job, "finetune")
    page = actions.data
    assert page.error == "" and library.list() == [] and page.model_key == "unet3d"
    assert page.message.startswith(f"No new model. Note: {NOTE}."), page.message
    assert (page.round, page.suggested_slice, page.round_text) == (0, None, "")
    assert page.has_result and page.result_name == "CT unet3d fine-tuned on ellipsoid (no model saved)"

    outcome = logic.finish_finetune(job)  # the panel's turn: a round to Update from would name no model
    widget = types.SimpleNamespace(
        _round="the round before",
        _roundNodes={},
        logic=types.SimpleNamespace(core=lambda: logic),
        _refreshModels=lambda select=None: pytest.fail("no new model to select"),
        ui=types.SimpleNamespace(
            stageLabel=types.SimpleNamespace(text=""), roundLabel=types.SimpleNamespace(text="Round 1 ...")
        ),
    )
    namespace = {"_": lambda text: text}
    method = panel_source.class_methods("SegNetsWidget")["_showFinetuneResult"]
    exec(compile(__import__("ast").Module(body=[method], type_ignores=[]), "SegNets.py", "exec"), namespace)
    namespace["_showFinetuneResult"](widget, outcome)
    worker.shutdown()
    assert widget._round is None and widget._roundNodes == {} and widget.ui.roundLabel.text == ""
    assert widget.ui.stageLabel.text.startswith("No new model. Note: the new network trained 0 iterations")
