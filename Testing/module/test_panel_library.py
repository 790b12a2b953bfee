"""The panel's Models section: SegNetsLogic's own methods (compiled from SegNetsPanel's source) on a real library."""

from __future__ import annotations
import __future__

import ast
import html
import os
import types
import zipfile
from pathlib import Path

import panel_source
import pytest


def _logic_method(name: str, **attributes):
    """An object with ``SegNetsLogic.<name>`` from the module's source plus ``attributes``."""
    namespace = {"Path": Path}
    node = panel_source.find(f"SegNetsLogic.{name}")
    module = ast.Module(body=[node], type_ignores=[])
    flags = __future__.annotations.compiler_flag
    exec(compile(module, str(panel_source.MODULE), "exec", flags=flags, dont_inherit=True), namespace)
    instance = type("StandIn", (), {name: namespace[name]})()
    for key, value in attributes.items():
        setattr(instance, key, value)
    return instance


@pytest.mark.parametrize("typed", ["liver", "liver.ZIP"])
def test_export_writes_a_zip_when_the_save_dialog_returns_a_name_without_its_suffix(tmp_path, typed):
    """Qt's own save dialog (Slicer on Linux) returns the name as typed: the "*.zip" filter adds no suffix, and the
    library writes a model folder at a path without one."""
    from SegNetsLib.app.selftest import add_tiny_model
    from SegNetsLib.models.library import ModelLibrary

    library = ModelLibrary(tmp_path / "models")
    entry = add_tiny_model(library, "tiny", patch_size=(8, 16, 16))
    logic = _logic_method("exportModel", core=lambda: types.SimpleNamespace(library=library))
    written = Path(logic.exportModel(f"{entry.id}@{entry.version}", str(tmp_path / typed)))
    assert written.is_file() and zipfile.is_zipfile(written) and written.name.lower() == "liver.zip"
    assert not (tmp_path / "liver").exists()


@pytest.fixture(scope="module")
def qt_app():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    widgets = pytest.importorskip("PySide6.QtWidgets")
    return widgets.QApplication.instance() or widgets.QApplication([])


def _shown(label_format, text: str) -> str:
    """What a QLabel of ``label_format`` (Qt.TextFormat) shows for ``text``, as plain text."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QTextDocument

    if label_format == Qt.PlainText or (label_format == Qt.AutoText and not Qt.mightBeRichText(text)):
        return text
    document = QTextDocument()
    document.setHtml(text)
    return document.toPlainText()


def test_the_model_card_shows_names_and_descriptions_holding_angle_brackets_as_written(qt_app, tmp_path):
    """The card label shows rich text (the .ui's textFormat): a card's description or a volume name with ``<`` or
    ``&`` must reach the panel as written, not be read as markup and hidden."""
    import dataclasses

    from PySide6.QtCore import QFile
    from PySide6.QtUiTools import QUiLoader
    from PySide6.QtWidgets import QLabel

    from SegNetsLib.app.logic import card_summary
    from SegNetsLib.app.selftest import add_tiny_model
    from SegNetsLib.models.library import ModelLibrary

    handle = QFile(str(panel_source.ROOT / "Resources" / "UI" / "SegNets.ui"))
    assert handle.open(QFile.ReadOnly)
    panel_widget = QUiLoader().load(handle)
    handle.close()
    label_format = panel_widget.findChild(QLabel, "modelCardLabel").textFormat()
    entry = add_tiny_model(ModelLibrary(tmp_path / "models"), "tiny", patch_size=(8, 16, 16))
    description = "For CT <arterial> & portal phases; slices <3 mm thick, Dice > 0.9."
    card = dataclasses.replace(entry.card, description=description)
    namespace = {"_": lambda text: text, "html": html}
    method = _function("ModelLibraryControls.onModelChanged", namespace)
    panel = types.SimpleNamespace(
        ui=types.SimpleNamespace(
            modelComboBox=types.SimpleNamespace(currentData=f"{entry.id}@{entry.version}"),
            modelCardLabel=types.SimpleNamespace(text=""),
        ),
        logic=types.SimpleNamespace(describeModel=lambda reference: card_summary(card)),
        _parameterNode=None,
        _updateButtons=lambda: None,
    )
    method(panel)
    shown = _shown(label_format, panel.ui.modelCardLabel.text)
    assert description in shown.splitlines(), shown
    assert shown.splitlines()[0] == card_summary(card).splitlines()[0]


def _function(qualname: str, namespace: dict):
    """One method of the module's source, compiled into ``namespace``."""
    node = panel_source.find(qualname)
    module = ast.Module(body=[node], type_ignores=[])
    flags = __future__.annotations.compiler_flag
    exec(compile(module, str(panel_source.MODULE), "exec", flags=flags, dont_inherit=True), namespace)
    return namespace[node.name]
