"""The GUI-free logic behind the Slicer panel, SegNets Web and headless Slicer batch runs.

The pattern: ``start_*`` runs on the thread that owns the MRML scene, reads the nodes into plain
arrays (:mod:`SegNetsLib.mrml`) and submits the model work (a task of :mod:`SegNetsLib.app.tasks`) to
a worker (:mod:`SegNetsLib.app.worker`: a warm child process in Slicer, a thread elsewhere); the
caller polls the returned Job (progress, stage, loss, Dice) and then calls ``finish_*`` on the scene's
thread, which creates the result nodes. The worker never touches MRML, and a cancelled or failed job
creates no node.

>>> logic = SegmentationLogic(scene)                          # doctest: +SKIP
>>> job = logic.start_segment(volume_node, "liver-ct")        # doctest: +SKIP
>>> job.wait(); result = logic.finish_segment(job)            # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from SegNetsLib import mrml
from SegNetsLib.app.outcomes import FinetuneOutcome, SegmentResult, is_in_library
from SegNetsLib.app.worker import Job, ThreadWorker, Worker
from SegNetsLib.card.card import LabelInfo, ModelCard
from SegNetsLib.card.versions import split_reference
from SegNetsLib.core.box import box_union
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.models.importers import WEIGHT_SUFFIXES
from SegNetsLib.models.library import ModelEntry, ModelLibrary, model_at
from SegNetsLib.runtime.devices import list_devices


def device_choices() -> list[tuple[str, str]]:
    """(label, device spec) pairs for a device picker: Auto, CPU, then each CUDA GPU by name and memory,
    or Apple's MPS GPU."""
    choices = [("Auto", "auto"), ("CPU", "cpu")]
    choices += [
        (f"{gpu.name} ({gpu.memory_gib:g} GiB, {gpu.device})" if gpu.memory_gib else gpu.name, gpu.device)
        for gpu in list_devices()
    ]
    return choices


def import_model_file(library: ModelLibrary, path: str | Path) -> ModelEntry:
    """Import what the panel's Import offers: a model .zip or a model folder's card.json. Bare weights need an
    architecture and labels the panel cannot ask for: refused in one sentence naming the command that takes them."""
    path = Path(path)
    if path.suffix.lower() in WEIGHT_SUFFIXES:
        raise SegNetsError(
            f"{path.name}: bare weights need their architecture and labels, which the command 'segnets models import' "
            "takes (--architecture, --labels); here choose a model .zip or a model folder's card.json."
        )
    return library.import_path(path.parent if path.name == "card.json" else path)


def card_summary(card: ModelCard) -> str:
    """A few plain-text lines describing a model card for the panel (architecture, labels, provenance)."""
    labels = ", ".join(label.name for label in card.labels)
    channels = ", ".join(f"{channel.name} ({channel.modality})" for channel in card.in_channels)
    lines = [
        f"{card.name}, version {card.version}",
        f"Architecture: {card.architecture} ({card.build_args.get('preset', 'default')} preset)",
        f"Input: {channels}",
        f"Labels: {labels}",
    ]
    provenance = card.provenance
    if provenance.base_model_id:
        lines.append(f"Fine-tuned from {provenance.base_model_id} {provenance.base_model_version or ''}".rstrip())
    if provenance.trained_on:
        names = ", ".join(str(record.get("name") or "unnamed volume") for record in provenance.trained_on[:3])
        more = len(provenance.trained_on) - 3
        lines.append(f"Trained on: {names}" + (f" and {more} more" if more > 0 else ""))
    if provenance.validation:
        scores = ", ".join(f"{key} {value:.3f}" for key, value in provenance.validation.items() if value is not None)
        if scores:
            lines.append(f"Validation: {scores}")
    if card.description:
        lines.append(card.description)
    return "\n".join(lines)


def card_of(model_path: Path) -> ModelCard:
    """The card of a model folder or .zip, read without loading the weights."""
    from SegNetsLib.card.schema import CARD_FILE, read_card
    from SegNetsLib.models.store import read_zip_card

    return read_card(model_path / CARD_FILE) if model_path.is_dir() else read_zip_card(model_path)


