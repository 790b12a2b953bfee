"""The card of a fine-tuned model and saving it to the library as a new version."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np

from SegNetsLib.card.card import LabelInfo, ModelCard
from SegNetsLib.card.factory import derive_card, next_version, slug, volume_record
from SegNetsLib.core.annotation import listed_slices
from SegNetsLib.core.volume import Volume
from SegNetsLib.finetune.options import FinetuneOptions, FinetuneResult
from SegNetsLib.finetune.start import FINETUNED_NOTES, SCRATCH_NOTES, Start, round_of
from SegNetsLib.models.library import ModelLibrary


def result_card(
    begin: Start,
    volume: Volume,
    options: FinetuneOptions,
    slices: Mapping[int, Sequence[int]],
    weight: np.ndarray,
    iterations: int,
    seconds: float,
    val_dice: float | None,
    base_dice: float | None,
) -> ModelCard:
    """The card of the fine-tuned model: ``begin``'s card with what it was trained on (``slices``: axis -> indices;
    ``weight`` [k, j, i], > 0 where labelled), ``iterations``, ``seconds`` of wall time and the validation Dice."""
    record = volume_record(volume, options.volume_name, slices, int((weight > 0).sum()))
    validation = {"dice": val_dice} if val_dice is not None else {}
    if base_dice is not None:
        validation["base_dice"] = base_dice
    if begin.from_scratch:
        card = copy.deepcopy(begin.card)
        card.provenance.trained_on = [record]
        card.provenance.annotated_slices = {str(a): list(s) for a, s in slices.items()}
        card.provenance.iterations = int(iterations)
        card.provenance.seconds = float(seconds)
        card.provenance.validation = validation
        card.provenance.notes = SCRATCH_NOTES
        card.provenance.round = 1
        return card
    number = round_of(begin.card) + 1 if begin.same_volume else 1  # round 1: the first on this volume
    notes = FINETUNED_NOTES
    if number > 1:
        before = {int(a): set(s) for a, s in begin.card.provenance.annotated_slices.items()}
        added = {a: sorted(set(s) - before.get(a, set())) for a, s in slices.items()}
        added_text = listed_slices(added) or "none"
        notes = f"round {number}: continued from round {number - 1} ({begin.card.version}); slices added: {added_text}"
    return derive_card(
        begin.card,
        version=next_version(ModelLibrary(), begin.card),
        trained_on=[record],
        annotated_slices=slices,
        iterations=iterations,
        seconds=seconds,
        validation=validation,
        notes=notes,
        round=number,
    )


def save_result(result: FinetuneResult, name: str | None = None, library: ModelLibrary | None = None) -> str | None:
    """Add the fine-tuned model to the library as a new version; returns "id@version", or None when the
    base model was kept or a new network trained 0 iterations (nothing new to save: see ``result.kept``).
    ``name`` gives a new model its own name and id."""
    if result.kept != "fine-tuned":
        return None
    library = library or ModelLibrary()
    card = copy.deepcopy(result.card)
    if name:
        card.name, card.id = name, slug(name)
    if card.version in library.versions(card.id):
        card.version = next_version(library, card)
    library.add_or_keep(result.net, card)  # when the library cannot take it: kept aside, ModelKept says where
    return f"{card.id}@{card.version}"


def with_painted_labels(card: ModelCard, painted: Mapping[int, LabelInfo]) -> ModelCard:
    """A copy of ``card`` whose classes new to the model take the painted segment of their value (name, color,
    terminology): every class of a model trained from scratch, and those an extended head added (named
    "label N"); a fine-tuned model keeps its own labels."""
    card = copy.deepcopy(card)
    scratch = card.provenance.base_model_id is None
    card.labels = [
        painted.get(label.value, label) if scratch or label.name == f"label {label.value}" else label
        for label in card.labels
    ]
    return card
