"""ConResNet's loss (Zhang et al., IEEE TMI 2021; train_conresnet.py / utils/loss.py of jianpengz/ConResNet).

L = Dice(seg) + BCE(seg) + BCE_w(res) + lambda * (BCE_w(resx2) + BCE_w(resx4)), lambda = 0.5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.losses.basic import dice_per_class, labeled_indices, one_hot, weighted_cross_entropy
from SegNetsLib.nets.outputs import ConResNetOutput

DEEP_SUPERVISION_LAMBDA = 0.5  # the paper's best lambda (ablation over 0, 0.1, 0.5, 1)
DICE_SMOOTH = 1.0  # official Dice: 2 sum(p y) / (sum p + sum y + 1), nothing added to the numerator


def residual_target(truth: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Label residual (N, C, D, H, W): 1 where a channel's label changes between slices s-1 and s (along D).

    truth: (N, C, D, H, W) per-channel 0/1; weight: (N, D, H, W). The change at slice s is known only
    when both slices are labeled, so its weight is weight[s] * weight[s-1]; slice 0 has no previous slice
    and weighs 0 (the official loader sets label_res[0] = label[0] instead; like the image residual,
    which is zero at slice 0, we leave slice 0 out). Returns (target, residual weight (N, D, H, W)).
    """
    change = (truth[:, :, 1:] != truth[:, :, :-1]).to(truth.dtype)
    target = torch.cat([torch.zeros_like(truth[:, :, :1]), change], dim=2)
    res_weight = torch.cat([torch.zeros_like(weight[:, :1]), weight[:, 1:] * weight[:, :-1]], dim=1)
    return target, res_weight


def weighted_bce_per_channel(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """BCE with logits per channel, (C,): weighted mean over voxels; ``pos_weight`` (C,) scales positives."""
    w = weight.to(logits.dtype).unsqueeze(1)
    labeled = w > 0
    zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
    logits = torch.where(labeled, logits, zero)  # nothing (not even NaN) leaks from unlabeled voxels
    target = torch.where(labeled, target.to(logits.dtype), zero)
    if pos_weight is not None:
        pos_weight = pos_weight.view(1, -1, *([1] * (logits.dim() - 2)))
    per_voxel = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction="none")
    axes = [0, *range(2, logits.dim())]
    return (w * per_voxel).sum(axes) / w.sum().clamp_min(torch.finfo(w.dtype).tiny)


def residual_bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Class-balanced BCE of one residual head (official ``BCELossBoud`` with the intended sigmoid),
    mean over channels: positives weigh ln(n / (sum R + 1)) (n = labeled voxels; floored at 0), negatives 1."""
    w = weight.to(logits.dtype).unsqueeze(1)
    axes = [0, *range(2, logits.dim())]
    positives = (w * (w > 0) * target.to(logits.dtype)).sum(axes)
    pos_weight = torch.log(w.sum() / (positives + 1)).clamp_min(0)
    return weighted_bce_per_channel(logits, target, weight, pos_weight).mean()


def conresnet_loss(
    output: ConResNetOutput,
    target: torch.Tensor,
    weight: torch.Tensor,
    *,
    lam: float = DEEP_SUPERVISION_LAMBDA,
) -> torch.Tensor:
    """ConResNet's training loss, unlabeled voxels (weight 0) left out.

    target: (N, D, H, W) class indices for softmax networks (default preset), or (N, C, D, H, W) 0/1 per
    channel for multi-label ones (paper preset, BraTS ET/WT/TC); weight: (N, D, H, W).
    - Segmentation: Dice 2 sum p g / (sum p + sum g + 1) (official: smooth 1 in the denominator only, so
      a class absent from the batch has Dice 0; mean over channels; foreground classes for softmax) plus,
      for multi-label, BCE with logits per channel summed over channels (official), for softmax the
      categorical equivalent, weighted cross-entropy.
    - Residual heads: :func:`residual_bce` against the label residual
      (:func:`residual_target`) with deep supervision: res + lam * (resx2 + resx4).

    Deviation from the official code, on purpose: its residual BCE (``BCELossBoud``) is applied to the
    raw head outputs clamped to [1e-3, 1 - 1e-3] without a sigmoid (jianpengz/ConResNet issue #7, open),
    so the heads train only while their logits lie in (0.001, 0.999). We apply the intended sigmoid.
    Dice is pooled over the batch (the official code averages per-sample Dice; equal at batch size 1).
    """
    logits = output.logits
    multi_label = target.dim() == logits.dim()
    num_classes = logits.shape[1]
    any_labeled = (weight > 0).any()  # with no labeled voxel at all the loss is 0, as for every loss here
    if multi_label:
        truth = target.to(logits.dtype)
        dice = dice_per_class(logits, truth, weight, activation="sigmoid", smooth=DICE_SMOOTH, smooth_numerator=False)
        seg_loss = (1 - dice).mean() * any_labeled + weighted_bce_per_channel(logits, truth, weight).sum()
    else:
        if num_classes < 2:
            raise SegNetsError("a softmax ConResNet needs at least 2 classes (background included).")
        truth = one_hot(labeled_indices(target, weight, num_classes), num_classes).to(logits.dtype)
        dice = dice_per_class(logits, target, weight, activation="softmax", smooth=DICE_SMOOTH, smooth_numerator=False)
        seg_loss = (1 - dice[1:]).mean() * any_labeled + weighted_cross_entropy(logits, target, weight)
    if len(output.residual_logits) != 3:
        raise SegNetsError(f"ConResNet output has {len(output.residual_logits)} residual heads, expected 3.")
    res_target, res_weight = residual_target(truth, weight)
    res, resx2, resx4 = (residual_bce(h, res_target, res_weight) for h in output.residual_logits)
    return seg_loss + res + lam * (resx2 + resx4)
