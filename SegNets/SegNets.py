"""SegNets: deep-learning segmentation of 3D medical images inside 3D Slicer.

A thin Qt shell: widgets are bound to a typed parameter node and every action calls SegNetsLib
(``SegNetsLib.app.logic``), which CI tests against Slicer's own MRML classes. Model work runs in a
warm child process of Slicer's own Python (``SegNetsLib.app.process_worker``): Slicer's main thread
holds Python's GIL while Qt's event loop runs, so a thread would starve, and a crash or out-of-memory
kill of the model code cannot take the scene with it. A QTimer polls the job, so Slicer never freezes
and MRML is only touched on the main thread.

Supported: 3D Slicer 5.10 and newer (Python 3.12); SegNetsLib itself needs Python 3.10 or newer. The
module refuses an older Slicer with a message instead of its panel.

SegNetsLib is found next to this file when the extension is installed (CMake copies it into
qt-scripted-modules/), or one folder up when a clone's ``SegNets/`` folder is added to Slicer's
additional module paths; in that case the repository root is added to ``sys.path``. The package
``SegNetsPanel`` beside this file holds the rest of the module's Qt side: the dependencies, the parameter node
and logic, the model-library and correction-round controls.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MODULE_DIR = Path(__file__).resolve().parent
POLL_INTERVAL_MS = 200

if importlib.util.find_spec("SegNetsPanel") is None:  # a clone's SegNets/ folder: the package beside this file
    sys.path.insert(0, str(MODULE_DIR))

from SegNetsPanel.dependencies import (  # noqa: E402
    ensureDependencies,
    ensureSegNetsLibOnPath,
    resourcesDir,
    runningVersions,
    unsupportedReason,
)
from SegNetsPanel.library_controls import ModelLibraryControls  # noqa: E402
from SegNetsPanel.logic import SETTINGS_DEVICE, SETTINGS_LIBRARY, SegNetsLogic, SegNetsParameterNode  # noqa: E402
from SegNetsPanel.round_controls import CorrectionRoundControls  # noqa: E402
from SegNetsPanel.selftest import SegNetsTest  # noqa: E402, F401  (Slicer finds the module's test by this name)

ensureSegNetsLibOnPath()


#
# SegNets
#


class SegNets(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SegNets")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["SegNets developers"]
        self.parent.helpText = _(
            "Segment a volume with a 3D U-Net, V-Net, ConResNet or 3D RU-Net model in one click, see the "
            "detected region as an ROI you can move, and fine-tune a model from a few slices you annotated "
            "in the Segment Editor. See the <a href='https://github.com/segnets/SegNets#readme'>README</a>."
        )
        self.parent.acknowledgementText = _(
            "Networks follow their papers: 3D U-Net (Cicek et al. 2016), V-Net (Milletari et al. 2016), "
            "ConResNet (Zhang et al. 2020) and 3D RU-Net (Huang et al. 2019)."
        )
        icon = resourcesDir() / "Icons" / "SegNets.png"  # Slicer looks beside SegNets.py only; a clone keeps it one up
        if icon.is_file():
            self.parent.icon = qt.QIcon(str(icon))


#
# SegNetsWidget (its model-library and correction-round controls: SegNetsPanel)
#


class SegNetsWidget(ScriptedLoadableModuleWidget, VTKObservationMixin, ModelLibraryControls, CorrectionRoundControls):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._askedForDependencies = False
        self._round = None  # the last Fine-tune's outcome: its round, model and the slice to paint next
        self._roundNodes: dict[str, str] = {}  # "id@version" of a round's model -> its segmentation node ID
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._poll)

    def onReload(self) -> None:
        """Reload the SegNetsPanel package too: Slicer's Reload reads SegNets.py again, not what it imported."""
        for name in [name for name in sys.modules if name.split(".")[0] == "SegNetsPanel"]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        reason = unsupportedReason(*runningVersions())
        if reason:  # an older Slicer: say why instead of a panel that would fail
            label = qt.QLabel(reason)
            label.wordWrap = True
            self.layout.addWidget(label)
            self.layout.addStretch(1)
            return
        uiWidget = slicer.util.loadUI(str(resourcesDir() / "UI" / "SegNets.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SegNetsLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)

        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.finetuneButton.connect("clicked(bool)", self.onFinetuneButton)
        self.ui.updateButton.connect("clicked(bool)", self.onUpdateButton)
        self.ui.suggestedSliceButton.connect("clicked(bool)", self.onSuggestedSliceButton)
        self.ui.previousRoundButton.connect("clicked(bool)", self.onPreviousRoundButton)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        self.ui.finetuneStartComboBox.connect("currentIndexChanged(int)", self.onFinetuneStartChanged)
        self.ui.annotationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onAnnotationChanged)
        self.ui.annotationSelector.connect("segmentSelectionChanged(QStringList)", self.onAnnotationChanged)
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.ui.exportModelButton.connect("clicked(bool)", self.onExportModel)
        self.ui.deleteModelButton.connect("clicked(bool)", self.onDeleteModel)
        self.ui.openLibraryButton.connect("clicked(bool)", self.onOpenLibrary)

        self.ui.libraryPathLineEdit.currentPath = qt.QSettings().value(SETTINGS_LIBRARY, "")
        self._connectLibraryPath()
        self.initializeParameterNode()
        self._updateButtons()

    def enter(self) -> None:
        """Load the library and devices the first time the module is shown (installing deps if asked)."""
        if self.logic is None:  # an unsupported Slicer: setup() showed why
            return
        self.initializeParameterNode()
        if not self.logic.ready and self._askedForDependencies:
            return
        self._askedForDependencies = True
        if self.logic.ready or ensureDependencies():
            self._fillDevices()
            self._fillStartChoices()
            self._refreshModels()
        self._updateButtons()

    def cleanup(self) -> None:
        """On module reload or exit: stop the job and its timer and shut the worker process down."""
        self._dropJob()
        if self.logic is not None:
            self._disconnectParameterNode()  # before removeObservers(), which forgets its observer
            self.logic.shutdown()
        self.removeObservers()

    def _dropJob(self) -> None:
        """Cancel the running job (nothing is written) and stop polling it."""
        self._timer.stop()
        job, self._job = self._job, None
        if job is not None:
            job.cancel()

    # --- parameter node ---------------------------------------------------------------------------
    def onSceneStartClose(self, caller, event) -> None:
        job = self._job
        self._dropJob()  # its nodes are about to go; a result would land in the next scene
        if job is not None:
            self._sayDropped(job)
        self._round, self._roundNodes = None, {}  # their nodes go too, and node IDs are given out again
        self.setParameterNode(None)
        self._updateButtons()

    def onSceneEndImport(self, caller, event) -> None:
        """A loaded scene brings its own parameter values: show its annotation choice."""
        if self._parameterNode:
            self._syncAnnotationSelector()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        from SegNetsLib.mrml.volumes import first_input_volume  # needs numpy only: Slicer ships it

        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:  # one the selector shows: never a label map the combo box hides
            self._parameterNode.inputVolume = first_input_volume(slicer.mrmlScene)
        if self._parameterNode.device == "auto":  # a device chosen when Slicer last ran
            self._parameterNode.device = qt.QSettings().value(SETTINGS_DEVICE, "auto")

    def _disconnectParameterNode(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def setParameterNode(self, inputParameterNode: SegNetsParameterNode | None) -> None:
        self._disconnectParameterNode()
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self._syncAnnotationSelector()
            self._updateButtons()

    def _syncAnnotationSelector(self) -> None:
        """Show the parameter node's annotation and segments in the selector without writing them back:
        ``setCurrentNode`` emits ``segmentSelectionChanged`` before the segments are restored."""
        selector = self.ui.annotationSelector
        wasBlocked = selector.blockSignals(True)
        try:
            selector.setCurrentNode(self._parameterNode.annotationSegmentation)
            selector.setSelectedSegmentIDs(list(self._parameterNode.annotationSegmentIds))
        finally:
            selector.blockSignals(wasBlocked)

    # --- lists from SegNetsLib --------------------------------------------------------------------
    def _fillDevices(self) -> None:
        from SegNetsLib.app.logic import device_choices

        combo = self.ui.deviceComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for label, spec in device_choices():
            combo.addItem(label, spec)
        index = combo.findData(self._parameterNode.device if self._parameterNode else "auto")
        if index < 0:  # a remembered GPU that is gone: back to auto, here and in the settings
            index = combo.findData("auto")
            if self._parameterNode:
                self._parameterNode.device = "auto"
            qt.QSettings().setValue(SETTINGS_DEVICE, "auto")
        combo.setCurrentIndex(max(index, 0))
        combo.blockSignals(wasBlocked)

    def _fillStartChoices(self) -> None:
        from SegNetsLib.nets import ARCHITECTURES

        combo = self.ui.finetuneStartComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        combo.addItem(_("Selected model (fine-tune)"), "model")
        for architecture in ARCHITECTURES:
            combo.addItem(
                _("New {architecture} (from scratch)").format(architecture=architecture), f"arch:{architecture}"
            )
        combo.setCurrentIndex(max(combo.findData(self._parameterNode.finetuneStart), 0))
        combo.blockSignals(wasBlocked)

    # --- reactions --------------------------------------------------------------------------------

    def onDeviceChanged(self, _index: int) -> None:
        spec = self.ui.deviceComboBox.currentData or "auto"
        self._parameterNode.device = spec
        qt.QSettings().setValue(SETTINGS_DEVICE, spec)

    def onFinetuneStartChanged(self, _index: int) -> None:
        self._parameterNode.finetuneStart = self.ui.finetuneStartComboBox.currentData or "model"
        self._updateButtons()

    def onAnnotationChanged(self, *_args) -> None:
        if self._parameterNode:
            self._parameterNode.annotationSegmentation = self.ui.annotationSelector.currentNode()
            self._parameterNode.annotationSegmentIds = list(self.ui.annotationSelector.selectedSegmentIDs())
        self._updateButtons()

    def _updateButtons(self, caller=None, event=None) -> None:
        params = self._parameterNode
        running = self._job is not None
        kind = self._job.context.get("kind") if running else None
        self.ui.segmentButton.text = _("Cancel") if kind == "segment" else _("Segment")
        self.ui.finetuneButton.text = _("Cancel") if kind == "finetune" else _("Fine-tune")
        canSegment = bool(
            params and params.inputVolume and params.modelReference and (not params.useRoiNode or params.roiNode)
        )
        fromScratch = bool(params and params.finetuneStart.startswith("arch:"))
        canFinetune = bool(
            params
            and params.inputVolume
            and params.annotationSegmentation
            and params.annotationSegmentIds
            and (fromScratch or params.modelReference)
        )
        self.ui.segmentButton.enabled = kind == "segment" or (not running and canSegment)
        self.ui.finetuneButton.enabled = kind == "finetune" or (not running and canFinetune)
        last = self._round
        self.ui.updateButton.enabled = bool(not running and last is not None and canFinetune)
        self.ui.suggestedSliceButton.enabled = bool(last is not None and last.suggestion is not None)
        self.ui.suggestedEmptyCheckBox.enabled = bool(self.ui.updateButton.enabled and last.suggestion is not None)
        self.ui.previousRoundButton.enabled = bool(not running and last is not None and last.round >= 2)
        libraryControls = (self.ui.importModelButton, self.ui.exportModelButton, self.ui.deleteModelButton)
        for widget in (*libraryControls, self.ui.libraryPathLineEdit):  # a job saves into the library it started with
            widget.enabled = not running

    # --- Segment and Fine-tune (button -> Cancel) -------------------------------------------------
    def onSegmentButton(self) -> None:
        if self._job is not None:
            self._cancel()
            return
        params = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Segment could not start."), waitCursor=True):
            self._start(
                self.logic.startSegment(
                    params.inputVolume,
                    params.modelReference,
                    params.device,
                    params.roiMode.lower(),
                    params.roiNode if params.useRoiNode else None,
                    params.outputSegmentation,  # fixed now: the selector stays live while the job runs
                )
            )

    def onFinetuneButton(self) -> None:
        if self._job is not None:
            self._cancel()
            return
        params = self._parameterNode
        fromScratch = params.finetuneStart.startswith("arch:")
        start = params.finetuneStart[len("arch:") :] if fromScratch else params.modelReference
        with slicer.util.tryWithErrorDisplay(_("Fine-tune could not start."), waitCursor=True):
            self._start(
                self.logic.startFinetune(
                    params.inputVolume,
                    params.annotationSegmentation,
                    list(params.annotationSegmentIds),
                    start,
                    params.timeBudgetMinutes * 60.0,
                    params.device,
                )
            )

    # --- running a job (the correction loop's Update too: SegNetsPanel.round_controls) --------------
    def _start(self, job) -> None:
        self._job = job
        self.ui.progressBar.value = 0
        self.ui.stageLabel.text = _("Starting...")
        self._timer.start()
        self._updateButtons()

    def _cancel(self) -> None:
        self._job.cancel()
        self.ui.stageLabel.text = _("Cancelling...")

    def _poll(self) -> None:
        """Show the job's progress; once it is done, create its nodes on this (the main) thread."""
        job = self._job
        snapshot = job.progress()
        self.ui.progressBar.value = int(round(100 * snapshot.fraction))
        self.ui.stageLabel.text = snapshot.stage
        if "iteration" in snapshot.extra:
            extra = snapshot.extra
            self.ui.trainingStatusLabel.text = _("Iteration {i}, loss {loss}, validation Dice {dice}").format(
                i=extra.get("iteration", "-"), loss=_fmt(extra.get("loss")), dice=_fmt(extra.get("dice"))
            )
        if not job.done:
            return
        self._timer.stop()
        self._job = None
        try:
            with slicer.util.tryWithErrorDisplay(_("SegNets failed."), waitCursor=True):
                if job.context["kind"] == "segment":  # into the output chosen when it started
                    self._showSegmentResult(self.logic.finishSegment(job))
                else:
                    self._showFinetuneResult(self.logic.finishFinetune(job))
        finally:
            if job.cancelled:
                self.ui.stageLabel.text = _("Cancelled; nothing was changed.")
            self._updateButtons()

    def _showSegmentResult(self, result) -> None:
        if result is None:
            return
        self.ui.stageLabel.text = result.summary(
            _("Done: {name} ({region}).").format(name=result.segmentation_node.GetName(), region=result.region())
        )
        if result.roi_node is not None and self._parameterNode:
            self._parameterNode.roiNode = result.roi_node
        result.segmentation_node.CreateClosedSurfaceRepresentation()


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
