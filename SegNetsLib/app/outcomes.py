"""What a finished job of the panel, SegNets Web or a headless batch run made, as they show it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from SegNetsLib.card.card import ModelCard
from SegNetsLib.core.box import Box
from SegNetsLib.models.library import ModelEntry, ModelLibrary


@dataclass
class SegmentResult:
    """What Segment produced: the segmentation node, the ROI node of the segmented region (or None)."""

    segmentation_node: Any
    roi_node: Any
    card: ModelCard
    rois: list[Box]
    notes: list[str] = field(default_factory=list)  # what the run said besides (RoIs left out, a device fallback)

    def region(self) -> str:
        """Where the model segmented, for the panel and the web page: "in N RoI(s)" or "whole volume" (RoI off, a
        model without RoI localization, or a coarse pass that found nothing)."""
        return f"in {len(self.rois)} RoI(s)" if self.rois else "whole volume"

    def summary(self, text: str) -> str:
        """``text`` (what the panel or the web page says of the result) followed by the run's notes."""
        return with_notes(text, self.notes)


@dataclass
class FinetuneOutcome:
    """What Fine-tune produced: the model now in the library (a new version, or the base model when it
    validated better; see ``kept``), the segmentation of the whole volume, and the held-out Dice."""

    model: ModelEntry
    segmentation: SegmentResult
    validation_dice: float | None
    kept: str
    notes: list[str]
    round: int = 0  # the interactive round: 1 first, n + 1 continued from round n (finetune.rounds)
    suggestion: Any = None  # finetune.suggest.SliceSuggestion: the slice to paint next, or None
    volume_node: Any = None  # the volume the round was made on: the suggested slice is one of its slices

    def in_library(self, library: ModelLibrary) -> bool:
        """Whether ``model`` is a version in ``library`` (not kept aside because the library could not take it)."""
        return is_in_library(self.model.path, library)

    def summary(self, library: ModelLibrary) -> str:
        """What the run made, for the panel and the web page: the new model, or the base model kept (no new
        version), or none (a new network that trained 0 iterations), or a model kept outside ``library``; then the
        run's notes (a skipped refinement, say)."""
        model = f"{self.model.id} {self.model.version}"
        if self.kept == "untrained":
            text = "No new model."
        elif self.kept != "fine-tuned":
            text = f"The base model {model} did better on the held-out slices and was kept; no new model was saved."
        elif not self.in_library(library):
            text = f"New model {model}, kept outside the library."
        else:
            text = f"New model {model}."
        return with_notes(text, self.notes)


def is_in_library(path: str | Path, library: ModelLibrary) -> bool:
    """Whether a model folder ``path`` is in ``library`` (not kept aside because the library could not take it)."""
    return Path(path).resolve().is_relative_to(Path(library.root).resolve())


def with_notes(text: str, notes: list[str]) -> str:
    """``text`` followed by a sentence per note ("Note: ...")."""
    return " ".join([text, *(f"Note: {note.rstrip('.')}." for note in notes)])
