"""Interactive rounds: correct, update in seconds, and see which slice to paint next.

Round 1 trains a new network on the painted slices (:func:`SegNetsLib.finetune.run.finetune` from an architecture).
After it the user paints one more slice (or corrects one) and starts the next round from the model just
trained: :func:`finetune_round` notices that the start is a round model (its card's
``provenance.round``), continues training warm on all painted slices for a budget scaled to what was
added (:func:`round_iterations`), with the clean-up and range limits of a network trained on painted
slices alone, and without held-out validation (the previous model has seen every slice but the new one,
so it would validate better and the correction would be thrown away). Every round's result names the
slice to paint next (:mod:`SegNetsLib.finetune.suggest`). Each round saved is a new version of the model; its card
says which round and which slices (:func:`round_history`). The annotation is never modified.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from SegNetsLib.card.card import ModelCard
from SegNetsLib.core import annotation as ann
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.progress import CancelToken, ProgressFn
from SegNetsLib.core.volume import Volume
from SegNetsLib.finetune.loop import FinetuneCallback
from SegNetsLib.finetune.options import FinetuneOptions, FinetuneResult
from SegNetsLib.finetune.run import finetune
from SegNetsLib.finetune.start import is_architecture, painted_lineage, round_of, trained_on_volume
from SegNetsLib.finetune.suggest import DEFAULT_MEASURE, SliceSuggestion, suggest_slice
from SegNetsLib.finetune.update import changing_box, local_update
from SegNetsLib.models.library import ModelLibrary, load

# A correction round trains ROUND_BASE_ITERATIONS plus ROUND_PER_SLICE_ITERATIONS per slice added, at most
# ROUND_MAX_ITERATIONS: a fixed amount of work rather than a time limit, so that the boundary refinement is never
# skipped for lack of time (on a busy machine the time estimates fall short and a skipped refinement costs far
# more Dice than a few seconds) and the budget's estimates themselves (a timed forward pass, a half-resolution
# refinement) are not spent. Sized for the target of an update within 15 s on 2 CPU cores; chosen on
# bench/sparse_sets.py's TUNE set (docs/benchmarks/sparse_rounds.md).
ROUND_BASE_ITERATIONS = 60
ROUND_PER_SLICE_ITERATIONS = 20
ROUND_MAX_ITERATIONS = 100
ROUND_TARGET_S = 15.0
# learning rate of a continued round: that of a new network (3e-3); on six TUNE structures continued for 80
# iterations from a 2-slice round 1 with one more slice, mean Dice 0.820 against 0.788 with 1e-3
ROUND_LEARNING_RATE = 3e-3
# a continued round augments by rotation and scaling alone (no dense deformation): on 12 TUNE structures continued
# from a 2-slice round 1 (300 iterations) with the suggested slice, mean Dice gain +0.070 against +0.069 with the
# deformation, each within 0.009 of it, in 5.5 s against 6.4 s on 2 threads
ROUND_DEFORM = False


@dataclass
class RoundEntry:
    """One round saved in the library: model ``id@version``, round number, painted slices, seconds."""

    id: str
    version: str
    round: int
    slices: dict[int, list[int]]
    seconds: float
    notes: str

    @property
    def reference(self) -> str:
        return f"{self.id}@{self.version}"


def card_slices(card: ModelCard) -> dict[int, list[int]]:
    """The painted slices {axis: indices} a model's card says its weights saw."""
    return {int(axis): sorted(int(i) for i in indices) for axis, indices in card.provenance.annotated_slices.items()}


def added_slices(before: Mapping[int, Sequence[int]], now: Mapping[int, Sequence[int]]) -> dict[int, list[int]]:
    """Slices painted ``now`` and not ``before`` ({axis: indices}, axes without any left out)."""
    added = {int(a): sorted(set(int(i) for i in s) - set(int(i) for i in before.get(a, []))) for a, s in now.items()}
    return {a: s for a, s in added.items() if s}


def repainted_slices(
    previous: np.ndarray, labels: np.ndarray, painted: Mapping[int, Sequence[int]], ignore_value: int | None
) -> dict[int, list[int]]:
    """Slices painted before ({axis: indices}) on which the annotation's ``labels`` [k, j, i] now differ from the
    ``previous`` result [k, j, i] at a painted voxel (not ``ignore_value``): there the previous result showed the
    earlier painting, so the user has corrected it."""
    out = {}
    for axis, indices in painted.items():
        differ = []
        for k in indices:
            now, shown = np.take(labels, k, axis), np.take(previous, k, axis)
            known = np.ones(now.shape, dtype=bool) if ignore_value is None else now != ignore_value
            if (now[known] != shown[known]).any():
                differ.append(int(k))
        if differ:
            out[int(axis)] = differ
    return out


def unpainted_slices(
    labels: np.ndarray, slices: Mapping[int, Sequence[int]], ignore_value: int | None
) -> dict[int, list[int]]:
    """The ``slices`` ({axis: indices}) on which ``labels`` [k, j, i] hold no label (only 0 and ``ignore_value``)."""
    painted = ann.labelled(labels, ignore_value)
    out = {}
    for axis, indices in slices.items():
        empty = sorted(int(k) for k in indices if not np.take(painted, k, axis).any())
        if empty:
            out[int(axis)] = empty
    return out


