"""The Slicer panel's own methods, run without Slicer: each is taken from SegNets.py's source and run
on PySide6 widgets (offscreen) standing in for the CTK/MRML ones, with real SegNetsLib workers.

Slicer's Qt layer (PythonQt, CTK, qMRML widgets) cannot run here; the stand-ins reproduce what the
tests depend on: a segment selector whose ``setCurrentNode`` emits ``segmentSelectionChanged`` before
the segments are restored, a path line edit whose ``currentPathChanged`` fires on every keystroke.
"""

from __future__ import annotations
import __future__

import ast
import os
import subprocess
import sys
import types
from pathlib import Path

import panel_source
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = panel_source.MODULE


def module_function(qualname: str, namespace: dict):
    """Compile one function (``name`` or ``Class.name``, a method of a base in SegNetsPanel included) of the
    module's source into ``namespace``; return it."""
    node = panel_source.find(qualname)
    code = compile(
        ast.Module(body=[node], type_ignores=[]),
        str(MODULE),
        "exec",
        flags=__future__.annotations.compiler_flag,
        dont_inherit=True,
    )
    exec(code, namespace)
    return namespace[node.name]


def stand_in(namespace: dict, *qualnames: str, **attributes):
    """An object whose methods are SegNets.py's own (``Class.method`` names) plus ``attributes``."""
    methods = {name.split(".")[-1]: module_function(name, namespace) for name in qualnames}
    return type("StandIn", (), methods)(), attributes


def make(namespace: dict, *qualnames: str, **attributes):
    instance, values = stand_in(namespace, *qualnames, **attributes)
    for key, value in values.items():
        setattr(instance, key, value)
    return instance


@pytest.fixture(scope="module")
def qt_app():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    widgets = pytest.importorskip("PySide6.QtWidgets")
    return widgets.QApplication.instance() or widgets.QApplication([])


@pytest.fixture
def settings(qt_app, tmp_path):
    """``qt.QSettings()`` of the panel, on a private file."""
    from PySide6.QtCore import QSettings

    path = str(tmp_path / "settings.ini")
    return lambda: QSettings(path, QSettings.IniFormat)


def _namespace(**names) -> dict:
    base = {"_": lambda text: text, "sys": sys, "subprocess": subprocess, "logging": __import__("logging")}
    for name in ("SETTINGS_DEVICE", "SETTINGS_LIBRARY", "MIN_SLICER_VERSION", "MIN_PYTHON_VERSION"):
        base[name] = panel_source.constant(name)
    base.update(names)
    return base


# --- 1: restoring the parameter node does not overwrite the annotation's segments -----------------


def _segment_selector():
    from PySide6.QtCore import Signal
    from PySide6.QtWidgets import QWidget

    class SegmentSelector(QWidget):
        """Like qMRMLSegmentSelectorWidget: a new node clears the checked segments and says so."""

        segmentSelectionChanged = Signal(list)

        def __init__(self):
            super().__init__()
            self._node, self._ids = None, []

        def setCurrentNode(self, node):
            self._node, self._ids = node, []
            self.segmentSelectionChanged.emit([])

        def setSelectedSegmentIDs(self, ids):
            self._ids = list(ids)
            self.segmentSelectionChanged.emit(list(ids))

        def currentNode(self):
            return self._node

        def selectedSegmentIDs(self):
            return list(self._ids)

    return SegmentSelector()


def test_restoring_the_parameter_node_keeps_the_annotation_segments(qt_app):
    import vtk

    params = types.SimpleNamespace(
        annotationSegmentation="Segmentation_1", annotationSegmentIds=["liver", "tumor"], connectGui=lambda ui: "tag"
    )
    selector = _segment_selector()
    widget = make(
        _namespace(vtk=vtk),
        "SegNetsWidget.setParameterNode",
        "SegNetsWidget._syncAnnotationSelector",
        "SegNetsWidget.onAnnotationChanged",
        "SegNetsWidget.onSceneEndImport",
        ui=types.SimpleNamespace(annotationSelector=selector),
        _parameterNode=None,
        _disconnectParameterNode=lambda: None,
        addObserver=lambda *args: None,
        _updateButtons=lambda *args: None,
    )
    selector.segmentSelectionChanged.connect(widget.onAnnotationChanged)
    widget.setParameterNode(params)
    assert params.annotationSegmentIds == ["liver", "tumor"], "restoring the selector overwrote the parameter node"
    assert (selector.currentNode(), selector.selectedSegmentIDs()) == ("Segmentation_1", ["liver", "tumor"])
    assert not selector.signalsBlocked()

    params.annotationSegmentIds = ["liver"]  # a loaded scene brings other values: the selector follows
    widget.onSceneEndImport(None, None)
    assert selector.selectedSegmentIDs() == ["liver"] and params.annotationSegmentIds == ["liver"]

    selector.setSelectedSegmentIDs(["tumor"])  # the user's own choice still reaches the parameter node
    assert params.annotationSegmentIds == ["tumor"]


