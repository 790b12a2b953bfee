"""The Slicer module shell without Slicer: SegNets.py compiles and matches its .ui, and the .ui renders.

pytest never imports SegNets.py (it needs Slicer's Qt); it byte-compiles it, checks every
``self.ui.<name>`` against the .ui's objectNames and every ``SlicerParameterName`` against the
parameter node, and loads the .ui with PySide6's QUiLoader offscreen. ``python Testing/test_module_ui.py``
re-renders ``Resources/Screenshots/panel.png`` for the README.
"""

from __future__ import annotations

import ast
import os
import py_compile
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import panel_source
import pytest

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "Resources" / "UI" / "SegNets.ui"
SCREENSHOT = ROOT / "Resources" / "Screenshots" / "panel.png"


def _ui_tree() -> ET.Element:
    return ET.parse(UI).getroot()


def _object_names() -> set[str]:
    return {w.get("name") for w in _ui_tree().iter("widget")} | {w.get("name") for w in _ui_tree().iter("layout")}


def _parameter_fields() -> dict[str, ast.expr]:
    """Annotated fields of the @parameterNodeWrapper class of the module (SegNetsPanel/logic.py)."""
    for node in panel_source.top_level():
        if isinstance(node, ast.ClassDef) and any(
            isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in node.decorator_list
        ):
            return {s.target.id: s.annotation for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("the module has no @parameterNodeWrapper class")


def test_module_byte_compiles(tmp_path):
    for path in panel_source.FILES:
        py_compile.compile(str(path), cfile=str(tmp_path / f"{path.stem}.pyc"), doraise=True)


def test_every_ui_reference_exists_in_the_ui_file():
    used = set(re.findall(r"self\.ui\.(\w+)", panel_source.source()))
    assert used, "SegNets.py uses no self.ui.<name>; the check would be empty"
    missing = sorted(used - _object_names())
    assert not missing, f"SegNets.py uses widgets the .ui does not define: {missing}"


def test_every_bound_widget_names_a_parameter_node_field():
    fields = _parameter_fields()
    bound = {}
    for widget in _ui_tree().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[widget.get("name")] = prop.find("string").text
    assert len(bound) >= 6
    unknown = {w: p for w, p in bound.items() if p not in fields}
    assert not unknown, f"widgets bound to parameters the parameter node lacks: {unknown}"


def test_choice_combo_items_match_the_parameter_choices():
    choices = ast.literal_eval(
        re.search(r"roiMode: Annotated\[str, Choice\((\[.*?\])\)\]", panel_source.source()).group(1)
    )
    combo = next(w for w in _ui_tree().iter("widget") if w.get("name") == "roiModeComboBox")
    items = [item.find("property/string").text for item in combo.findall("item")]
    assert items == choices


def test_the_import_dialog_offers_only_files_the_panel_can_import():
    """Bare weights need an architecture and labels the panel cannot ask for (SegNetsLib.app.logic.import_model_file
    refuses them): the dialog offers model zips and card.json only."""
    handler = panel_source.find("ModelLibraryControls.onImportModel")
    (call,) = [
        n for n in ast.walk(handler) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "getOpenFileName"
    ]
    filters = ast.literal_eval(call.args[3].args[0])  # _("...")
    assert "*.zip" in filters and "card.json" in filters
    assert not re.search(r"\*\.(safetensors|pt|pth)\b", filters), filters


def test_custom_widgets_declare_their_base_class():
    declared = {c.find("class").text: c.find("extends").text for c in _ui_tree().iter("customwidget")}
    used = {w.get("class") for w in _ui_tree().iter("widget")} - {None}
    custom = {name for name in used if name.startswith(("ctk", "qMRML", "qSlicer"))}
    assert custom <= set(declared), f"custom widgets missing from <customwidgets>: {custom - set(declared)}"
    assert all(declared.values())


def test_cmake_files_follow_the_extension_template_and_name_existing_files():
    top = (ROOT / "CMakeLists.txt").read_text()
    for required in (
        "find_package(Slicer REQUIRED)",
        "include(${Slicer_USE_FILE})",
        "add_subdirectory(SegNets)",
        "Slicer_EXTENSION_GENERATE_CONFIG",
        "Slicer_EXTENSION_CPACK",
        'EXTENSION_DEPENDS "PyTorch"',
        'EXTENSION_CATEGORY "Segmentation"',
    ):
        assert required in top, required
    module = (ROOT / "SegNets" / "CMakeLists.txt").read_text()
    assert "slicerMacroBuildScriptedModule(" in module
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in module
    listed = re.findall(r"^\s+(Resources/\S+)$", module, flags=re.M)
    listed = [name.replace("${MODULE_NAME}", "SegNets") for name in listed]
    assert len(listed) == 3
    for name in listed + ["SegNets/Scripts/segnets_batch.py", "Testing/Data/ts_ct_sm/image.nii.gz"]:
        assert (ROOT / name).is_file(), name
    lines = [line.split("#")[0].strip() for line in (ROOT / "Resources" / "requirements.txt").read_text().splitlines()]
    packages = [re.split(r"[<>=!~ \[]", line)[0].lower() for line in lines if line]
    assert "monai" in packages and "safetensors" in packages
    assert "torch" not in packages, "torch must come from the PyTorch extension, never a pinned build"


def test_icon_is_a_128_pixel_png():
    from PIL import Image

    with Image.open(ROOT / "Resources" / "Icons" / "SegNets.png") as icon:
        assert (icon.format, icon.size) == ("PNG", (128, 128))


# --- loading the .ui with PySide6 ------------------------------------------------------------------


@pytest.fixture(scope="module")
def qt_app():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    widgets = pytest.importorskip("PySide6.QtWidgets")
    return widgets.QApplication.instance() or widgets.QApplication([])


def _load(stand_ins: list | None = None):
    from PySide6.QtCore import QFile
    from PySide6.QtUiTools import QUiLoader

    loader = QUiLoader()
    for cls in stand_ins or []:
        loader.registerCustomWidget(cls)
    handle = QFile(str(UI))
    assert handle.open(QFile.ReadOnly)
    try:
        widget = loader.load(handle)
    finally:
        handle.close()
    assert widget is not None, loader.errorString()
    return widget


def test_ui_loads_with_base_class_fallbacks(qt_app):
    from PySide6.QtWidgets import QWidget

    widget = _load()
    for name in re.findall(r"self\.ui\.(\w+)", panel_source.source()):
        assert widget.findChild(QWidget, name) is not None, name
    selector = widget.findChild(QWidget, "inputVolumeSelector")
    assert selector.property("nodeTypes") == ["vtkMRMLScalarVolumeNode"]
    assert selector.property("SlicerParameterName") == "inputVolume"


def _stand_ins(scene):
    """Python stand-ins for the CTK/MRML widgets so the offscreen render shows the whole form.

    The node combo boxes list the nodes of a real slicer-core scene, as qMRMLNodeComboBox would.
    """
    from PySide6.QtCore import Property, Qt
    from PySide6.QtWidgets import QComboBox, QGroupBox, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

    class ctkCollapsibleButton(QGroupBox):
        def _set_text(self, text):
            self.setTitle("\u25bc " + text)

        text = Property(str, lambda self: self.title()[2:], _set_text)
        collapsed = Property(bool, lambda self: False, lambda self, value: None)

    class qMRMLWidget(QWidget):
        pass

    class ctkPathLineEdit(QLineEdit):
        def __init__(self, parent=None):
            super().__init__(parent)
            self.setText("~/.segnets/models")

    class qMRMLNodeComboBox(QComboBox):
        def __init__(self, parent=None):
            super().__init__(parent)
            self._types: list[str] = []
            self._none = False
            self._none_display = "None"

        def _refill(self):
            self.clear()
            if self._none:
                self.addItem(self._none_display)
            for node_type in self._types:
                nodes = scene.GetNodesByClass(node_type)
                for i in range(nodes.GetNumberOfItems()):
                    node = nodes.GetItemAsObject(i)
                    if node.GetClassName() == node_type:
                        self.addItem(node.GetName())

        def _set_types(self, types):
            self._types = list(types)
            self._refill()

        def _set_none(self, value):
            self._none = bool(value)
            self._refill()

        def _set_none_display(self, text):
            self._none_display = text
            self._refill()

        nodeTypes = Property(list, lambda self: self._types, _set_types)
        noneEnabled = Property(bool, lambda self: self._none, _set_none)
        noneDisplay = Property(str, lambda self: self._none_display, _set_none_display)

    class qMRMLSegmentSelectorWidget(QWidget):
        """A segmentation combo above a checkable segment list."""

        def __init__(self, parent=None):
            super().__init__(parent)
            layout = QVBoxLayout(self)
            layout.setContentsMargins(0, 0, 0, 0)
            combo = QComboBox(self)
            segments = QListWidget(self)
            nodes = scene.GetNodesByClass("vtkMRMLSegmentationNode")
            for i in range(nodes.GetNumberOfItems()):
                node = nodes.GetItemAsObject(i)
                combo.addItem(node.GetName())
                segmentation = node.GetSegmentation()
                for s in range(segmentation.GetNumberOfSegments()):
                    item = QListWidgetItem(segmentation.GetNthSegment(s).GetName(), segments)
                    item.setCheckState(Qt.Checked)
            segments.setMaximumHeight(48)
            layout.addWidget(combo)
            layout.addWidget(segments)

    return [ctkCollapsibleButton, qMRMLWidget, ctkPathLineEdit, qMRMLNodeComboBox, qMRMLSegmentSelectorWidget]


def _demo_scene(scene):
    """Fill a real slicer-core scene (with the Segmentations logic) with the nodes a user would have loaded."""
    scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT abdomen")
    scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "CT abdomen RoI")
    annotation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "My annotations")
    annotation.GetSegmentation().AddEmptySegment("liver", "Liver", [0.87, 0.51, 0.41])
    return scene