def _less(slices: Mapping[int, Sequence[int]], removed: Mapping[int, Sequence[int]]) -> dict[int, list[int]]:
    """``slices`` ({axis: indices}) without those in ``removed``, axes left empty dropped."""
    out = {int(a): [int(i) for i in s if i not in removed.get(a, [])] for a, s in slices.items()}
    return {a: s for a, s in out.items() if s}


def correction_notes(repainted: Mapping[int, Sequence[int]], emptied: Mapping[int, Sequence[int]]) -> str:
    """What a round's card notes add to its "slices added": the earlier rounds' slices painted differently now
    (``repainted``, known when the result on screen was given) and those whose paint was wholly erased (``emptied``,
    learned as all background); {axis: indices} each; "" when neither."""
    text = f"; slices repainted: {ann.listed_slices(repainted)}" if repainted else ""
    return text + (f"; slices emptied (learned as all background): {ann.listed_slices(emptied)}" if emptied else "")


def refuse_lost_labels(card: ModelCard, labels: np.ndarray, options: FinetuneOptions) -> None:
    """Refuse a round of ``card`` (a model trained on painted slices alone, so every class of it was painted) whose
    annotation ``labels`` [k, j, i] holds no voxel of one of its classes: the round would learn that class as
    background on every painted slice (a segment renamed, left out, or erased, say)."""
    if not painted_lineage(card):
        return
    lost = [label for label in card.labels if not (labels == label.value).any()]
    if lost:
        names = ", ".join(f"{label.name!r} (label {label.value})" for label in lost)
        known = {label.value for label in card.labels}
        new = [repr(name) for value, name in (options.label_names or {}).items() if value not in known]
        renamed = f", or give the segment {' or '.join(new)} its name back if it was renamed" if new else ""
        raise SegNetsError(
            f"{options.annotation_name} holds no {names}, which the earlier rounds of {card.id}@{card.version} learned: "
            f"this round would learn it as background on every painted slice; paint it again{renamed}."
        )


def round_iterations(added: int) -> int:
    """Training iterations of a correction round that adds ``added`` slices (a correction of painted ones: one)."""
    return min(ROUND_MAX_ITERATIONS, ROUND_BASE_ITERATIONS + ROUND_PER_SLICE_ITERATIONS * max(1, added))


def round_options(card: ModelCard, added: int, options: FinetuneOptions) -> FinetuneOptions:
    """``options`` for continuing the round model ``card`` after ``added`` slices were painted: the round's
    iterations (or the caller's, when fewer), no time limit (unless the caller's is under ROUND_TARGET_S), no
    held-out validation, the round learning rate (for a model that began on painted slices; others keep the
    fine-tuning default), the augmentation without its dense deformation (:data:`ROUND_DEFORM`), and every slice
    the previous rounds were trained on counted as painted (an all-background one included)."""
    limit = options.time_limit_s if options.time_limit_s is not None and options.time_limit_s < ROUND_TARGET_S else None
    return dataclasses.replace(
        options,
        iterations=min(options.iterations or ROUND_MAX_ITERATIONS, round_iterations(added)),
        time_limit_s=limit,
        validation=False,
        learning_rate=options.learning_rate or (ROUND_LEARNING_RATE if painted_lineage(card) else None),
        augmentation=dataclasses.replace(options.augmentation, deform=ROUND_DEFORM),
        slices=ann.merge_slices(options.slices or {}, card_slices(card)),
    )