# --- 2: a declined or failed install is one message and False --------------------------------------


def _real_called_process_error() -> subprocess.CalledProcessError:
    try:
        subprocess.run([sys.executable, "-c", "raise SystemExit(3)"], check=True, capture_output=True)
    except subprocess.CalledProcessError as error:
        return error
    raise AssertionError("the failing command succeeded")


@pytest.mark.parametrize(
    "error",
    [RuntimeError("Installation of 'monai' was declined."), _real_called_process_error()],
    ids=["declined", "pip-failed"],
)
def test_ensure_dependencies_turns_install_errors_into_one_message(error):
    shown = []

    def install(askConfirmation):
        raise error

    slicer = types.SimpleNamespace(
        app=types.SimpleNamespace(testingEnabled=lambda: False),
        util=types.SimpleNamespace(errorDisplay=shown.append),
    )
    ensure = module_function("ensureDependencies", _namespace(slicer=slicer, _installDependencies=install))
    assert ensure() is False
    assert len(shown) == 1 and "\n" not in shown[0] and "could not install" in shown[0]


# --- 5: the library folder follows finished edits, not keystrokes ----------------------------------


def _path_line_edit():
    from PySide6.QtCore import Signal
    from PySide6.QtWidgets import QComboBox, QLineEdit, QVBoxLayout, QWidget

    class LineEdit(QLineEdit):
        def connect(self, signature, slot):  # PythonQt's string-signature connect
            assert signature == "editingFinished()"
            self.editingFinished.connect(slot)

    class PathLineEdit(QWidget):
        """Like ctkPathLineEdit: an editable combo box; currentPathChanged on every change of the text."""

        currentPathChanged = Signal(str)

        def __init__(self):
            super().__init__()
            self._combo = QComboBox(self)
            self._combo.setEditable(True)
            self._combo.setLineEdit(LineEdit())
            QVBoxLayout(self).addWidget(self._combo)
            self._combo.editTextChanged.connect(self.currentPathChanged.emit)

        def comboBox(self):
            return self._combo

        def connect(self, signature, slot):
            assert signature == "currentPathChanged(QString)"
            self.currentPathChanged.connect(slot)

        @property
        def currentPath(self):
            return self._combo.currentText()

        @currentPath.setter
        def currentPath(self, path):
            self._combo.setEditText(path)

    return PathLineEdit()


def test_the_library_folder_changes_once_when_typing_is_finished(qt_app, settings, tmp_path):
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    folders = []
    logic = types.SimpleNamespace(
        ready=False, libraryFolderSetting=lambda: folders[-1] if folders else None, setLibraryFolder=folders.append
    )
    path_edit = _path_line_edit()
    widget = make(
        _namespace(qt=types.SimpleNamespace(QSettings=settings)),
        "SegNetsWidget._connectLibraryPath",
        "SegNetsWidget.onLibraryPathChanged",
        "SegNetsWidget.onLibraryFolderEdited",
        "SegNetsWidget.onLibraryFolderChanged",
        ui=types.SimpleNamespace(libraryPathLineEdit=path_edit),
        logic=logic,
    )
    widget._connectLibraryPath()
    path_edit.show()
    line_edit = path_edit.comboBox().lineEdit()
    line_edit.activateWindow()
    line_edit.setFocus()
    qt_app.processEvents()
    assert line_edit.hasFocus(), "the offscreen platform gave the line edit no focus"
    target = str(tmp_path / "models")
    QTest.keyClicks(line_edit, target)
    assert folders == [], "a library was opened while the user was still typing"
    QTest.keyClick(line_edit, Qt.Key_Return)
    assert folders == [target]
    assert settings().value("SegNets/libraryFolder") == target

    line_edit.clearFocus()  # the browse button: a path chosen in a dialog counts at once
    qt_app.processEvents()
    path_edit.currentPath = str(tmp_path / "other")
    assert folders == [target, str(tmp_path / "other")]
    path_edit.close()


