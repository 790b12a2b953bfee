"""What a training run is asked to do (:class:`TrainOptions`) and what it gives back (:class:`TrainResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from SegNetsLib.card.card import ModelCard
from SegNetsLib.card.factory import slug
from SegNetsLib.models.library import ModelLibrary

LAST = "last.safetensors"
BEST = "best.safetensors"
DEFAULT_EPOCHS = 50
PROVISIONAL_EPOCHS = 1000  # the schedule's length during the first epoch of a time-limited run


@dataclass
class TrainOptions:
    """How to train. ``epochs`` (default: the resumed run's, else 50) or ``time_limit_s`` (seconds; the
    epoch count is then fixed after the first epoch from its duration). ``build_args`` override the network's constructor (e.g. width)."""

    save_model: str
    epochs: int | None = None
    time_limit_s: float | None = None
    iterations_per_epoch: int = 250
    batch_size: int = 2
    patch_size: tuple[int, int, int] | None = None
    learning_rate: float | None = None
    device: str = "auto"
    amp: bool = True
    augment: bool = True
    foreground_share: float = 0.33
    validation_fraction: float = 0.2
    seed: int = 0
    resume: bool = False
    work_dir: Path | None = None
    preset: str = "default"
    build_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    """The trained network (best weights), its card, where it went in the library, the per-epoch log."""

    net: nn.Module
    card: ModelCard
    model_path: Path | None
    history: list[dict[str, Any]]
    work_dir: Path
    iteration_losses: list[float]


def default_work_dir(save_model: str) -> Path:
    """``<model library root>/../training/<model id>``: checkpoints and logs of a training run."""
    return ModelLibrary().root.parent / "training" / slug(save_model)