def finetune_round(
    volume: Volume,
    annotation: Volume,
    start: str | os.PathLike | tuple[nn.Module, ModelCard],
    options: FinetuneOptions | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    callback: FinetuneCallback | None = None,
    measure: str | None = DEFAULT_MEASURE,
    previous: np.ndarray | None = None,
) -> FinetuneResult:
    """One round: round 1 trains from scratch (``start`` an architecture) or fine-tunes a model never
    fine-tuned on painted slices; round n + 1 continues warm from the model of round n (``start``: library
    id[@version], folder, zip, or (net, card)). Then the slice to paint next. The result's ``round``,
    ``added_slices`` and ``suggestion`` say which round it was, what it added and where to paint next.

    previous: the previous round's labelmap [k, j, i] (what the user has on screen): the update then changes
    it only on the slices nearer an added slice than any earlier painted one, or on the added slice alone where
    the result already agreed with its painting (:func:`SegNetsLib.finetune.update.local_update`), so a
    correction never undoes what the user already accepted elsewhere."""
    options = options or FinetuneOptions()
    number, added, labels, unpainted, before, repainted = 1, {}, None, {}, {}, {}
    if not is_architecture(start):
        net, card = start if isinstance(start, tuple) else load(start)
        start = (net, card)
        if round_of(card) >= 1 and trained_on_volume(card, volume):  # rounds on this volume
            labels = ann.embed_in_image_grid(volume, annotation).array
            now = ann.annotated_slices(labels, options.ignore_value, options.slices)
            before = card_slices(card)  # the slices the earlier rounds were trained on
            added = added_slices(before, now)
            unpainted = unpainted_slices(labels, before, options.ignore_value)
            if unpainted == {a: s for a, s in before.items() if s}:
                raise SegNetsError(
                    f"{options.annotation_name} holds none of the painting of the earlier rounds ({ann.listed_slices(unpainted)}); "
                    "give the whole painting, every round's slices with the new one."
                )
            refuse_lost_labels(card, labels, options)
            options = round_options(card, sum(len(s) for s in added.values()), options)
            number = round_of(card) + 1
    changed = {}
    if previous is not None and number >= 2:  # slices added, or painted before and painted differently now
        previous = np.asarray(previous)
        if previous.shape != labels.shape:
            raise SegNetsError(
                f"the previous result has {previous.shape[::-1]} voxels and the image {labels.shape[::-1]}; "
                "give the result of the previous round on this image."
            )
        repainted = repainted_slices(previous, labels, before, options.ignore_value)
        merged = ann.merge_slices(added, repainted)
        changed = {axis: indices for axis, indices in merged.items() if indices}
    update = len(changed) == 1  # along one axis; slices changed along two: the whole new result
    if update:  # the walkers need to run only where the update may change the result
        axis = ann.painting_axis(changed)
        kept = {axis: [i for i in before.get(axis, []) if i not in changed[axis]]}
        options = dataclasses.replace(options, changing=changing_box(labels.shape, kept, changed))
    result = finetune(volume, annotation, start, options, progress, cancel, callback)
    if number >= 2 and unpainted:
        result.notes.append(
            f"slices painted in earlier rounds hold no paint now ({ann.listed_slices(unpainted)}): learned as all background"
        )
    if previous is not None and number == 1:
        result.notes.append(
            "the previous result was not used: the model does not continue a round on this image, so the whole new "
            "result is shown"
        )
    if number == 1:
        added = {a: list(s) for a, s in result.slices.items() if s}
    untrained = result.kept == "untrained"  # no model saved: no round to continue, nor a slice to paint for one
    result.round, result.added_slices = (0, {}) if untrained else (number, added)
    result.repainted_slices = _less(repainted, unpainted)
    if number >= 2 and result.kept == "fine-tuned":  # the card says what changed besides the slices added
        result.card.provenance.notes += correction_notes(result.repainted_slices, unpainted)
    if update:
        new = np.asarray(result.labelmap.array)
        merged = local_update(
            previous, new, kept[axis], changed[axis], axis, painting=labels, ignore_value=options.ignore_value
        )
        weight = ann.weight_map(labels, result.slices, options.ignore_value)
        painted = ann.user_voxels(labels, weight, options.ignore_value)
        merged[painted] = new[painted]  # every painted voxel keeps the user's label, a repainted one too
        result.labelmap = result.labelmap.with_array(merged.astype(new.dtype))
    if measure and not untrained:  # None: no suggestion (a caller that times it apart); of the result the user will see
        result.suggestion = suggest_for(result, volume, measure, options.device)
    return result


def suggest_for(
    result: FinetuneResult, volume: Volume, measure: str = DEFAULT_MEASURE, device: str = "cpu"
) -> SliceSuggestion | None:
    """The slice to paint after ``result`` (see :func:`SegNetsLib.finetune.suggest.suggest_slice`)."""
    network = result.network_labelmap if result.network_labelmap is not None else result.labelmap.array
    return suggest_slice(
        network,
        np.asarray(result.labelmap.array),
        result.slices,
        measure,
        net=result.net,
        card=result.card,
        volume=volume,
        device="cpu" if device == "auto" else device,
    )


def round_history(library: ModelLibrary, model_id: str) -> list[RoundEntry]:
    """The rounds of ``model_id`` kept in ``library``, oldest first (versions that are not rounds left out)."""
    entries = []
    for version in library.versions(model_id):
        card = library.card(model_id, version)
        number = round_of(card)
        if number >= 1:
            entries.append(
                RoundEntry(
                    card.id, card.version, number, card_slices(card), card.provenance.seconds, card.provenance.notes
                )
            )
    return entries


def previous_round(library: ModelLibrary, card: ModelCard) -> RoundEntry | None:
    """The round ``card``'s weights continued from (its base version in ``library``), or None for round 1.
    Raises SegNetsError when that version is not in ``library`` (removed, or ``card`` imported alone)."""
    if round_of(card) <= 1 or not card.provenance.base_model_version:
        return None
    base_id = card.provenance.base_model_id or card.id
    for model_id in dict.fromkeys((base_id, card.id)):  # its base first
        for entry in round_history(library, model_id):
            if entry.version == card.provenance.base_model_version:
                return entry
    earlier = [e.reference for e in round_history(library, base_id) if e.round < round_of(card)]
    choose = (
        f"select an earlier round's model instead ({', '.join(earlier)})" if earlier else "no earlier round is kept"
    )
    raise SegNetsError(
        f"{card.id}@{card.version} (round {round_of(card)}) continued {base_id}@{card.provenance.base_model_version}, "
        f"which is not in the model library {library.root} (removed, or never imported); {choose}."
    )