def _panel_buttons() -> types.SimpleNamespace:
    names = (
        "segmentButton finetuneButton updateButton suggestedSliceButton suggestedEmptyCheckBox previousRoundButton "
        "importModelButton exportModelButton deleteModelButton libraryPathLineEdit"
    )
    return types.SimpleNamespace(**{name: types.SimpleNamespace(enabled=True, text="") for name in names.split()})


@pytest.mark.parametrize("running", [False, True])
def test_the_library_cannot_change_while_a_job_runs(qt_app, running):
    from SegNetsLib.app.worker import Job

    job = Job("Fine-tune") if running else None
    if job is not None:
        job.context["kind"] = "finetune"
    ui = _panel_buttons()
    widget = make(_namespace(), "SegNetsWidget._updateButtons", ui=ui, _job=job, _round=None, _parameterNode=None)
    widget._updateButtons()
    library = (ui.libraryPathLineEdit, ui.importModelButton, ui.exportModelButton, ui.deleteModelButton)
    assert [w.enabled for w in library] == [not running] * 4
    assert ui.finetuneButton.enabled == running and ui.finetuneButton.text == ("Cancel" if running else "Fine-tune")


# --- 6: Reload and Test reports a skip instead of an error -----------------------------------------


def test_the_self_test_reports_a_missing_dependency_and_returns(qt_app):
    shown = []
    namespace = _namespace(
        slicer=types.SimpleNamespace(app=types.SimpleNamespace(majorVersion=5, minorVersion=10)),
        SegNetsLogic=lambda: types.SimpleNamespace(ready=False),
    )
    module_function("unsupportedReason", namespace)
    module_function("runningVersions", namespace)
    test = make(
        namespace,
        "SegNetsTest.test_SegmentAndFinetune",
        "SegNetsTest.skipReason",
        delayDisplay=shown.append,
    )
    test.test_SegmentAndFinetune()  # returns; raising SkipTest would show as an error in Slicer
    assert len(shown) == 1 and "skipped" in shown[0] and "PyTorch" in shown[0]


# --- 7: a remembered device that is gone falls back to auto ---------------------------------------


def test_a_remembered_device_that_is_gone_falls_back_to_auto(qt_app, settings):
    from PySide6.QtWidgets import QComboBox

    from SegNetsLib.app.logic import device_choices

    settings().setValue("SegNets/device", "cuda:3")
    params = types.SimpleNamespace(device="cuda:3")
    combo = QComboBox()
    widget = make(
        _namespace(qt=types.SimpleNamespace(QSettings=settings)),
        "SegNetsWidget._fillDevices",
        ui=types.SimpleNamespace(deviceComboBox=combo),
        _parameterNode=params,
    )
    widget._fillDevices()
    assert params.device == "auto" and combo.currentData() == "auto"
    assert settings().value("SegNets/device") == "auto"
    assert [combo.itemData(i) for i in range(combo.count())] == [spec for _, spec in device_choices()]
    assert not combo.signalsBlocked()


# --- 8 and 10: scene close drops the job; cleanup shuts the worker down ----------------------------


def test_closing_the_scene_stops_polling_and_drops_the_job(qt_app):
    from PySide6.QtCore import QTimer

    from SegNetsLib.app.worker import Job

    job = Job("Segment volume 'CT'")
    timer = QTimer()
    timer.setInterval(200)
    timer.start()
    updates, parameter_nodes = [], []
    widget = make(
        _namespace(),
        "SegNetsWidget.onSceneStartClose",
        "SegNetsWidget._dropJob",
        "SegNetsWidget._sayDropped",
        ui=types.SimpleNamespace(
            progressBar=types.SimpleNamespace(value=40), stageLabel=types.SimpleNamespace(text="")
        ),
        _timer=timer,
        _job=job,
        _round=object(),
        _roundNodes={"liver@1.0.0": "vtkMRMLSegmentationNode1"},
        setParameterNode=parameter_nodes.append,
        _updateButtons=lambda *args: updates.append(True),
    )
    widget.onSceneStartClose(None, None)
    assert not timer.isActive() and widget._job is None
    assert job.cancel_token.cancelled and widget.ui.stageLabel.text.endswith("the job was cancelled.")
    assert parameter_nodes == [None] and updates
    assert widget._round is None and widget._roundNodes == {}  # node IDs are given out again in the next scene


