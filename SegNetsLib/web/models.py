"""The model choices of SegNets Web: the library's versions, then a new network of each architecture, trained
from scratch on the painting alone (as the panel's "New ... (from scratch)" and the command line's default)."""

from __future__ import annotations

from SegNetsLib.card.card import LabelInfo
from SegNetsLib.card.factory import PALETTE
from SegNetsLib.core.constants import ARCHITECTURES
from SegNetsLib.models.library import ModelEntry
from SegNetsLib.web.state import Choice

# the one segment a new network's annotation starts with; the new model's card takes its name
NEW_NETWORK_LABELS = [LabelInfo(1, "Structure", PALETTE[0])]


def model_choices(entries: list[ModelEntry]) -> list[Choice]:
    """One choice per library version (value "id@version"), then one per architecture (value its name)."""
    return [
        *(
            Choice(
                title=f"{entry.card.name} {entry.version} ({entry.card.architecture})",
                value=f"{entry.id}@{entry.version}",
            )
            for entry in entries
        ),
        *(Choice(title=f"New {architecture} (from scratch)", value=architecture) for architecture in ARCHITECTURES),
    ]


def is_new_network(key: str | None) -> bool:
    """Whether a model choice is a new network of an architecture rather than a library version."""
    return key in ARCHITECTURES


def new_network_text(architecture: str) -> str:
    """What the page says of a new network where it shows a model card."""
    return (
        f"A new {architecture} learns from your painting alone: paint the whole structure on a few slices a few "
        "slices apart, then click Fine-tune. The result is a new model in the library."
    )
