"""What a training run is asked to do (:class:`TrainOptions`) and what it gives back (:class:`TrainResult`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from SegNetsLib.card.card import ModelCard
from SegNetsLib.card.factory import slug
from SegNetsLib.models.library import ModelLibrary

LAST = "last.safetensors"
BEST = "best.safetensors"
DEFAULT_EPOCHS = 50
PROVISIONAL_EPOCHS = 1000  # the schedule's length during the first epoch of a time-limited run
# what a device can finish: iterations per epoch and the largest default patch (d, h, w). On 2 CPU cores an
# iteration of batch 2 at 64 x 128 x 128 takes 20-30 s; at 32 x 64 x 64 it takes about an eighth of that.
DEVICE_DEFAULTS = {"cuda": (250, (64, 128, 128)), "cpu": (50, (32, 64, 64))}


@dataclass
class TrainOptions:
    """How to train. ``epochs`` (default: the resumed run's, else 50) or ``time_limit_s`` (seconds; the
    epoch count is then fixed after the first epoch from its duration). ``build_args`` override the network's constructor (e.g. width)."""

    save_model: str
    epochs: int | None = None
    time_limit_s: float | None = None
    iterations_per_epoch: int | None = None  # None: 250 on a GPU, 50 on the CPU (DEVICE_DEFAULTS)
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
    max_patch_size: tuple[int, int, int] | None = None  # the largest default patch; None: the device's


def with_device_defaults(options: TrainOptions, device: torch.device) -> TrainOptions:
    """``options`` with the epoch length and the largest default patch a ``device`` can finish filled in."""
    iterations, largest = DEVICE_DEFAULTS["cpu" if device.type == "cpu" else "cuda"]
    return dataclasses.replace(
        options,
        iterations_per_epoch=options.iterations_per_epoch or iterations,
        max_patch_size=options.max_patch_size or largest,
    )


@dataclass
class TrainResult:
    """The trained network (best weights), its card, where it went in the library, the per-epoch log, and each
    iteration's loss and duration (seconds) in this call."""

    net: nn.Module
    card: ModelCard
    model_path: Path | None
    history: list[dict[str, Any]]
    work_dir: Path
    iteration_losses: list[float]
    iteration_seconds: list[float] = field(default_factory=list)


def default_work_dir(save_model: str) -> Path:
    """``<model library root>/../training/<model id>``: checkpoints and logs of a training run."""
    return ModelLibrary().root.parent / "training" / slug(save_model)