def render_panel(scene, path: Path) -> Path:
    """Render the panel offscreen with stand-ins and example content; returns ``path``."""
    from PySide6.QtWidgets import QComboBox, QLabel, QProgressBar, QPushButton

    widget = _load(_stand_ins(_demo_scene(scene)))
    widget.findChild(QComboBox, "modelComboBox").addItem("3D U-Net liver (unet3d-liver 1.1.0)")
    widget.findChild(QLabel, "modelCardLabel").setText(
        "3D U-Net liver, version 1.1.0<br>Architecture: unet3d (default preset)<br>Input: CT (CT)<br>"
        "Labels: Liver<br>Fine-tuned from unet3d-liver 1.0.0"
    )
    widget.findChild(QComboBox, "finetuneStartComboBox").addItem("Selected model (fine-tune)")
    widget.findChild(QProgressBar, "progressBar").setValue(40)
    widget.findChild(QLabel, "stageLabel").setText("segmenting RoI 1/1")
    segment = widget.findChild(QPushButton, "segmentButton")
    segment.setText("Cancel")
    segment.setEnabled(True)
    widget.resize(440, widget.sizeHint().height() + 40)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert widget.grab().save(str(path)), f"could not write {path}"
    return path


def test_panel_renders_with_stand_ins(qt_app, mrml, tmp_path):
    from PySide6.QtGui import QImage
    from PySide6.QtWidgets import QComboBox, QListWidget

    widget = _load(_stand_ins(_demo_scene(mrml.scene)))
    volumes = widget.findChild(QComboBox, "inputVolumeSelector")
    assert [volumes.itemText(i) for i in range(volumes.count())] == ["CT abdomen"]
    output = widget.findChild(QComboBox, "outputSegmentationSelector")
    assert output.itemText(0) == "Create new segmentation"
    segments = widget.findChild(QListWidget)
    assert [segments.item(i).text() for i in range(segments.count())] == ["Liver"]

    mrml.scene.Clear(False)
    image = QImage(str(render_panel(mrml.scene, tmp_path / "panel.png")))
    assert image.width() >= 400 and image.height() >= 500
    colors = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(colors) > 20, "the rendered panel is (nearly) blank"


if __name__ == "__main__":
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from mrml_harness import create_harness
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    print(render_panel(create_harness().scene, SCREENSHOT))
