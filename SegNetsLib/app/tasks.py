"""The model work a worker runs (in a thread or in the worker child process), by task name.

Each task takes a :class:`TaskState` (what stays warm between jobs: the last loaded model) and plain
values (volumes, paths, strings, dataclasses that :mod:`SegNetsLib.app.protocol` can carry), reports
through ``progress`` and stops at ``cancel``; it returns plain values too, never MRML nodes or networks.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from SegNetsLib.card.card import LabelInfo, ModelCard
from SegNetsLib.card.factory import next_version
from SegNetsLib.core.box import Box, crop
from SegNetsLib.core.progress import CancelToken, ProgressFn
from SegNetsLib.core.volume import Volume
from SegNetsLib.models.library import ModelEntry, ModelKept, ModelLibrary, load

if TYPE_CHECKING:
    from SegNetsLib.finetune.suggest import SliceSuggestion


@dataclass
class SegmentOutput:
    """What Segment produced: labelmap [k, j, i] in the input's geometry, the boxes segmented, the card."""

    labelmap: Volume
    rois: list[Box]
    card: ModelCard
    notes: list[str] = field(default_factory=list)


@dataclass
class FinetuneOutput:
    """What Fine-tune produced: the model kept (a new library version, or the base), the whole-volume
    labelmap, the held-out Dice, which model was kept ("fine-tuned", "base", or "untrained": none) and notes."""

    entry: ModelEntry
    labelmap: Volume
    validation_dice: float | None
    kept: str
    notes: list[str] = field(default_factory=list)
    round: int = 0  # the interactive round (finetune.rounds): 1 first, n + 1 continued from round n
    suggestion: SliceSuggestion | None = None  # the slice to paint next


def crop_volume(volume: Volume, box: Box) -> Volume:
    """The part of ``volume`` inside ``box`` (voxel indices), with the origin moved to the box's corner."""
    start_ijk = np.array([box[2], box[1], box[0], 1.0])
    origin = (volume.ijk_to_lps() @ start_ijk)[:3]
    return Volume(np.ascontiguousarray(crop(volume.array, box)), volume.spacing, tuple(origin), volume.direction)


class TaskState:
    """What a worker keeps between jobs: the last used Predictor (a changed model file or device reloads)."""

    def __init__(self) -> None:
        self._key: tuple[str, str, int] | None = None
        self._predictor = None

    def predictor(self, model_path: Path, device: str, library_root: Path | None = None):
        """The warm Predictor of the model at ``model_path`` on ``device``; a locator id its card names is looked
        up in the library at ``library_root`` (default: the default library)."""
        from SegNetsLib.inference.predictor import Predictor

        key = (str(model_path), device, Path(model_path).stat().st_mtime_ns)  # a re-imported model is reloaded
        if key != self._key:
            self.release()
            net, card = load(model_path, device="cpu")
            self._predictor = Predictor(net, card, device, library_root)
            self._key = key
        return self._predictor

    @property
    def loaded(self) -> tuple[str, str] | None:
        """(model path, device) of the warm model, or None."""
        return None if self._key is None else self._key[:2]

    def release(self) -> None:
        """Drop the warm model (and its GPU memory)."""
        self._predictor, self._key = None, None
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def segment(
    state: TaskState,
    *,
    model_path: Path,
    device: str,
    volume: Volume,
    roi: str,
    box: Box | None,
    name: str,
    progress: ProgressFn,
    cancel: CancelToken,
    library_root: Path | None = None,
) -> SegmentOutput:
    """Segment ``volume`` with the model at ``model_path``; inside ``box`` only when one is given. A locator model
    the card names by id is looked up in the library at ``library_root`` (the one the model was chosen from)."""
    from SegNetsLib.runtime.devices import with_cpu_fallback

    progress(0.0, "loading model")
    notes: list[str] = []

    def run(on: str):
        predictor = state.predictor(Path(model_path), on, library_root)
        cancel.raise_if_cancelled()
        if box is None:
            return predictor.predict(volume, roi=roi, progress=progress, cancel=cancel, name=name), predictor.card
        inside = predictor.predict(crop_volume(volume, box), roi="off", progress=progress, cancel=cancel, name=name)
        labels = np.zeros(volume.shape_kji, dtype=inside.labelmap.array.dtype)
        labels[Box(*box).slices] = inside.labelmap.array
        inside.labelmap, inside.rois = volume.with_array(labels), [Box(*box)]
        return inside, predictor.card

    with collected_warnings() as warned:  # said in the worker's log alone, the panel and web page would not show it
        prediction, card = with_cpu_fallback(run, device, notes.append)
    notes += [text for text in warned if text not in notes]
    return SegmentOutput(prediction.labelmap, [Box(*b) for b in prediction.rois], card, notes)