def _label_values_for_model(card: ModelCard, labels: list[LabelInfo]) -> tuple[dict[int, int], bool]:
    """Map annotation values (1..n, one per chosen segment) onto the model's label values by segment name.

    One segment and a one-label model always match. Segments named like no label become new classes
    (values after the model's); the second item says whether the network's head must grow.
    """
    if len(labels) == 1 and len(card.labels) == 1:
        return {labels[0].value: card.labels[0].value}, False
    by_name = {label.name.strip().lower(): label.value for label in card.labels}
    next_value = max(label.value for label in card.labels) + 1
    mapping, extend = {}, False
    for label in labels:
        value = by_name.get(label.name.strip().lower())
        if value is None:
            value, next_value, extend = next_value, next_value + 1, True
        mapping[label.value] = value
    return mapping, extend


class SegmentationLogic:
    """Segment and fine-tune MRML volumes with models from a library, in the background.

    scene: the vtkMRMLScene the nodes live in; library: the model library (default: the user's);
    worker: where the model work runs (default: a new thread worker; the Slicer panel, the batch script
    and the self-test pass a :class:`~SegNetsLib.app.process_worker.ProcessWorker`).
    """

    def __init__(self, scene, library: ModelLibrary | None = None, worker: Worker | None = None) -> None:
        self.scene = scene
        self.library = library or ModelLibrary()
        self.worker = worker or ThreadWorker()
        # model folder -> (sha256 of the volume, the labelmap (Volume) on screen made with it: its round's result, or a
        # later Segment's with it): the rounds of the volume fine-tuned last, so that a long day's work keeps one
        # volume's results, not every one's
        self._shown: dict[str, tuple[str | None, Any]] = {}

    def model_path(self, model: str, version: str | None = None) -> Path:
        """The model folder (or .zip) for a library id (newest version by default) or a path (one written as a
        path, ``./m`` or ``~/m``, is never a library model: :func:`SegNetsLib.models.library.model_at`)."""
        path = model_at(model)
        if version is None and path is not None and (path.is_dir() or path.suffix.lower() == ".zip"):
            return path
        return self.library.find(model, version)

    # --- Segment ----------------------------------------------------------------------------------
    def start_segment(
        self,
        volume_node,
        model_id: str,
        *,
        version: str | None = None,
        device: str = "auto",
        roi: str = "auto",
        roi_node=None,
        output_node=None,
    ) -> Job:
        """Submit Segment of ``volume_node`` with library model ``model_id`` (newest version by default;
        a model folder or .zip path works too).

        roi: "auto" (the model's RoI localization) or "off" (whole volume); a ``roi_node`` restricts the
        run to that markups ROI instead. output_node: the segmentation node the result replaces the
        segments of (default: a new one), fixed now so that one chosen while the job runs is left alone.
        Raises SegNetsError at once for a missing model or volume.
        """
        volume = mrml.volume_from_node(volume_node)
        box = mrml.box_from_roi_node(roi_node, volume_node) if roi_node is not None else None
        model_path = self.model_path(model_id, version)
        name = f"volume {volume_node.GetName()!r}"
        job = self.worker.submit(
            "segment",
            model_path=model_path,
            library_root=self.library.root,
            device=device,
            volume=volume,
            roi=roi,
            box=box,
            name=name,
            description=f"Segment {name}",
        )
        # the nodes themselves, not their IDs: after a scene close an ID may name a node loaded since
        job.context.update(
            kind="segment", model_path=model_path, volume_node=volume_node, roi_node=roi_node, output_node=output_node
        )
        return job

    def finish_segment(self, job: Job, output_node=None, name: str | None = None) -> SegmentResult | None:
        """Create the result nodes of a finished Segment job; None when it was cancelled.

        output_node: a segmentation node to replace the segments of (default: the one given to
        ``start_segment`` while it is in the scene, else a new node named "<volume> <model>"). The detected region becomes a markups ROI node; a run inside the user's
        ROI node keeps that node (``roi_node`` is then the user's). Re-raises the job's error.
        """
        if job.cancelled:
            return None
        prediction = job.result()
        card = prediction.card
        volume_node = self._job_node(job, "volume_node")
        if volume_node is None:
            raise SegNetsError(f"{_volume_gone(job)}; no segmentation was made.")
        segmentation_node = mrml.segmentation_from_labelmap(
            self.scene,
            prediction.labelmap,
            card.labels,
            volume_node,
            name or f"{volume_node.GetName()} {card.name}",
            segmentation_node=output_node if output_node is not None else self._job_node(job, "output_node"),
        )
        self._segmented_with_round(str(job.context.get("model_path")), volume_node, prediction.labelmap)
        roi_node = self._job_node(job, "roi_node")
        if roi_node is None and prediction.rois:
            roi_node = mrml.roi_node_from_box(volume_node, box_union(prediction.rois), f"{volume_node.GetName()} RoI")
        return SegmentResult(segmentation_node, roi_node, card, list(prediction.rois), list(prediction.notes))

    # --- Fine-tune --------------------------------------------------------------------------------
    def start_finetune(
        self,
        volume_node,
        annotation_node,
        segment_ids: list[str],
        start: str,
        time_limit_s: float,
        *,
        device: str = "auto",
        iterations: int | None = None,
        reviewed: dict[int, list[int]] | None = None,
    ) -> Job:
        """Submit Fine-tune: learn ``segment_ids`` of ``annotation_node`` (a few painted slices) on ``volume_node``.

        start: a library model "id[@version]" (or a model folder/zip) to fine-tune, or an architecture
        name ("unet3d", ...) to train from scratch; time_limit_s: the training budget in seconds;
        iterations: stop after this many steps instead (reproducible; the time limit still applies).
        reviewed: {axis: slices} the user looked at and painted in full, even with nothing on them (the
        suggested slice when they click Update). A ``start`` made by an earlier round continues it warm
        (:mod:`SegNetsLib.finetune.rounds`). The annotation is read once here (resampled into the volume's
        grid) and never modified.
        """
        from SegNetsLib.finetune.options import FinetuneOptions
        from SegNetsLib.finetune.start import is_architecture, trained_on_volume
        from SegNetsLib.mrml.annotation import annotation_and_outside, labels_from_segments, outside_notes

        if not time_limit_s or time_limit_s <= 0:
            raise SegNetsError(f"time budget {time_limit_s!r} s is not positive; give fine-tuning some seconds.")
        volume = mrml.volume_from_node(volume_node)
        annotation, label_to_segment, outside = annotation_and_outside(
            annotation_node, segment_ids, volume_node, refuse_covered=True
        )
        left_out = outside_notes(annotation_node, volume_node, annotation.array, outside)
        labels = labels_from_segments(annotation_node, label_to_segment)
        extend = False
        if is_architecture(start):
            begin = start
        else:
            model_path = self.model_path(*split_reference(start))
            begin = str(model_path)
            start_card = card_of(model_path)
            # a round continued: it changes the result near the new slice only (the result shown on another volume
            # is no previous result: it would be said to be left unused)
            shown = self._shown.get(begin, (None, None))[1]
            previous = shown if shown is not None and trained_on_volume(start_card, volume) else None
            mapping, extend = _label_values_for_model(start_card, labels)
            remapped = np.zeros_like(annotation.array)
            for old, new in mapping.items():
                remapped[annotation.array == old] = new
            annotation = annotation.with_array(remapped)
            labels = [LabelInfo(mapping[l.value], l.name, l.color, l.terminology) for l in labels]
        options = FinetuneOptions(
            time_limit_s=float(time_limit_s),
            iterations=iterations,
            device=device,
            extend_head=extend,
            label_names={label.value: label.name for label in labels},
            volume_name=volume_node.GetName(),
            annotation_name=f"the segmentation {annotation_node.GetName()!r}",
            slices=reviewed,
            ignore_value=None,  # labels are segment numbers: a segmentation cannot mark a voxel unlabeled
        )
        job = self.worker.submit(
            "finetune",
            library_root=self.library.root,
            volume=volume,
            annotation=annotation,
            start=begin,
            previous=None if is_architecture(start) else previous,
            labels=labels,
            options=options,
            description=f"Fine-tune on volume {volume_node.GetName()!r}",
        )
        job.context.update(kind="finetune", volume_node=volume_node, notes=left_out)  # the node, not its ID (_job_node)
        return job

    def finish_finetune(self, job: Job, name: str | None = None) -> FinetuneOutcome | None:
        """Create the segmentation of a finished Fine-tune job; None when it was cancelled (nothing saved)."""
        if job.cancelled:
            return None
        result = job.result()
        entry = result.entry
        records = entry.card.provenance.trained_on
        volume_key = records[-1].get("sha256") if result.kept == "fine-tuned" and records else None
        if volume_key is not None:  # the results of rounds on other volumes are not needed any more
            self._shown = {path: shown for path, shown in self._shown.items() if shown[0] == volume_key}
        if result.kept != "untrained":  # no model: no round to continue or show again
            self._shown[str(entry.path)] = (volume_key, result.labelmap)
        volume_node = self._job_node(job, "volume_node")
        if volume_node is None:  # the model is saved all the same: say where it is
            raise SegNetsError(f"{_volume_gone(job)}, so no segmentation was made; {where_saved(result, self.library)}")
        version = "(no model saved)" if result.kept == "untrained" else entry.version
        node = mrml.segmentation_from_labelmap(
            self.scene,
            result.labelmap,
            entry.card.labels,
            volume_node,
            name or f"{volume_node.GetName()} {entry.card.name} {version}",
        )
        segmentation = SegmentResult(node, None, entry.card, [])
        return FinetuneOutcome(
            entry,
            segmentation,
            result.validation_dice,
            result.kept,
            [*job.context.get("notes", []), *result.notes],
            result.round,
            result.suggestion,
            volume_node,
        )

    def _segmented_with_round(self, model_path: str, volume_node, labelmap) -> None:
        """Segment with a round's model on the volume of its round: its result (``labelmap``, uint8 Volume [k, j, i])
        is the one on screen now, so the next round continues from it (and stepping back to that round shows it)."""
        from SegNetsLib.finetune.start import trained_on_volume

        kept = self._shown.get(model_path)
        if kept is not None and trained_on_volume(card_of(Path(model_path)), mrml.volume_from_node(volume_node)):
            self._shown[model_path] = (kept[0], labelmap)

    def round_segmentation(self, reference: str, volume_node, name: str | None = None) -> SegmentResult | None:
        """A new segmentation node of the result shown when the model ``reference`` ("id@version") was made in this
        scene by this logic on ``volume_node``'s voxels (None when it was not: nothing to show again)."""
        from SegNetsLib.finetune.start import trained_on_volume

        model_id, version = split_reference(reference)
        labelmap = self._shown.get(str(self.library.find(model_id, version)), (None, None))[1]
        card = self.library.card(model_id, version)
        if labelmap is None or not trained_on_volume(card, mrml.volume_from_node(volume_node)):
            return None
        node = mrml.segmentation_from_labelmap(
            self.scene, labelmap, card.labels, volume_node, name or f"{volume_node.GetName()} {card.name} {version}"
        )
        return SegmentResult(node, None, card, [])

    def _job_node(self, job: Job, key: str):
        """The node ``job`` started from under ``key``, or None when it is no longer in this scene: removed, or
        the scene closed (a node loaded afterwards may be given the same ID, and is not the job's)."""
        node = job.context.get(key)
        return node if node is not None and self.scene.IsNodePresent(node) else None


def where_saved(output: Any, library: ModelLibrary) -> str:
    """Where a finished Fine-tune's model went (``output``: its job's result, a tasks.FinetuneOutput), as the end of
    a sentence: a new version in ``library``, one kept outside it, or none (the base model did better, or the new
    network trained 0 iterations)."""
    entry = output.entry
    model = f"{entry.id} {entry.version}"
    if output.kept == "untrained":
        return "the new network trained 0 iterations and no model was saved."
    if output.kept != "fine-tuned":
        return f"the base model {model} did better and no new model was saved."
    if is_in_library(entry.path, library):
        return f"the new model {model} is in the library."
    return f"the new model {model} is kept in {entry.path}."


def _volume_gone(job: Job) -> str:
    """Why a job's result has no volume to go on (the start of a sentence)."""
    return f"volume {job.context['volume_node'].GetName()!r} was removed from the scene while SegNets worked on it"
