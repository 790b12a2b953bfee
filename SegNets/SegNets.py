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
additional module paths; in that case the repository root is added to ``sys.path``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MODULE_DIR = Path(__file__).resolve().parent
TORCH_REQUIREMENT = ">=2.1"
SETTINGS_DEVICE = "SegNets/device"
SETTINGS_LIBRARY = "SegNets/libraryFolder"
POLL_INTERVAL_MS = 200
MIN_SLICER_VERSION = (5, 10)  # the first Slicer with Python 3.12; Slicer 5.8 ships Python 3.9
MIN_PYTHON_VERSION = (3, 10)  # what SegNetsLib needs (pyproject.toml: requires-python)


def unsupportedReason(slicerVersion: tuple[int, int], pythonVersion: tuple[int, int]) -> str | None:
    """Why this Slicer cannot run SegNets (one sentence), or None when it can."""
    slicerVersion, pythonVersion = tuple(slicerVersion[:2]), tuple(pythonVersion[:2])
    if slicerVersion >= MIN_SLICER_VERSION and pythonVersion >= MIN_PYTHON_VERSION:
        return None
    return _(
        "SegNets needs 3D Slicer {minimum} or newer (Python {python} or newer), but this is Slicer {slicer} "
        "with Python {running}; install a newer Slicer from download.slicer.org."
    ).format(
        minimum="{}.{}".format(*MIN_SLICER_VERSION),
        python="{}.{}".format(*MIN_PYTHON_VERSION),
        slicer="{}.{}".format(*slicerVersion),
        running="{}.{}".format(*pythonVersion),
    )


def runningVersions() -> tuple[tuple[int, int], tuple[int, int]]:
    """(Slicer major.minor, Python major.minor) of the running application."""
    return (int(slicer.app.majorVersion), int(slicer.app.minorVersion)), tuple(sys.version_info[:2])


def resourcesDir() -> Path:
    """Resources/ beside this file (installed extension) or at the repository root (a clone)."""
    installed = MODULE_DIR / "Resources"
    return installed if (installed / "UI" / "SegNets.ui").is_file() else MODULE_DIR.parent / "Resources"


def ensureSegNetsLibOnPath() -> None:
    """Make ``import SegNetsLib`` work from a clone (the repository root holds SegNetsLib/)."""
    if importlib.util.find_spec("SegNetsLib") is None:
        sys.path.insert(0, str(MODULE_DIR.parent))


ensureSegNetsLibOnPath()


#
# Dependencies: torch through the PyTorch extension, the rest from Resources/requirements.txt
#


