"""The fine-tuning optimisation loop: augmented patches, the architecture's masked objective, stopping rules.

Stops at ``max_iterations``, at ``time_limit_s``, when cancelled (raises Cancelled), or early when the
validation Dice has not improved for ``patience`` validations; the best validated weights are restored.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.progress import CancelToken, ProgressFn
from SegNetsLib.finetune.sampling import SlicePatchSampler
from SegNetsLib.losses import objective
from SegNetsLib.training.augment import augment

MAX_EMPTY_DRAWS = 100

FinetuneCallback = Callable[[dict], None]
"""Receives {"iteration", "loss", "validation_dice" (or None), "seconds", "phase"} after each report."""


@dataclass
class LoopSettings:
    """Budget and optimiser of one training phase."""

    max_iterations: int | None
    time_limit_s: float | None
    learning_rate: float
    batch_size: int = 2
    dice_weight: float = 1.0
    validate_every_s: float = 15.0
    validate_every_iterations: int | None = None
    patience: int = 4
    report_every: int = 10
    phase: str = "training"


@dataclass
class LoopResult:
    iterations: int = 0
    seconds: float = 0.0
    last_loss: float = math.nan
    best_dice: float | None = None
    history: list[dict] = field(default_factory=list)


def _fraction(settings: LoopSettings, iteration: int, elapsed: float) -> float:
    parts = []
    if settings.max_iterations:
        parts.append(iteration / settings.max_iterations)
    if settings.time_limit_s:
        parts.append(elapsed / settings.time_limit_s)
    return min(1.0, max(parts)) if parts else 0.0


def _validation_due(settings: LoopSettings, iteration: int, since_last_s: float) -> bool:
    if settings.validate_every_iterations:
        return iteration % settings.validate_every_iterations == 0
    return since_last_s >= settings.validate_every_s


def _report(
    result: LoopResult,
    settings: LoopSettings,
    validation: float | None,
    elapsed: float,
    progress: ProgressFn | None,
    callback: FinetuneCallback | None,
    span: tuple[float, float],
) -> None:
    """Record one progress point and pass it to the callback and (as a stage string) to ``progress``."""
    record = {
        "iteration": result.iterations,
        "loss": result.last_loss,
        "validation_dice": validation,
        "seconds": elapsed,
        "phase": settings.phase,
    }
    result.history.append(record)
    if callback:
        callback(record)
    if progress:
        text = f"{settings.phase}: iteration {result.iterations}, loss {result.last_loss:.3f}"
        if validation is not None:
            text += f", validation Dice {validation:.3f}"
        lo, hi = span
        progress(lo + (hi - lo) * _fraction(settings, result.iterations, elapsed), text)


def run_loop(
    net: nn.Module,
    architecture: str,
    sampler: SlicePatchSampler,
    transform,
    settings: LoopSettings,
    device: torch.device,
    validate: Callable[[nn.Module], float] | None = None,
    progress: ProgressFn | None = None,
    callback: FinetuneCallback | None = None,
    cancel: CancelToken | None = None,
    progress_span: tuple[float, float] = (0.0, 1.0),
) -> LoopResult:
    """Train ``net`` in place; with ``validate`` it ends holding the best validated weights."""
    start = time.monotonic()  # the budget counts from here: the first optimiser in a process imports for ~1.4 s
    cancel = cancel or CancelToken()
    optimiser = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate, weight_decay=1e-4)
    result = LoopResult()
    best_state, since_best, last_validation, empty_draws = None, 0, 0.0, 0
    memory_format = torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format
    net.to(memory_format=memory_format)  # oneDNN's 3D convolutions are faster channels-last on the CPU
    net.train()
    while True:
        elapsed = time.monotonic() - start
        fraction = _fraction(settings, result.iterations, elapsed)
        if fraction >= 1.0:
            break
        cancel.raise_if_cancelled()
        for group in optimiser.param_groups:  # polynomial decay over the budget
            group["lr"] = settings.learning_rate * (1.0 - fraction) ** 0.9
        batch = [augment(transform, sampler.sample()) for _ in range(settings.batch_size)]
        image = torch.stack([b["image"] for b in batch]).to(device).contiguous(memory_format=memory_format)
        target = torch.stack([b["label"][0] for b in batch]).to(device)
        weight = torch.stack([b["weight"][0] for b in batch]).to(device)
        if weight.sum() == 0:  # augmentation moved every annotated voxel out of the patches: draw again
            empty_draws += 1
            if empty_draws > MAX_EMPTY_DRAWS:
                raise SegNetsError(
                    "no annotated voxel reached the training patches; check the annotation and patch size."
                )
            continue
        empty_draws = 0
        output = net(image)
        if architecture == "unet3d":
            loss = objective(architecture, output, target, weight, dice_weight=settings.dice_weight)
        else:
            loss = objective(architecture, output, target, weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        result.iterations += 1
        result.last_loss = float(loss.detach())
        elapsed = time.monotonic() - start
        validation = None
        if validate is not None and _validation_due(settings, result.iterations, elapsed - last_validation):
            last_validation = elapsed
            cancel.raise_if_cancelled()
            validation = validate(net)
            net.train()
            if result.best_dice is None or validation > result.best_dice:
                result.best_dice, since_best = validation, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                since_best += 1
        if validation is not None or result.iterations % settings.report_every == 0:
            _report(result, settings, validation, elapsed, progress, callback, progress_span)
        if validation is not None and since_best >= settings.patience:
            break
    if validate is None and result.iterations % settings.report_every:  # the last iterations: shown, not left out
        _report(result, settings, None, time.monotonic() - start, progress, callback, progress_span)
    if validate is not None:
        cancel.raise_if_cancelled()
        final = validate(net)
        _report(result, settings, final, time.monotonic() - start, progress, callback, progress_span)
        if result.best_dice is None or final >= result.best_dice:
            result.best_dice = final
        elif best_state is not None:
            net.load_state_dict(best_state)
    result.seconds = time.monotonic() - start
    return result
