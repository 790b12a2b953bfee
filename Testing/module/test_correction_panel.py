"""The panel's correction loop controls: Update, Go to suggested slice, Back one round (SegNets.py + .ui)."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import panel_source
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "SegNets" / "SegNets.py"
UI = ROOT / "Resources" / "UI" / "SegNets.ui"
BUTTONS = {"updateButton": "onUpdateButton", "suggestedSliceButton": "onSuggestedSliceButton"}
BUTTONS["previousRoundButton"] = "onPreviousRoundButton"


def test_each_correction_button_is_connected_to_a_handler_of_the_widget():
    source = panel_source.source()
    methods = panel_source.class_methods("SegNetsWidget")
    for button, handler in BUTTONS.items():
        assert re.search(rf'self\.ui\.{button}\.connect\("clicked\(bool\)", self\.{handler}\)', source), button
        assert handler in methods, handler
        assert re.search(rf"self\.ui\.{button}\.enabled = ", source), f"{button} is never enabled or disabled"


def test_the_update_passes_the_suggested_slice_as_reviewed_only_when_checked_empty_and_continues_the_last_model():
    source = panel_source.source()
    body = source[source.index("def onUpdateButton") : source.index("def onSuggestedSliceButton")]
    assert "reviewed=reviewed" in body and "last.model.id" in body and "suggestedEmptyCheckBox.checked" in body
    assert re.search(r"self\.ui\.suggestedEmptyCheckBox\.enabled = ", source)
    assert "JumpSlicesToLocation" in source[source.index("def onSuggestedSliceButton") :]


def test_the_correction_controls_start_disabled_in_the_loaded_ui():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    widgets = pytest.importorskip("PySide6.QtWidgets")
    app = widgets.QApplication.instance() or widgets.QApplication([])
    from PySide6.QtCore import QFile
    from PySide6.QtUiTools import QUiLoader

    handle = QFile(str(UI))
    assert handle.open(QFile.ReadOnly)
    try:
        panel = QUiLoader().load(handle)
    finally:
        handle.close()
    for name in BUTTONS:
        button = panel.findChild(widgets.QPushButton, name)
        assert button is not None and not button.isEnabled() and button.text(), name
    empty = panel.findChild(widgets.QCheckBox, "suggestedEmptyCheckBox")
    assert empty is not None and not empty.isEnabled() and not empty.isChecked() and empty.text()
    assert panel.findChild(widgets.QLabel, "roundLabel") is not None
    assert app is not None


# --- the handlers themselves, compiled from SegNets.py and run on stand-ins --------------------------


def _handler(name: str, namespace: dict):
    """SegNetsWidget.<name> from the module's source (its correction-round controls), compiled into ``namespace``."""
    import __future__

    node = panel_source.class_methods("SegNetsWidget")[name]
    code = compile(
        ast.Module(body=[node], type_ignores=[]), str(MODULE), "exec", flags=__future__.annotations.compiler_flag
    )
    exec(code, namespace)
    return namespace[name]


def _slicer_stand_in():
    import contextlib
    import types

    util = types.SimpleNamespace(tryWithErrorDisplay=lambda *a, **k: contextlib.nullcontext())
    return types.SimpleNamespace(util=util, mrmlScene=None)


@pytest.mark.parametrize("checked", [False, True])
def test_update_continues_the_last_rounds_model_with_the_suggested_slice_reviewed_when_checked_empty(checked):
    import types

    from SegNetsLib.finetune.suggest import SliceSuggestion

    calls = []
    namespace = {"_": lambda text: text, "slicer": _slicer_stand_in()}
    widget = types.SimpleNamespace(
        _round=types.SimpleNamespace(
            model=types.SimpleNamespace(id="liver-ct", version="1.2.0"),
            suggestion=SliceSuggestion(0, 57, 12.0, "area"),
        ),
        _parameterNode=types.SimpleNamespace(
            inputVolume="MR",  # the selector moved on after the round: the round's volume is corrected
            annotationSegmentation="painted",
            annotationSegmentIds=["liver"],
            timeBudgetMinutes=5.0,
            device="cpu",
        ),  # fmt: skip
        logic=types.SimpleNamespace(startFinetune=lambda *args, **kwargs: calls.append((args, kwargs)) or "job"),
        _start=lambda job: calls.append(job),
        ui=types.SimpleNamespace(suggestedEmptyCheckBox=types.SimpleNamespace(checked=checked)),
        _roundVolume=lambda: "CT",
    )
    _handler("onUpdateButton", namespace)(widget)
    (args, kwargs), started = calls
    assert args[0] == "CT" and args[3] == "liver-ct@1.2.0" and started == "job"
    assert kwargs["reviewed"] == ({0: [57]} if checked else None)  # never a hole where the user painted nothing
    assert widget.ui.suggestedEmptyCheckBox.checked is False  # cleared for the next round