def _missingRequirements(requirementsFile: Path) -> list[str]:
    """Requirement lines of ``requirementsFile`` that are not installed in Slicer's Python."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    missing = []
    for line in requirementsFile.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        try:
            if not requirement.specifier.contains(version(requirement.name), prereleases=True):
                missing.append(line)
        except PackageNotFoundError:
            missing.append(line)
    return missing


def ensureDependencies(askConfirmation: bool = True) -> bool:
    """Install what SegNets needs after asking; False if the user declined, an install failed, or when testing.

    torch comes from the PyTorch extension (it picks the CUDA build matching the driver); nothing is
    installed while Slicer runs tests. ``slicer.packaging.pip_ensure`` raises RuntimeError when the
    user declines and CalledProcessError when pip fails, and ``installTorch`` raises rather than
    returning None: each becomes one message, and the panel stays usable.
    """
    try:
        return _installDependencies(askConfirmation)
    except (RuntimeError, subprocess.CalledProcessError, OSError) as error:
        text = (str(error).strip().splitlines() or [type(error).__name__])[0]
        logging.error("SegNets: the dependencies were not installed: %s", error)
        if not slicer.app.testingEnabled():
            slicer.util.errorDisplay(
                _("SegNets could not install what it needs ({error}). See the Python console for details.").format(
                    error=text
                )
            )
        return False


def _installDependencies(askConfirmation: bool) -> bool:
    testing = slicer.app.testingEnabled()
    try:
        import PyTorchUtils
    except ImportError:
        if not testing:
            slicer.util.errorDisplay(_("SegNets needs the PyTorch extension: install it from the Extensions Manager."))
        return False
    torchLogic = PyTorchUtils.PyTorchUtilsLogic()
    if not torchLogic.torchInstalled():
        if testing or (
            askConfirmation
            and not slicer.util.confirmOkCancelDisplay(
                _("SegNets needs PyTorch. Install it now? This can take several minutes.")
            )
        ):
            return False
        if torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT) is None:
            raise RuntimeError(_("PyTorch could not be installed; see the Python console for details."))
    requirementsFile = resourcesDir() / "requirements.txt"
    if importlib.util.find_spec("slicer.packaging") is not None:
        packaging = importlib.import_module("slicer.packaging")  # a plain import would make `slicer` local here

        if hasattr(packaging, "pip_ensure"):
            packaging.pip_ensure(
                packaging.load_requirements(str(requirementsFile)),
                requester="SegNets",
                prompt_install=askConfirmation,
            )
            return not _missingRequirements(requirementsFile)
    missing = _missingRequirements(requirementsFile)
    if missing:
        if testing or (
            askConfirmation
            and not slicer.util.confirmOkCancelDisplay(
                _("SegNets needs these Python packages: {packages}. Install them now?").format(
                    packages=", ".join(missing)
                )
            )
        ):
            return False
        slicer.util.pip_install(missing)
    return True


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


#
# Parameter node
#


@parameterNodeWrapper
class SegNetsParameterNode:
    """The panel's state, saved with the scene.

    inputVolume: volume to segment; modelReference: "id@version" in the library; device: "auto", "cpu",
    "cuda:N"; outputSegmentation: segmentation to replace (None = a new one each run); roiMode: the
    model's RoI localization on or off; useRoiNode/roiNode: segment only inside this ROI;
    annotationSegmentation/annotationSegmentIds: what Fine-tune learns from; finetuneStart:
    "model" or "arch:<architecture>"; timeBudgetMinutes: fine-tuning time limit.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modelReference: str = ""
    device: str = "auto"
    outputSegmentation: vtkMRMLSegmentationNode
    roiMode: Annotated[str, Choice(["Auto", "Off"])] = "Auto"
    useRoiNode: bool = False
    roiNode: vtkMRMLMarkupsROINode
    annotationSegmentation: vtkMRMLSegmentationNode
    annotationSegmentIds: list[str]
    finetuneStart: str = "model"
    timeBudgetMinutes: Annotated[float, WithinRange(0.5, 600.0)] = 5.0


#
# SegNetsWidget
#


class SegNetsWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
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
        self.removeObservers()
        if self.logic is not None:
            self._disconnectParameterNode()
            self.logic.shutdown()

    def _dropJob(self) -> None:
        """Cancel the running job (nothing is written) and stop polling it."""
        self._timer.stop()
        job, self._job = self._job, None
        if job is not None:
            job.cancel()

    # --- parameter node ---------------------------------------------------------------------------
    def onSceneStartClose(self, caller, event) -> None:
        self._dropJob()  # its nodes are about to go; a result would land in the next scene
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
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if self._parameterNode.device == "auto":  # a device chosen in an earlier session
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

    def _refreshModels(self, select: str | None = None) -> None:
        """Fill the model list from the library (newest version of each model first)."""
        combo = self.ui.modelComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        from SegNetsLib.card.versions import version_key

        entries = sorted(self.logic.listModels(), key=lambda e: version_key(e.version), reverse=True)
        for entry in sorted(entries, key=lambda e: e.id):  # stable: newest version of each id first
            combo.addItem(f"{entry.card.name}  ({entry.id} {entry.version})", f"{entry.id}@{entry.version}")
        wanted = select or self._parameterNode.modelReference
        combo.setCurrentIndex(max(combo.findData(wanted), 0) if entries else -1)
        combo.blockSignals(wasBlocked)
        self.onModelChanged()

    # --- reactions --------------------------------------------------------------------------------
    def onModelChanged(self, _index: int = 0) -> None:
        reference = self.ui.modelComboBox.currentData or ""
        if self._parameterNode:
            self._parameterNode.modelReference = reference
        self.ui.modelCardLabel.text = (
            self.logic.describeModel(reference).replace("\n", "<br>")
            if reference
            else _("No model in the library. Import one in the Models section.")
        )
        self._updateButtons()

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

    def _connectLibraryPath(self) -> None:
        """Follow the library folder once its editing is finished: ``currentPathChanged`` fires on every
        keystroke, so typing only counts on Enter or leaving the field; the browse button counts at once."""
        pathEdit = self.ui.libraryPathLineEdit
        pathEdit.comboBox().lineEdit().connect("editingFinished()", self.onLibraryFolderEdited)
        pathEdit.connect("currentPathChanged(QString)", self.onLibraryPathChanged)

    def onLibraryPathChanged(self, path: str) -> None:
        if not self.ui.libraryPathLineEdit.comboBox().lineEdit().hasFocus():  # browsed, not typed
            self.onLibraryFolderChanged(path)

    def onLibraryFolderEdited(self) -> None:
        self.onLibraryFolderChanged(self.ui.libraryPathLineEdit.currentPath)

    def onLibraryFolderChanged(self, path: str) -> None:
        if (path or None) == self.logic.libraryFolderSetting():
            return
        qt.QSettings().setValue(SETTINGS_LIBRARY, path)
        self.logic.setLibraryFolder(path or None)
        if self.logic.ready:
            self._refreshModels()

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
        self.ui.previousRoundButton.enabled = bool(not running and last is not None and last.round >= 2)
        for button in (self.ui.importModelButton, self.ui.exportModelButton, self.ui.deleteModelButton):
            button.enabled = not running

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

    # --- the correction loop: Update, Go to suggested slice, Back one round ------------------------
    def onUpdateButton(self) -> None:
        """Continue the last round's model on every painted slice (the suggested one counts as reviewed)."""
        last, params = self._round, self._parameterNode
        reviewed = {last.suggestion.axis: [last.suggestion.index]} if last.suggestion is not None else None
        with slicer.util.tryWithErrorDisplay(_("Update could not start."), waitCursor=True):
            self._start(
                self.logic.startFinetune(
                    params.inputVolume,
                    params.annotationSegmentation,
                    list(params.annotationSegmentIds),
                    f"{last.model.id}@{last.model.version}",
                    params.timeBudgetMinutes * 60.0,
                    params.device,
                    reviewed=reviewed,
                )
            )

    def onSuggestedSliceButton(self) -> None:
        """Move the slice views to the slice the last result suggests painting next."""
        from SegNetsLib.app.correction import node_ijk_to_ras, suggestion_ras

        volumeNode = self._parameterNode.inputVolume
        if volumeNode is None or self._round is None or self._round.suggestion is None:
            return
        shape = tuple(reversed(volumeNode.GetImageData().GetDimensions()))
        r, a, s = suggestion_ras(node_ijk_to_ras(volumeNode), shape, self._round.suggestion)
        slicer.modules.markups.logic().JumpSlicesToLocation(r, a, s, True)

    def onPreviousRoundButton(self) -> None:
        """Step back to the previous round: select its model and show its segmentation (nothing is deleted)."""
        from SegNetsLib.app.correction import step_back

        last = self._round
        with slicer.util.tryWithErrorDisplay(_("Could not step back."), waitCursor=True):
            entry = step_back(self.logic.core().library, f"{last.model.id}@{last.model.version}")
            if entry is None:
                return
            for reference, nodeId in self._roundNodes.items():
                node = slicer.mrmlScene.GetNodeByID(nodeId)
                if node is not None and node.GetDisplayNode() is not None:
                    node.GetDisplayNode().SetVisibility(reference == entry.reference)
            self._refreshModels(select=entry.reference)
            library = self.logic.core().library
            model = type(last.model)(
                entry.id, entry.version, library.find(entry.id, entry.version), library.card(entry.id, entry.version)
            )
            self._round = dataclasses.replace(last, model=model, round=entry.round, suggestion=None)
            self.ui.roundLabel.text = _("Back at round {n} ({reference}); Update continues from it.").format(
                n=entry.round, reference=entry.reference
            )
        self._updateButtons()

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
                if job.context["kind"] == "segment":
                    output = self._parameterNode.outputSegmentation if self._parameterNode else None
                    self._showSegmentResult(self.logic.finishSegment(job, output))
                else:
                    self._showFinetuneResult(self.logic.finishFinetune(job))
        finally:
            if job.cancelled:
                self.ui.stageLabel.text = _("Cancelled; nothing was changed.")
            self._updateButtons()

    def _showSegmentResult(self, result) -> None:
        if result is None:
            return
        self.ui.stageLabel.text = _("Done: {name}.").format(name=result.segmentation_node.GetName())
        if result.roi_node is not None and self._parameterNode:
            self._parameterNode.roiNode = result.roi_node
        result.segmentation_node.CreateClosedSurfaceRepresentation()

    def _showFinetuneResult(self, result) -> None:
        if result is None:
            return
        from SegNetsLib.app.correction import describe_round

        reference = f"{result.model.id}@{result.model.version}"
        self._refreshModels(select=reference)
        self.ui.stageLabel.text = _("New model {id} {version}; segmentation {name}.").format(
            id=result.model.id, version=result.model.version, name=result.segmentation.segmentation_node.GetName()
        )
        self._round = result
        self._roundNodes[reference] = result.segmentation.segmentation_node.GetID()
        self.ui.roundLabel.text = describe_round(result.round, result.suggestion, result.model.card.provenance.seconds)
        self.ui.suggestedSliceButton.text = (
            _("Go to slice {index}").format(index=result.suggestion.index)
            if result.suggestion is not None
            else _("Go to suggested slice")
        )

    # --- Models -----------------------------------------------------------------------------------
    def onImportModel(self) -> None:
        path = qt.QFileDialog.getOpenFileName(
            self.parent, _("Import model"), "", _("Models (*.zip card.json);;Weights (*.safetensors *.pt *.pth)")
        )
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("The model could not be imported."), waitCursor=True):
            entry = self.logic.importModel(path)
            self._refreshModels(select=f"{entry.id}@{entry.version}")

    def onExportModel(self) -> None:
        reference = self._parameterNode.modelReference
        if not reference:
            return
        path = qt.QFileDialog.getSaveFileName(
            self.parent, _("Export model"), reference.replace("@", "-") + ".zip", "*.zip"
        )
        if path:
            with slicer.util.tryWithErrorDisplay(_("The model could not be exported."), waitCursor=True):
                self.logic.exportModel(reference, path)

    def onDeleteModel(self) -> None:
        reference = self._parameterNode.modelReference
        if reference and slicer.util.confirmYesNoDisplay(
            _("Delete model {ref} from the library?").format(ref=reference)
        ):
            with slicer.util.tryWithErrorDisplay(_("The model could not be deleted."), waitCursor=True):
                self.logic.deleteModel(reference)
                self._refreshModels()

    def onOpenLibrary(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("The library folder could not be opened.")):
            folder = self.logic.libraryFolder()
            folder.mkdir(parents=True, exist_ok=True)
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(folder)))


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