def test_cleanup_shuts_the_worker_process_down(qt_app):
    from PySide6.QtCore import QTimer

    from SegNetsLib.app.process_worker import ProcessWorker

    worker = ProcessWorker()
    try:
        assert worker.submit("hello").wait(120) and worker.pid is not None
        logic = make(_namespace(), "SegNetsLogic.shutdown", _core=types.SimpleNamespace(worker=worker))
        widget = make(
            _namespace(),
            "SegNetsWidget.cleanup",
            "SegNetsWidget._dropJob",
            _timer=QTimer(),
            _job=None,
            logic=logic,
            removeObservers=lambda: None,
            _disconnectParameterNode=lambda: None,
        )
        widget.cleanup()
        assert worker.pid is None and logic._core is None
        with pytest.raises(RuntimeError, match="shut down"):
            worker.submit("hello")
    finally:
        worker.shutdown()


class _Observations:
    """Slicer's VTKObservationMixin (slicer/util.py): removeObservers() forgets every observation, and
    removeObserver() of one it does not hold warns "does not have observer"."""

    def __init__(self):
        self.observations = {}

    def addObserver(self, obj, event, method):
        self.observations[(id(obj), event, method)] = True

    def removeObservers(self):
        self.observations.clear()

    def removeObserver(self, obj, event, method):
        import warnings

        if self.observations.pop((id(obj), event, method), None) is None:
            warnings.warn("does not have observer", stacklevel=2)


def test_cleanup_removes_the_parameter_node_observer_without_a_warning(qt_app):
    import warnings

    from PySide6.QtCore import QTimer

    disconnected = []
    vtk = types.SimpleNamespace(vtkCommand=types.SimpleNamespace(ModifiedEvent="ModifiedEvent"))
    observations = _Observations()
    widget = make(
        _namespace(vtk=vtk),
        "SegNetsWidget.cleanup",
        "SegNetsWidget._dropJob",
        "SegNetsWidget._disconnectParameterNode",
        _timer=QTimer(),
        _job=None,
        logic=types.SimpleNamespace(shutdown=lambda: None),
        _parameterNode=types.SimpleNamespace(disconnectGui=disconnected.append),
        _parameterNodeGuiTag=7,
        removeObservers=observations.removeObservers,
        removeObserver=observations.removeObserver,
    )
    widget._updateButtons = object()
    observations.addObserver(widget._parameterNode, "ModifiedEvent", widget._updateButtons)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        widget.cleanup()
    assert disconnected == [7] and not observations.observations


# --- 11: supported Slicer versions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slicer_version", "python_version", "supported"),
    [((5, 8), (3, 9), False), ((5, 9), (3, 12), False), ((5, 10), (3, 12), True), ((6, 0), (3, 13), True)],
)
def test_only_slicer_5_10_and_newer_are_supported(slicer_version, python_version, supported):
    reason = module_function("unsupportedReason", _namespace())(slicer_version, python_version)
    assert (reason is None) == supported
    if not supported:
        assert "3D Slicer 5.10 or newer" in reason and "{}.{}".format(*slicer_version) in reason


def test_an_old_slicer_gets_a_message_instead_of_the_panel(qt_app):
    from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

    def no_ui(path):
        raise AssertionError("the panel was loaded in an unsupported Slicer")

    container = QWidget()
    namespace = _namespace(
        slicer=types.SimpleNamespace(app=types.SimpleNamespace(majorVersion=5, minorVersion=8)),
        ScriptedLoadableModuleWidget=types.SimpleNamespace(setup=lambda self: None),
        qt=types.SimpleNamespace(QLabel=QLabel),
    )
    namespace["slicer"].util = types.SimpleNamespace(loadUI=no_ui)
    module_function("unsupportedReason", namespace)
    namespace["runningVersions"] = lambda: ((5, 8), (3, 9))
    widget = make(namespace, "SegNetsWidget.setup", "SegNetsWidget.enter", layout=QVBoxLayout(container), logic=None)
    widget.setup()
    labels = container.findChildren(QLabel)
    assert len(labels) == 1 and "Slicer 5.8 with Python 3.9" in labels[0].text()
    widget.enter()  # an unsupported Slicer's panel does nothing on enter
    assert widget.logic is None