def test_back_one_round_selects_the_previous_rounds_model_and_shows_its_segmentation(tmp_path):
    import dataclasses
    import types

    import numpy as np

    from SegNetsLib.app.logic import FinetuneOutcome
    from SegNetsLib.core.volume import Volume
    from SegNetsLib.finetune.options import FinetuneOptions
    from SegNetsLib.finetune.rounds import finetune_round
    from SegNetsLib.finetune.save import save_result
    from SegNetsLib.models.library import ModelEntry, ModelLibrary

    library = ModelLibrary(tmp_path / "models")
    truth = np.zeros((12, 16, 16), np.uint8)
    truth[2:10, 4:12, 4:12] = 1
    image = Volume((100.0 * truth).astype(np.float32), spacing=(2.0, 2.0, 2.0))
    options = FinetuneOptions(
        iterations=1, patch_size=(8, 16, 16), batch_size=1, scratch_downsample=1, device="cpu",
        scratch_build_args={"base_channels": 2, "levels": 2},
    )  # fmt: skip
    painted = np.zeros_like(truth)
    painted[[3, 8]] = truth[[3, 8]]
    first = finetune_round(image, image.with_array(painted), "unet3d", options)
    reference1 = save_result(first, "phantom", library)
    painted[5] = truth[5]
    second = finetune_round(image, image.with_array(painted), (first.net, first.card), options)
    reference2 = save_result(second, "phantom", library)
    version2 = reference2.split("@")[1]

    visible = {}

    def node(reference):
        display = types.SimpleNamespace(SetVisibility=lambda on: visible.__setitem__(reference, on))
        return types.SimpleNamespace(GetDisplayNode=lambda: display)

    nodes = {reference1: node(reference1), reference2: node(reference2)}
    slicer = _slicer_stand_in()
    slicer.mrmlScene = types.SimpleNamespace(GetNodeByID=lambda node_id: nodes[node_id])
    selected = []
    entry = ModelEntry("phantom", version2, library.find("phantom", version2), library.card("phantom", version2))
    widget = types.SimpleNamespace(
        _round=FinetuneOutcome(entry, None, None, "fine-tuned", [], 2, None),
        _roundNodes={reference1: reference1, reference2: reference2},
        logic=types.SimpleNamespace(core=lambda: types.SimpleNamespace(library=library)),
        _refreshModels=lambda select=None: selected.append(select),
        ui=types.SimpleNamespace(roundLabel=types.SimpleNamespace(text="")),
        _updateButtons=lambda: None,
    )
    namespace = {"_": lambda text: text, "slicer": slicer, "dataclasses": dataclasses}
    _handler("onPreviousRoundButton", namespace)(widget)
    assert selected == [reference1] and visible == {reference1: True, reference2: False}
    assert widget._round.round == 1 and f"{widget._round.model.id}@{widget._round.model.version}" == reference1
    assert "round 1" in widget.ui.roundLabel.text and "is not kept here" not in widget.ui.roundLabel.text
    # round 1 made before Slicer started: no node of it to show, and the label says so rather than showing nothing
    visible.clear()
    widget._round = FinetuneOutcome(entry, None, None, "fine-tuned", [], 2, None)
    widget._roundNodes = {reference2: reference2}
    _handler("onPreviousRoundButton", namespace)(widget)
    assert visible == {reference2: False} and widget._round.round == 1
    assert "its segmentation is not kept here (Segment shows it)" in widget.ui.roundLabel.text