#
# SegNetsLogic
#


class SegNetsLogic(ScriptedLoadableModuleLogic):
    """Delegates to ``SegNetsLib.app.logic.SegmentationLogic``; usable without the widget:

    >>> logic = SegNetsLogic()                                      # doctest: +SKIP
    >>> result = logic.process(volumeNode, "liver-ct")              # doctest: +SKIP
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._core = None
        self._libraryFolder = qt.QSettings().value(SETTINGS_LIBRARY, "") or None

    def getParameterNode(self) -> SegNetsParameterNode:
        return SegNetsParameterNode(super().getParameterNode())

    @property
    def ready(self) -> bool:
        """True once SegNetsLib's dependencies (torch and Resources/requirements.txt) are installed."""
        if self._core is not None:
            return True
        return importlib.util.find_spec("torch") is not None and not _missingRequirements(
            resourcesDir() / "requirements.txt"
        )

    def core(self):
        """The SegNetsLib logic (created on first use, after the dependencies are installed); its model work
        runs in a warm child process of Slicer's Python, started on the first job."""
        if self._core is None:
            from SegNetsLib.app.logic import SegmentationLogic
            from SegNetsLib.app.process_worker import ProcessWorker
            from SegNetsLib.models.library import ModelLibrary

            self._core = SegmentationLogic(slicer.mrmlScene, ModelLibrary(self._libraryFolder), ProcessWorker())
        return self._core

    def shutdown(self) -> None:
        """Stop the worker process (cancelling its job); a later job starts a fresh one."""
        if self._core is not None:
            self._core.worker.shutdown()
            self._core = None

    def libraryFolderSetting(self) -> str | None:
        """The library folder chosen in the panel (None: the default)."""
        return self._libraryFolder

    def setLibraryFolder(self, folder: str | None) -> None:
        self._libraryFolder = folder
        if self._core is not None:
            from SegNetsLib.models.library import ModelLibrary

            self._core.library = ModelLibrary(folder)

    def libraryFolder(self) -> Path:
        return self.core().library.root

    def listModels(self):
        return self.core().library.list()

    def describeModel(self, reference: str) -> str:
        from SegNetsLib.app.logic import card_summary
        from SegNetsLib.card.versions import split_reference

        return card_summary(self.core().library.card(*split_reference(reference)))

    def importModel(self, path: str):
        path = Path(path)
        return self.core().library.import_path(path.parent if path.name == "card.json" else path)

    def exportModel(self, reference: str, path: str) -> Path:
        from SegNetsLib.card.versions import split_reference

        modelId, version = split_reference(reference)
        return self.core().library.export(modelId, path, version)

    def deleteModel(self, reference: str) -> list[str]:
        from SegNetsLib.card.versions import split_reference

        modelId, version = split_reference(reference)
        return self.core().library.remove(modelId, version)

    def startSegment(self, volumeNode, modelReference: str, device: str = "auto", roi: str = "auto", roiNode=None):
        from SegNetsLib.card.versions import split_reference

        modelId, version = split_reference(modelReference)
        return self.core().start_segment(volumeNode, modelId, version=version, device=device, roi=roi, roi_node=roiNode)

    def finishSegment(self, job, outputSegmentation=None):
        return self.core().finish_segment(job, output_node=outputSegmentation)

    def startFinetune(
        self,
        volumeNode,
        annotationNode,
        segmentIds: list[str],
        start: str,
        timeLimitSeconds: float,
        device: str = "auto",
        reviewed: dict[int, list[int]] | None = None,
    ):
        """Fine-tune; a ``start`` made by an earlier round continues it warm (a correction round). reviewed:
        {axis: slices} the user checked and painted in full, even with nothing on them."""
        return self.core().start_finetune(
            volumeNode, annotationNode, segmentIds, start, timeLimitSeconds, device=device, reviewed=reviewed
        )

    def finishFinetune(self, job):
        return self.core().finish_finetune(job)

    def process(
        self, inputVolume, modelReference: str, device: str = "auto", roi: str = "auto", outputSegmentation=None
    ):
        """Segment without the widget, keeping Slicer responsive; returns a SegmentResult."""
        job = self.startSegment(inputVolume, modelReference, device, roi)
        while not job.wait(0.05):
            slicer.app.processEvents()
        return self.finishSegment(job, outputSegmentation)