@contextlib.contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """The warnings SegNetsLib logs on this thread inside the block (RoI components left out, say), in order."""
    said: list[str] = []
    thread = threading.get_ident()

    class Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == thread:
                said.append(record.getMessage())

    logger, handler = logging.getLogger("SegNetsLib"), Collector(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield said
    finally:
        logger.removeHandler(handler)


def finetune(
    state: TaskState,
    *,
    library_root: Path,
    volume: Volume,
    annotation: Volume,
    start: str,
    labels: list[LabelInfo],
    options,
    progress: ProgressFn,
    cancel: CancelToken,
    previous: Volume | None = None,
) -> FinetuneOutput:
    """Train from the painted slices, then save a new model version in the library at ``library_root``.

    start: an architecture name or a model folder/zip path; when the base model validated better it is
    kept and nothing is saved (the entry is then the base model's); nor is a new network that trained 0
    iterations (``kept == "untrained"``: the entry is then its card at ``start``, in no library).
    """
    from SegNetsLib.finetune.rounds import finetune_round as run_finetune
    from SegNetsLib.finetune.save import with_painted_labels
    from SegNetsLib.runtime.devices import with_cpu_fallback

    library = ModelLibrary(library_root)
    last = {"fraction": 0.0, "stage": "preparing"}
    notes: list[str] = []

    def report(fraction: float, stage: str) -> None:
        last.update(fraction=fraction, stage=stage)
        progress(fraction, stage)

    def record(values: dict) -> None:
        extra = {"iteration": values["iteration"], "loss": values["loss"]}
        if values.get("validation_dice") is not None:
            extra["dice"] = values["validation_dice"]
        progress(last["fraction"], last["stage"], **extra)

    def run(on: str):
        chosen = copy.copy(options)
        chosen.device = on
        chosen.library_root = library_root  # a locator id the card names is found beside the model
        before = None if previous is None else previous.array  # the previous round's result, for a local update
        return run_finetune(
            volume, annotation, start, chosen, progress=report, cancel=cancel, callback=record, previous=before
        )

    result = with_cpu_fallback(run, options.device, notes.append)
    cancel.raise_if_cancelled()
    card = result.card
    if result.kept != "base":  # classes new to the model (untrained: every class) take the user's segment names,
        card = with_painted_labels(card, {label.value: label for label in labels})  # colors and terminology
    if result.kept == "fine-tuned":
        if library.versions(card.id):  # one step above the newest version in this library
            base = copy.deepcopy(card)
            base.version = card.provenance.base_model_version or card.version
            card.version = next_version(library, base)
        try:
            folder = library.add_or_keep(result.net, card)
        except ModelKept as kept:  # the library could not take it: the trained model waits in kept.path
            folder = kept.path
            notes.append(str(kept))
        entry = ModelEntry(card.id, card.version, folder, card)
    else:
        entry = ModelEntry(card.id, card.version, Path(start), card)
    progress(1.0, last["stage"])
    return FinetuneOutput(
        entry,
        result.labelmap,
        result.validation_dice,
        result.kept,
        [*notes, *result.notes],
        result.round,
        result.suggestion,
    )


def hello(state: TaskState, *, progress: ProgressFn, cancel: CancelToken) -> dict:
    """Where the work runs: process id, thread, Python and torch versions and the warm model (diagnostics)."""
    import threading

    import torch

    loaded = state.loaded
    return {
        "pid": os.getpid(),
        "thread": threading.current_thread().name,
        "python": ".".join(map(str, sys.version_info[:3])),
        "torch": torch.__version__,
        "model": None if loaded is None else {"path": loaded[0], "device": loaded[1]},
    }


TASKS = {"segment": segment, "finetune": finetune, "hello": hello}
