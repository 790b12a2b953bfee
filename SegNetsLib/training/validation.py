"""Validation Dice per label during training (MONAI sliding windows, SegNets' one Dice), pooled over ranks.

Each rank segments its share of the validation cases on the network grid; only voxels that weigh more
than 0 (not the ignore label, not padding) are scored, so partially labeled cases count on their labeled
voxels only. A label absent from a case's reference is left out of that case's mean; a label absent from
every case gets None.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from SegNetsLib.evaluation.metrics import class_overlaps
from SegNetsLib.runtime import distributed
from SegNetsLib.training.dataset import PreparedCase, targets_from_labels


@torch.no_grad()
def case_dice(
    net: nn.Module,
    case: PreparedCase,
    num_classes: int,
    patch_size: tuple[int, int, int],
    device: torch.device,
    amp: bool,
) -> list[float]:
    """Dice of each foreground class (1..num_classes-1) on one case; NaN where the reference is empty."""
    image = torch.from_numpy(case.image)[None].to(device)
    with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
        logits = sliding_window_inference(image, patch_size, 1, lambda x: net(x).logits, overlap=0.25)
    prediction = logits.argmax(dim=1).cpu()[0].numpy()
    target, weight = targets_from_labels(torch.from_numpy(case.labels)[None])
    labeled = weight[0].numpy() > 0
    truth = target[0].numpy()[labeled]
    intersection, sizes = class_overlaps(prediction[labeled], truth, num_classes)
    present = np.bincount(truth, minlength=num_classes)[:num_classes] > 0
    return [2.0 * intersection[c] / sizes[c] if present[c] else math.nan for c in range(1, num_classes)]


def validation_dice(
    net: nn.Module,
    cases: list[PreparedCase],
    label_names: list[str],
    patch_size: tuple[int, int, int],
    device: torch.device,
    amp: bool,
) -> dict[str, float | None]:
    """Mean Dice per label name over the validation cases of every rank (None where undefined)."""
    was_training = net.training
    net.eval()
    rows = [case_dice(net, case, len(label_names) + 1, patch_size, device, amp) for case in cases]
    net.train(was_training)
    pooled = np.array([row for part in distributed.gather_objects(rows) for row in part], dtype=np.float64)
    result: dict[str, float | None] = {}
    for index, name in enumerate(label_names):
        column = pooled[:, index] if pooled.size else np.array([])
        finite = column[np.isfinite(column)]
        result[name] = float(finite.mean()) if finite.size else None
    return result


def mean_dice(dice: dict[str, float | None]) -> float | None:
    """The mean over labels with a defined Dice (None when none is defined)."""
    values = [value for value in dice.values() if value is not None and not math.isnan(value)]
    return float(np.mean(values)) if values else None
