"""The panel's way from a button to a result node while the user keeps working: its own methods (SegNets.py and
SegNetsPanel, compiled from their source) on stand-in widgets, with SegNetsLib's logic on a real MRML scene."""

from __future__ import annotations
import __future__

import ast
import contextlib
import types
from pathlib import Path

import numpy as np
import panel_source
import pytest

pytest.importorskip("slicer")


def _methods(*qualnames: str, **attributes):
    """An object whose methods are the module's own (``Class.method`` names) plus ``attributes``."""
    namespace = {
        "_": lambda text: text,
        "Path": Path,
        "slicer": types.SimpleNamespace(util=types.SimpleNamespace(tryWithErrorDisplay=_raising)),
    }
    methods = {}
    for qualname in qualnames:
        node = panel_source.find(qualname)
        code = compile(
            ast.Module(body=[node], type_ignores=[]),
            str(panel_source.MODULE),
            "exec",
            flags=__future__.annotations.compiler_flag,
            dont_inherit=True,
        )
        exec(code, namespace)
        methods[node.name] = namespace[node.name]
    exec(compile(ast.Module(body=[panel_source.find("_fmt")], type_ignores=[]), "fmt", "exec"), namespace)
    instance = type("StandIn", (), methods)()
    for key, value in attributes.items():
        setattr(instance, key, value)
    return instance


@contextlib.contextmanager
def _raising(*_args, **_kwargs):
    """slicer.util.tryWithErrorDisplay: here the error reaches the test."""
    yield


def _label(text: str = ""):
    return types.SimpleNamespace(text=text, value=0)


@pytest.fixture
def panel(mrml, tmp_path):
    """(widget, parameter node) of a panel with SegNetsLib's logic on a thread worker and a tiny all-liver model."""
    from SegNetsLib import mrml as bridge
    from SegNetsLib.app.logic import SegmentationLogic
    from SegNetsLib.app.selftest import add_tiny_model
    from SegNetsLib.app.worker import ThreadWorker
    from SegNetsLib.core.volume import Volume
    from SegNetsLib.models.library import ModelLibrary

    library = ModelLibrary(tmp_path / "models")
    add_tiny_model(library, "all-liver", foreground_bias=20.0, patch_size=(8, 16, 16))
    core = SegmentationLogic(mrml.scene, library, ThreadWorker())
    volume = Volume(np.linspace(-100, 200, 8 * 16 * 16, dtype=np.float32).reshape(8, 16, 16), (3.0, 3.0, 3.0))
    params = types.SimpleNamespace(
        inputVolume=bridge.volume_node_from_volume(mrml.scene, volume, "CT"),
        modelReference="all-liver",
        device="cpu",
        roiMode="Off",
        useRoiNode=False,
        roiNode=None,
        outputSegmentation=None,
    )
    logic = _methods("SegNetsLogic.startSegment", "SegNetsLogic.finishSegment", core=lambda: core)
    timer = types.SimpleNamespace(start=lambda: None, stop=lambda: None)
    ui = types.SimpleNamespace(progressBar=_label(), stageLabel=_label(), trainingStatusLabel=_label())
    refreshed = []
    widget = _methods(
        *(f"SegNetsWidget.{name}" for name in panel_source.class_methods("SegNetsWidget") if name != "__init__"),
        logic=logic,
        ui=ui,
        _job=None,
        _timer=timer,
        _parameterNode=params,
        _updateButtons=lambda *args: None,
        _refreshModels=lambda select=None: refreshed.append(select),
        setParameterNode=lambda node: setattr(widget, "_parameterNode", node),
        _round=None,
        _roundNodes={},
        refreshed=refreshed,
    )
    yield widget, params
    core.worker.shutdown()


def test_segment_fills_the_output_chosen_when_it_started_not_one_chosen_while_it_ran(mrml, panel):
    """The output selector stays live while Segment runs: a segmentation chosen meanwhile (here the one the user
    paints in) must keep its segments; the result goes where the run was asked to put it."""
    widget, params = panel
    chosen = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "chosen output")
    params.outputSegmentation = chosen
    widget.onSegmentButton()
    job = widget._job
    assert job is not None and job.wait(120)
    painted = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "painted")
    painted.GetSegmentation().AddEmptySegment("", "my strokes", [0.2, 0.6, 0.9])
    params.outputSegmentation = painted  # chosen for the next run while this one was running
    widget._poll()
    assert widget._job is None
    names = [
        painted.GetSegmentation().GetNthSegment(i).GetName()
        for i in range(painted.GetSegmentation().GetNumberOfSegments())
    ]
    assert names == ["my strokes"], "a node chosen after the start keeps its segments"
    assert chosen.GetSegmentation().GetNthSegment(0).GetName() == "Liver"
    assert widget.ui.stageLabel.text == "Done: chosen output (whole volume)."


