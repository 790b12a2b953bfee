"""The panel's correction loop controls: Update, Go to suggested slice, Back one round (SegNets.py + .ui)."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "SegNets" / "SegNets.py"
UI = ROOT / "Resources" / "UI" / "SegNets.ui"
BUTTONS = {"updateButton": "onUpdateButton", "suggestedSliceButton": "onSuggestedSliceButton"}
BUTTONS["previousRoundButton"] = "onPreviousRoundButton"


def test_each_correction_button_is_connected_to_a_handler_of_the_widget():
    source = MODULE.read_text()
    widget = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "SegNetsWidget")
    methods = {f.name for f in widget.body if isinstance(f, ast.FunctionDef)}
    for button, handler in BUTTONS.items():
        assert re.search(rf'self\.ui\.{button}\.connect\("clicked\(bool\)", self\.{handler}\)', source), button
        assert handler in methods, handler
        assert re.search(rf"self\.ui\.{button}\.enabled = ", source), f"{button} is never enabled or disabled"


def test_the_update_passes_the_suggested_slice_as_reviewed_and_continues_the_last_model():
    source = MODULE.read_text()
    body = source[source.index("def onUpdateButton") : source.index("def onSuggestedSliceButton")]
    assert "reviewed=reviewed" in body and "last.model.id" in body
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
    assert panel.findChild(widgets.QLabel, "roundLabel") is not None
    assert app is not None
