"""The module's parameter node and logic: the panel's saved state, and SegNetsLib's logic behind Slicer's API."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import qt
import slicer
from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from SegNetsPanel.dependencies import _missingRequirements, resourcesDir

SETTINGS_DEVICE = "SegNets/device"
SETTINGS_LIBRARY = "SegNets/libraryFolder"


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
        from SegNetsLib.app.logic import import_model_file

        return import_model_file(self.core().library, path)

    def exportModel(self, reference: str, path: str) -> Path:
        """Write the model version as a .zip at ``path`` (".zip" added: Qt's own save dialog adds no suffix, and
        the library writes a folder at a path without one)."""
        from SegNetsLib.card.versions import split_reference

        modelId, version = split_reference(reference)
        path = path if str(path).lower().endswith(".zip") else f"{path}.zip"
        return self.core().library.export(modelId, path, version)

    def deleteModel(self, reference: str) -> list[str]:
        from SegNetsLib.card.versions import split_reference

        modelId, version = split_reference(reference)
        return self.core().library.remove(modelId, version)

    def startSegment(
        self,
        volumeNode,
        modelReference: str,
        device: str = "auto",
        roi: str = "auto",
        roiNode=None,
        outputSegmentation=None,
    ):
        """Start Segment; its result replaces the segments of ``outputSegmentation`` (chosen now; None: a new node)."""
        from SegNetsLib.card.versions import split_reference

        modelId, version = split_reference(modelReference)
        return self.core().start_segment(
            volumeNode,
            modelId,
            version=version,
            device=device,
            roi=roi,
            roi_node=roiNode,
            output_node=outputSegmentation,
        )

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
        job = self.startSegment(inputVolume, modelReference, device, roi, outputSegmentation=outputSegmentation)
        while not job.wait(0.05):
            slicer.app.processEvents()
        return self.finishSegment(job)
