"""Voxel-weighted segmentation losses: softmax cross-entropy and Dice (plain and V-Net squared form).

Shapes: ``logits`` (N, C, D, H, W); ``target`` (N, D, H, W) int64 class indices, or (N, C, D, H, W)
float per-channel targets (multi-label); ``weight`` (N, D, H, W) float >= 0 where 0 means "not
labeled". A voxel of weight 0 changes neither the loss nor any gradient, whatever its prediction and
whatever its target value (so an "unlabeled" value such as 255 may stay in ``target`` there).
Every loss returns a scalar tensor; with no labeled voxel at all it is 0 (and still differentiable).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from SegNetsLib.core.errors import SegNetsError

ACTIVATIONS = ("softmax", "sigmoid", "none")


def _check(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> None:
    if logits.dim() < 3:
        raise SegNetsError(f"loss prediction must be (N, C, *spatial), got shape {tuple(logits.shape)}.")
    spatial = (logits.shape[0], *logits.shape[2:])
    if tuple(weight.shape) != spatial:
        raise SegNetsError(f"loss weight map has shape {tuple(weight.shape)}, expected {spatial} (N, *spatial).")
    if target.shape != logits.shape and tuple(target.shape) != spatial:
        raise SegNetsError(
            f"loss target has shape {tuple(target.shape)}, expected {spatial} class indices "
            f"or {tuple(logits.shape)} per-channel targets."
        )


def labeled_indices(target: torch.Tensor, weight: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices (N, *spatial) with unlabeled voxels (weight 0) set to 0; labeled ones must be in range."""
    labeled = weight > 0
    safe = torch.where(labeled, target.long(), torch.zeros((), dtype=torch.long, device=target.device))
    if labeled.any() and (safe.min() < 0 or safe.max() >= num_classes):
        raise SegNetsError(
            f"loss target has labeled values outside 0..{num_classes - 1} "
            f"(min {int(safe.min())}, max {int(safe.max())}) for a {num_classes}-class network."
        )
    return safe


def one_hot(indices: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, *spatial) int64 -> (N, num_classes, *spatial) float."""
    return F.one_hot(indices, num_classes).movedim(-1, 1).float()


def weighted_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    class_weights: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted softmax cross-entropy of the 3D U-Net paper (unlabeled voxels weigh 0).

    Each voxel weighs ``weight * class_weights[target]``; the result is the weighted mean
    sum(w * CE) / sum(w), as PyTorch's ``cross_entropy(weight=...)`` normalises.
    ``target`` must be class indices (N, D, H, W).
    """
    _check(logits, target, weight)
    if target.shape == logits.shape:
        raise SegNetsError("weighted cross-entropy needs class indices (N, D, H, W), not per-channel targets.")
    indices = labeled_indices(target, weight, logits.shape[1])
    w = weight.to(logits.dtype)
    if class_weights is not None:
        cw = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
        if cw.shape != (logits.shape[1],):
            raise SegNetsError(f"class_weights has {cw.numel()} values for a {logits.shape[1]}-class network.")
        w = w * cw[indices]
    ce = F.cross_entropy(logits, indices, reduction="none")
    total = torch.where(w > 0, w * ce, torch.zeros((), dtype=ce.dtype, device=ce.device)).sum()
    return total / w.sum().clamp_min(torch.finfo(w.dtype).tiny)


def _probabilities(prediction: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "softmax":
        return prediction.softmax(dim=1)
    if activation == "sigmoid":
        return prediction.sigmoid()
    if activation == "none":
        return prediction
    raise SegNetsError(f"unknown loss activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}.")


def dice_per_class(
    prediction: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    *,
    squared: bool = False,
    activation: str = "softmax",
    smooth: float = 1e-5,
    smooth_numerator: bool = True,
) -> torch.Tensor:
    """Soft Dice per class, (C,), pooled over the batch and all voxels, each voxel counted ``weight`` times.

    plain:   (2 sum w p g + smooth) / (sum w p + sum w g + smooth)
    squared: (2 sum w p g + smooth) / (sum w p^2 + sum w g^2 + smooth)  (V-Net paper, eq. 1)
    ``smooth_numerator=False`` leaves ``smooth`` out of the numerator (ConResNet's official Dice,
    2 sum p g / (sum p + sum g + 1): a class absent from the batch then has Dice 0).
    ``activation`` turns ``prediction`` into probabilities ("softmax" over C, "sigmoid", or "none"
    when it already holds probabilities).
    """
    _check(prediction, target, weight)
    probs = _probabilities(prediction, activation)
    if target.shape == prediction.shape:
        truth = target.to(probs.dtype)
    else:
        truth = one_hot(labeled_indices(target, weight, prediction.shape[1]), prediction.shape[1]).to(probs.dtype)
    w = weight.to(probs.dtype).unsqueeze(1)
    labeled = w > 0
    zero = torch.zeros((), dtype=probs.dtype, device=probs.device)
    probs = torch.where(labeled, probs, zero)  # no value (not even NaN) leaks from unlabeled voxels
    truth = torch.where(labeled, truth, zero)
    axes = [0, *range(2, prediction.dim())]
    intersection = (w * probs * truth).sum(axes)
    if squared:
        denominator = (w * probs * probs).sum(axes) + (w * truth * truth).sum(axes)
    else:
        denominator = (w * probs).sum(axes) + (w * truth).sum(axes)
    numerator = 2 * intersection + smooth if smooth_numerator else 2 * intersection
    return numerator / (denominator + smooth)


def dice_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    *,
    squared: bool = False,
    activation: str = "softmax",
    include_background: bool = True,
    smooth: float = 1e-5,
) -> torch.Tensor:
    """1 - mean soft Dice over classes (see :func:`dice_per_class`); channel 0 is left out when
    ``include_background`` is False (softmax networks, where channel 0 is the background)."""
    dice = dice_per_class(prediction, target, weight, squared=squared, activation=activation, smooth=smooth)
    if not include_background:
        if dice.numel() < 2:
            raise SegNetsError("Dice without the background needs a network with at least 2 classes.")
        dice = dice[1:]
    return 1 - dice.mean()


def masked_dice(
    prediction: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    *,
    squared: bool = False,
    activation: str = "softmax",
    smooth: float = 1e-5,
) -> torch.Tensor:
    """Dice loss for sparse annotations: only labeled voxels (weight > 0) count, each once, whatever
    its weight; foreground classes only for softmax networks (all channels for sigmoid ones)."""
    mask = (weight > 0).to(prediction.dtype)
    return dice_loss(
        prediction,
        target,
        mask,
        squared=squared,
        activation=activation,
        include_background=activation == "sigmoid",
        smooth=smooth,
    )
