"""What the SegNets panel's buttons do, on the server's main (event-loop) thread.

Model work runs on a :class:`SegNetsLib.app.worker.ThreadWorker`, submitted through
:mod:`SegNetsLib.app.logic` exactly as the Slicer module does (the worker interface is the same as
the panel's child process; a thread suffices here because the asyncio event loop releases the GIL
while it waits); this class only polls the job, mirrors its progress into the page state and
touches MRML when the job is done.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

import numpy as np
from trame_server import Server
from trame_server.utils.typed_state import TypedState
from trame_slicer.segmentation import (
    SegmentationEffectErase,
    SegmentationEffectNoTool,
    SegmentationEffectPaint,
)

from SegNetsLib.app.logic import SegmentationLogic, card_summary, device_choices
from SegNetsLib.app.worker import Job, JobState, ThreadWorker
from SegNetsLib.card.versions import split_reference
from SegNetsLib.core.annotation import annotated_slices, count_slices
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.mrml import annotation_from_segmentation, segmentation_from_labelmap, volume_from_node
from SegNetsLib.mrml.files import save_segmentation_node
from SegNetsLib.web.models import NEW_NETWORK_LABELS, is_new_network, model_choices, new_network_text
from SegNetsLib.web.rounds import RoundActions
from SegNetsLib.web.state import Choice, PanelState, take_fields

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.25
_JOB_NAMES = {"segment": "Segment", "finetune": "Fine-tune"}  # as the page's buttons say
ANNOTATION_NAME = "Annotation"


class PanelActions(RoundActions):
    """The panel's behaviour. ``panel`` is the typed :class:`PanelState` of the page."""

    def __init__(self, server: Server, slicer_app, panel: TypedState[PanelState]) -> None:
        self._server = server
        self._slicer_app = slicer_app
        self._panel = panel
        self.logic = SegmentationLogic(slicer_app.scene, worker=ThreadWorker("SegNets web worker"))
        self._job: Job | None = None
        self._volume_node_id: str | None = None
        self._annotation_node_id: str | None = None
        self._result_node_id: str | None = None
        self._roi_node_id: str | None = None
        self._count_pending = False
        self.editor.segmentation_modified.connect(self._on_annotation_modified)
        panel.bind_changes({panel.name.model_key: self._on_model_changed})
        self.data.devices = [Choice(title=label, value=spec) for label, spec in device_choices()]

    # --- accessors ---------------------------------------------------------------------------------
    @property
    def data(self) -> PanelState:
        return self._panel.data

    @property
    def names(self):
        """The state names of :class:`PanelState`'s fields (``names.time_budget_s``: the page's key)."""
        return self._panel.name

    @property
    def editor(self):
        return self._slicer_app.segmentation_editor

    @property
    def scene(self):
        return self._slicer_app.scene

    def node(self, node_id: str | None):
        return self.scene.GetNodeByID(node_id) if node_id else None

    @property
    def volume_node(self):
        return self.node(self._volume_node_id)

    @property
    def annotation_node(self):
        return self.node(self._annotation_node_id)

    @property
    def result_node(self):
        return self.node(self._result_node_id)

    @property
    def busy(self) -> bool:
        """A job runs, or has ended and its result is not in the scene yet (an upload or a new job waits for both)."""
        return self._job is not None

    # --- models ------------------------------------------------------------------------------------
    def refresh_models(self) -> None:
        """List the model library; keep the current choice when it is still there."""
        entries = self.logic.library.list()
        self.data.models = model_choices(entries)
        keys = [item.value for item in self.data.models]
        if self.data.model_key not in keys:  # the newest library version, else a new 3D U-Net
            self.data.model_key = keys[max(len(entries) - 1, 0)]
        self._on_model_changed(self.data.model_key)

    def _card(self, key: str | None):
        if not key or is_new_network(key):
            return None
        model_id, version = split_reference(key)
        return self.logic.library.card(model_id, version)

    @staticmethod
    def _start_labels(key: str | None, card):
        """The labels an unpainted annotation starts with for the model choice ``key`` (``card``: its card, None
        for a new network or no choice): the card's, a new network's one segment, or None."""
        return card.labels if card else NEW_NETWORK_LABELS if is_new_network(key) else None

    def _on_model_changed(self, key: str | None) -> None:
        try:
            card = self._card(key)
        except SegNetsError as error:
            self.data.error = str(error)
            return
        self.data.model_card_text = card_summary(card) if card else new_network_text(key) if is_new_network(key) else ""
        self._label_annotation(self._start_labels(key, card))

    # --- volume and annotation ---------------------------------------------------------------------
    def on_volume_loaded(self, volume_node) -> None:
        """A new volume is in the (cleared) scene: start an empty annotation segmentation for it."""
        self._volume_node_id = volume_node.GetID()
        self._result_node_id = self._roi_node_id = None
        annotation = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", ANNOTATION_NAME)
        annotation.CreateDefaultDisplayNodes()
        annotation.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        self._annotation_node_id = annotation.GetID()
        try:
            self._label_annotation(self._start_labels(self.data.model_key, self._card(self.data.model_key)))
        except SegNetsError as error:
            self.data.error = str(error)
        self.data.volume_name = volume_node.GetName()
        self._forget_rounds()  # the rounds were another volume's
        self.data.has_result = False
        self.data.result_name = ""
        self.data.annotated_slices = 0
        self._clear_training()
        self.data.message = f"Loaded {volume_node.GetName()!r}; pick a model and click Segment."

    def _label_annotation(self, labels) -> None:
        """Give a still unpainted annotation one empty segment per label of ``labels`` (a card's, or a new
        network's one segment: names, colours, terminology).

        Once the user has painted, the annotation is theirs and is left exactly as it is.
        """
        annotation, volume_node = self.annotation_node, self.volume_node
        if labels is None or annotation is None or volume_node is None:
            return
        painted = self.annotation_labels()
        if painted is not None and painted[0].array.any():
            return
        volume = volume_from_node(volume_node)
        empty = volume.with_array(np.zeros(volume.shape_kji, dtype=np.uint8))
        segmentation_from_labelmap(
            self.scene, empty, labels, volume_node, ANNOTATION_NAME, segmentation_node=annotation
        )
        self.editor.set_active_segment_id(self.editor.get_nth_segment_id(0))

    def _on_annotation_modified(self, *_args) -> None:
        if self._count_pending:
            return
        self._count_pending = True
        asyncio.get_event_loop().call_later(0.5, self._count_annotated_slices)

    def _count_annotated_slices(self) -> None:
        self._count_pending = False
        with self._server.state:
            self.data.annotated_slices = self.annotated_slice_count()

    def annotation_labels(self, refuse_covered: bool = False):
        """The annotation as painted: (uint8 Volume [k, j, i], label -> segment id), or None without one
        (``refuse_covered``: see :func:`SegNetsLib.mrml.annotation.annotation_from_segmentation`)."""
        annotation, volume = self.annotation_node, self.volume_node
        if annotation is None or volume is None:
            return None
        segmentation = annotation.GetSegmentation()
        ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
        if not ids:
            return None
        return annotation_from_segmentation(annotation, ids, volume, refuse_covered)

    def annotated_slice_count(self) -> int:
        labels = self.annotation_labels()
        return count_slices(annotated_slices(labels[0].array)) if labels else 0

    # --- Segment Editor shortcuts ------------------------------------------------------------------
    def paint(self) -> None:
        self.editor.set_active_effect_type(SegmentationEffectPaint)

    def erase(self) -> None:
        self.editor.set_active_effect_type(SegmentationEffectErase)

    def stop_editing(self) -> None:
        self.editor.set_active_effect_type(SegmentationEffectNoTool)

    def undo(self) -> None:
        if self.editor.undo_stack is not None:
            self.editor.undo_stack.undo()

    def redo(self) -> None:
        if self.editor.undo_stack is not None:
            self.editor.undo_stack.redo()

    # --- jobs --------------------------------------------------------------------------------------
    def segment(self, fields: dict | None = None) -> None:
        """Segment the volume with the chosen model on the worker thread (``fields``: see :func:`take_fields`)."""
        take_fields(self._server, self._panel.name, fields)

        def submit() -> Job:
            if is_new_network(self.data.model_key):
                raise SegNetsError(
                    f"a new {self.data.model_key} has learned nothing yet: paint the structure on a few slices and "
                    "click Fine-tune, or pick a model of the library to Segment with."
                )
            model_id, version = split_reference(self.data.model_key or "")
            return self.logic.start_segment(
                self.volume_node, model_id, version=version, device=self.data.device, roi=self.data.roi_mode
            )

        self._start("segment", submit)

    def finetune(self, fields: dict | None = None) -> None:
        """Fine-tune the chosen model on the painted slices, then segment the volume with the new version
        (``fields``: see :func:`take_fields`)."""
        take_fields(self._server, self._panel.name, fields)

        def submit() -> Job:
            segment_ids = self._painted_segment_ids()
            if not segment_ids:
                raise SegNetsError("Nothing is painted yet: paint the structures on a few slices, then Fine-tune.")
            typed = self._server.state[self._panel.name.time_budget_s]  # as sent: an emptied field is ""
            try:
                budget = float(typed)
            except (TypeError, ValueError):
                raise SegNetsError(f"time budget {typed!r} is not a number of seconds.") from None
            empty = self.data.suggested_empty and self.data.suggested_slice is not None
            reviewed = {int(self.data.suggested_axis): [int(self.data.suggested_slice)]} if empty else None
            return self.logic.start_finetune(
                self.volume_node,
                self.annotation_node,
                segment_ids,
                self.data.model_key or "",
                budget,
                device=self.data.device,
                reviewed=reviewed,
            )

        self._start("finetune", submit)

    def _painted_segment_ids(self) -> list[str]:
        """The annotation's segments that hold painted voxels (the ones to learn; one that later segments cover
        wholly is refused, not left out)."""
        labels = self.annotation_labels(refuse_covered=True)
        if labels is None:
            return []
        present = set(np.unique(labels[0].array).tolist()) - {0}
        return [segment_id for value, segment_id in labels[1].items() if value in present]

    def cancel(self) -> None:
        if self.busy:
            self._job.cancel()
            self.data.cancelling = True
            self.data.stage = "cancelling..."

    def stop(self, timeout_s: float = 60.0) -> bool:
        """The server is stopping: cancel the job and wait for the worker thread to end (a model being saved is
        saved whole); True when it ended. Python aborts when it exits while the thread is inside torch."""
        if self._job is not None:
            self._job.cancel()
        self.logic.worker.shutdown(wait=False)
        self.logic.worker.thread.join(timeout_s)
        return not self.logic.worker.thread.is_alive()

    def _start(self, kind: str, submit) -> None:
        if self.busy:
            self.data.error = "A job is already running; wait for it or cancel it first."
            return
        self.data.error = ""
        if self.volume_node is None:
            self.data.error = "Load a volume first (Open Files, top left)."
            return
        try:
            self._job = submit()
        except SegNetsError as error:
            self.data.error = str(error)
            return
        self.data.busy, self.data.job_kind, self.data.cancelling = True, kind, False
        self.data.progress, self.data.stage, self.data.message = 0.0, "starting", ""
        if kind == "finetune":
            self._clear_training()
        asyncio.ensure_future(self._poll(self._job, kind))

    async def _poll(self, job: Job, kind: str) -> None:
        while not job.done:
            await asyncio.sleep(POLL_INTERVAL_S)
            with self._server.state:
                self._show_progress(job)
        with self._server.state:
            self._show_progress(job)
            self._finish(job, kind)

    def _show_progress(self, job: Job) -> None:
        snapshot = job.progress()
        self.data.progress = snapshot.fraction
        self.data.stage = snapshot.stage if not self.data.cancelling else "cancelling..."
        extra = snapshot.extra
        if "loss" in extra and extra.get("iteration", 0) != self.data.iteration:
            self.data.iteration = int(extra["iteration"])
            self.data.losses = [*self.data.losses, float(extra["loss"])][-200:]
        if extra.get("dice") is not None:
            self.data.validation_dice = float(extra["dice"])

    def _clear_training(self) -> None:
        """Forget the loss curve, iteration and validation Dice shown for a Fine-tune."""
        self.data.losses, self.data.iteration, self.data.validation_dice = [], 0, None

    def _finish(self, job: Job, kind: str) -> None:
        self._job = None  # from here on a new job or an upload may start
        self.data.busy, self.data.job_kind, self.data.cancelling = False, "", False
        self.data.error = ""  # a refusal made while the job ran (an upload, a second click) is over with it
        if kind == "finetune" and job.state is not JobState.DONE:  # no model came of that curve
            self._clear_training()
        if job.state is JobState.CANCELLED:
            self.data.message = f"{_JOB_NAMES[kind]} cancelled; nothing was changed."
            return
        try:
            if kind == "segment":
                result = self.logic.finish_segment(job, output_node=self.result_node)
                new_model = None
            else:
                finetuned = self.logic.finish_finetune(job)
                result = finetuned.segmentation if finetuned is not None else None
                new_model = finetuned.model if finetuned is not None else None
                if finetuned is not None and finetuned.validation_dice is not None:
                    self.data.validation_dice = float(finetuned.validation_dice)
                if finetuned is not None and finetuned.kept == "untrained":  # no model saved: no round either
                    self._forget_rounds()
                elif finetuned is not None:
                    self._show_round(finetuned)
        except SegNetsError as error:
            self.data.error = str(error)
            return
        except Exception as error:  # noqa: BLE001 - an unexpected failure must reach the page, not vanish
            log.exception("%s failed", kind)
            self.data.error = f"{_JOB_NAMES[kind]} failed: {error}"
            return
        if result is None:
            self.data.message = f"{_JOB_NAMES[kind]} cancelled; nothing was changed."
            return
        self._replace_result(result)
        if new_model is None:
            where = result.region()
            self.data.message = result.summary(
                f"Segmented {self.data.volume_name!r} ({where}) with {result.card.name} {result.card.version}."
            )
            return
        self.refresh_models()
        if finetuned.in_library(self.logic.library):
            self.data.model_key = f"{new_model.id}@{new_model.version}"
        dice = "" if self.data.validation_dice is None else f" (validation Dice {self.data.validation_dice:.3f})"
        untrained = finetuned.kept == "untrained"  # nothing segmented with a model: the walker's or the painting
        segmented = "" if untrained else f"Fine-tuned{dice}; the volume was segmented with the model kept. "
        self.data.message = segmented + finetuned.summary(self.logic.library)

    def _replace_result(self, result) -> None:
        """Show the newest result (segmentation and RoI nodes) and drop the previous one's nodes."""
        for old_id, new in ((self._result_node_id, result.segmentation_node), (self._roi_node_id, result.roi_node)):
            old = self.node(old_id)
            if old is not None and old is not new:
                self.scene.RemoveNode(old)
        result.segmentation_node.CreateClosedSurfaceRepresentation()  # shown in the 3D view too
        self._result_node_id = result.segmentation_node.GetID()
        self._roi_node_id = result.roi_node.GetID() if result.roi_node is not None else None
        self.data.has_result = True
        self.data.result_name = result.segmentation_node.GetName()

    # --- download ----------------------------------------------------------------------------------
    def download_result(self) -> object:
        """The result segmentation as .seg.nrrd bytes (Slicer's own writer), as a trame attachment."""
        node = self.result_node
        if node is None:
            self.data.error = "There is no result to download yet; click Segment first."
            return None
        with tempfile.TemporaryDirectory(prefix="segnets-download-") as folder:
            path = Path(folder) / "result.seg.nrrd"
            save_segmentation_node(node, path)
            return self._server.protocol.addAttachment(path.read_bytes())