#
# SegNetsTest
#


class SegNetsTest(ScriptedLoadableModuleTest):
    """Runs the bodies in ``SegNetsLib.app.selftest`` (the same ones pytest runs under slicer-core) on the CPU."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_SegmentAndFinetune()

    @staticmethod
    def skipReason() -> str | None:
        """Why the self-test cannot run here (an unsupported Slicer, a missing dependency), or None."""
        reason = unsupportedReason(*runningVersions())
        if reason:
            return reason
        if not SegNetsLogic().ready:
            return "PyTorch or a package of requirements.txt is missing; nothing is installed during tests."
        return None

    def test_SegmentAndFinetune(self) -> None:
        reason = self.skipReason()
        if reason:  # Reload and Test shows a raised SkipTest as an error: report and return
            logging.warning("SegNets self-test skipped: %s", reason)
            self.delayDisplay(_("SegNets self-test skipped: {reason}").format(reason=reason))
            return
        from SegNetsLib.app import selftest

        dataDir = selftest.find_test_data(MODULE_DIR)
        with tempfile.TemporaryDirectory(prefix="segnets-selftest-") as folder:
            report = selftest.run_all(slicer.mrmlScene, Path(folder), dataDir)
        for line in report.lines():
            logging.info(line)
        self.assertTrue(report.annotation_unchanged, "the annotation segmentation was modified")
        self.assertGreaterEqual(report.finetuned_dice, selftest.MIN_FINETUNED_DICE)
        self.delayDisplay(_("SegNets self-test passed"))