def test_go_to_suggested_slice_jumps_to_world_coordinates_of_a_transformed_volume(mrml):
    """JumpSlicesToLocation takes world RAS (vtkSlicerMarkupsLogic passes GetNthControlPointPositionWorld to it);
    a volume's IJK-to-RAS matrix is in its own frame, so the parent transform must be applied."""
    import numpy as np
    import vtk

    from SegNetsLib.app.correction import node_ijk_to_ras, suggestion_ras
    from SegNetsLib.finetune.suggest import SliceSuggestion

    slicer = pytest.importorskip("slicer")
    volume = slicer.util.addVolumeFromArray(np.zeros((6, 7, 8), np.int16), name="CT")
    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = vtk.vtkMatrix4x4()
    shift.SetElement(0, 3, 100.0)
    transform.SetMatrixTransformToParent(shift)
    volume.SetAndObserveTransformNodeID(transform.GetID())
    suggestion = SliceSuggestion(0, 3, 12.0, "area")
    go, jumps = _go_to_suggested_slice(volume, volume, suggestion)
    go()
    local = suggestion_ras(node_ijk_to_ras(volume), (6, 7, 8), suggestion)
    ((r, a, s, centered),) = jumps
    assert np.allclose([r, a, s], local + [100.0, 0.0, 0.0]) and centered is True


def _go_to_suggested_slice(selected, round_volume, suggestion):
    """(Go to suggested slice of a panel whose input selector shows ``selected`` after a round made on
    ``round_volume`` suggested ``suggestion``, the slice views' jumps: (r, a, s, centered) each)."""
    import types

    from SegNetsLib.app.logic import FinetuneOutcome

    jumps = []
    markups = types.SimpleNamespace(
        logic=lambda: types.SimpleNamespace(JumpSlicesToLocation=lambda *a: jumps.append(a))
    )
    namespace = {
        "_": lambda text: text,
        "slicer": types.SimpleNamespace(modules=types.SimpleNamespace(markups=markups)),
    }
    widget = types.SimpleNamespace(
        _parameterNode=types.SimpleNamespace(inputVolume=selected),
        _round=FinetuneOutcome(None, None, None, "fine-tuned", [], 1, suggestion, round_volume),
    )
    widget._roundVolume = types.MethodType(_handler("_roundVolume", namespace), widget)
    go = _handler("onSuggestedSliceButton", namespace)
    return (lambda: go(widget)), jumps


def test_go_to_suggested_slice_goes_to_the_rounds_volume_when_another_is_selected(mrml):
    """The input selector moved to another volume after the round (a second series looked at): the suggested slice
    is the round's volume's, and the views go there, not to the same index of the volume now selected; with the
    round's volume removed, the views stay."""
    import numpy as np

    from SegNetsLib.app.correction import node_ijk_to_ras, suggestion_ras
    from SegNetsLib.finetune.suggest import SliceSuggestion

    slicer = pytest.importorskip("slicer")
    ct = slicer.util.addVolumeFromArray(np.zeros((6, 7, 8), np.int16), name="CT")
    other = slicer.util.addVolumeFromArray(np.zeros((30, 40, 50), np.int16), name="MR", ijkToRAS=np.diag([2, 2, 5, 1]))
    suggestion = SliceSuggestion(0, 3, 12.0, "area")
    go, jumps = _go_to_suggested_slice(other, ct, suggestion)
    go()
    ((r, a, s, _centered),) = jumps
    assert np.allclose([r, a, s], suggestion_ras(node_ijk_to_ras(ct), (6, 7, 8), suggestion))
    mrml.scene.RemoveNode(ct)
    go()
    assert len(jumps) == 1


def test_update_refuses_when_the_rounds_volume_left_the_scene():
    import types

    calls = []
    namespace = {"_": lambda text: text, "slicer": _slicer_stand_in()}
    widget = types.SimpleNamespace(
        _round=types.SimpleNamespace(model=types.SimpleNamespace(id="liver-ct", version="1.2.0"), suggestion=None),
        _parameterNode=types.SimpleNamespace(inputVolume="MR"),
        logic=types.SimpleNamespace(startFinetune=lambda *args, **kwargs: calls.append(args)),
        _start=lambda job: calls.append(job),
        ui=types.SimpleNamespace(suggestedEmptyCheckBox=types.SimpleNamespace(checked=False)),
        _roundVolume=lambda: None,
    )
    with pytest.raises(ValueError, match="last round's volume is no longer in the scene"):
        _handler("onUpdateButton", namespace)(widget)
    assert calls == []  # nothing started on the volume the selector shows