def test_an_output_deleted_while_segment_ran_gives_a_new_node(mrml, panel):
    widget, params = panel
    chosen = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "chosen output")
    params.outputSegmentation = chosen
    widget.onSegmentButton()
    assert widget._job.wait(120)
    mrml.scene.RemoveNode(chosen)
    params.outputSegmentation = None  # as the parameter node's reference drops a removed node
    widget._poll()
    assert widget.ui.stageLabel.text == "Done: CT Tiny test 3D U-Net (whole volume)."
    assert mrml.scene.GetFirstNodeByName("CT Tiny test 3D U-Net").GetSegmentation().GetNumberOfSegments() == 1


def test_the_stage_label_says_whether_rois_or_the_whole_volume_were_segmented(mrml, panel):
    """RoI Auto that found a region says so; Off (and Auto that found nothing) says the whole volume was segmented."""
    widget, params = panel
    params.roiMode = "Auto"
    widget.onSegmentButton()
    assert widget._job.wait(120)
    widget._poll()
    assert widget.ui.stageLabel.text == "Done: CT Tiny test 3D U-Net (in 1 RoI(s))."
    params.roiMode = "Off"
    widget.onSegmentButton()
    assert widget._job.wait(120)
    widget._poll()
    assert widget.ui.stageLabel.text == "Done: CT Tiny test 3D U-Net (whole volume)."


def _painted(mrml, params) -> tuple:
    """(annotation node, segment id): a box painted on two axial slices of the panel's volume."""
    import slicer.util

    volume_node = params.inputVolume
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "annotation")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segment_id = node.GetSegmentation().AddEmptySegment("", "liver", [0.1, 0.8, 0.2])
    mask = np.zeros((8, 16, 16), np.uint8)
    mask[[2, 5], 4:12, 4:12] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, node, segment_id, volume_node)
    return node, segment_id


def test_closing_the_scene_while_a_job_runs_says_it_was_cancelled(mrml, panel):
    widget, params = panel
    widget.onSegmentButton()
    widget.ui.stageLabel.text, widget.ui.progressBar.value = "segmenting", 40
    widget.onSceneStartClose(None, None)
    assert widget._job is None
    assert widget.ui.stageLabel.text == "The scene was closed while SegNets worked; the job was cancelled."
    assert widget.ui.progressBar.value == 0 and widget.refreshed == []


def test_closing_the_scene_after_a_finetune_saved_its_model_says_so_and_lists_it(mrml, panel):
    """The job ended (its model saved) between two polls and the scene closed before the next one: the result is
    not shown in the new scene, and the panel says where the model is instead of showing a stale stage."""
    widget, params = panel
    annotation, segment_id = _painted(mrml, params)
    job = widget.logic.core().start_finetune(
        params.inputVolume, annotation, [segment_id], "all-liver", 60.0, device="cpu", iterations=2
    )
    widget._start(job)
    assert job.wait(300) and job.state.value == "done", job.progress()
    widget.ui.stageLabel.text = "saving"
    widget.onSceneStartClose(None, None)
    versions = widget.logic.core().library.versions("all-liver")
    if versions == ["1.0.0", "1.1.0"]:
        assert widget.ui.stageLabel.text == (
            "The scene was closed before the result was shown; the new model all-liver 1.1.0 is in the library."
        )
        assert widget.refreshed == [None]
    else:
        assert widget.ui.stageLabel.text.startswith("The scene was closed before the result was shown; the base model")


def test_the_default_input_is_a_volume_the_input_selector_lists_never_a_label_map_added_first(mrml):
    """The input selector lists vtkMRMLScalarVolumeNode exactly (showChildNodeTypes false; qMRMLSortFilterProxyModel
    skips a node whose class name differs) and no hidden node; GetFirstNodeByClass also returns a label map, which
    the selector then could not show while Segment would run on it."""
    from SegNetsLib.mrml.volumes import first_input_volume

    scene = mrml.scene
    scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "liver-label")
    scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "photo")
    scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "helper").SetHideFromEditors(True)
    assert first_input_volume(scene) is None
    ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    assert first_input_volume(scene) is ct

    params = types.SimpleNamespace(inputVolume=None, device="cpu")
    widget = _methods(
        "SegNetsWidget.initializeParameterNode", logic=types.SimpleNamespace(getParameterNode=lambda: params)
    )
    widget.setParameterNode = lambda node: setattr(widget, "_parameterNode", node)
    widget.initializeParameterNode.__func__.__globals__["slicer"].mrmlScene = scene
    widget.initializeParameterNode()
    assert params.inputVolume is ct, params.inputVolume.GetClassName()
