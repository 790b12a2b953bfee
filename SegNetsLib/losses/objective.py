"""Each architecture's paper training loss behind one call, used by fine-tuning and training alike."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.losses.basic import dice_loss, masked_dice, weighted_cross_entropy
from SegNetsLib.losses.conresnet import conresnet_loss
from SegNetsLib.losses.runet import runet_hybrid_loss
from SegNetsLib.nets.outputs import ConResNetOutput, RUNetOutput, SegmentationOutput


def objective(
    architecture: str,
    output: SegmentationOutput,
    target: torch.Tensor,
    weight: torch.Tensor,
    *,
    class_weights: Sequence[float] | None = None,
    dice_weight: float = 0.0,
) -> torch.Tensor:
    """The paper loss of ``architecture`` for one forward ``output``, masked by ``weight``.

    target: (N, D, H, W) int64 class indices (ConResNet's multi-label paper preset also takes
    (N, C, D, H, W) 0/1 per-channel targets); weight: (N, D, H, W) float, 0 = not labeled.
    - "unet3d": weighted softmax cross-entropy (Cicek et al.), voxel weight x ``class_weights[target]``,
      plus ``dice_weight`` x masked Dice (foreground classes) when ``dice_weight`` > 0 (not in the paper;
      helps a rare class when only a few slices are painted);
    - "vnet": V-Net Dice 1 - 2 sum p g / (sum p^2 + sum g^2) over the foreground classes (softmax);
    - "conresnet": Dice + BCE (or CE) on the segmentation and the class-balanced residual BCE with deep
      supervision lambda 0.5 (:func:`SegNetsLib.losses.conresnet_loss`);
    - "runet": global + region + contour Dice (:func:`SegNetsLib.losses.runet_hybrid_loss`) on the
      coarse mask, the RoI region heads and the RoI contour heads.
    ``class_weights`` and ``dice_weight`` apply to the 3D U-Net only.
    """
    if architecture != "unet3d" and (class_weights is not None or dice_weight):
        raise SegNetsError(
            f"class_weights and dice_weight apply to the 3D U-Net objective only, not to {architecture!r}."
        )
    if architecture == "unet3d":
        loss = weighted_cross_entropy(output.logits, target, weight, class_weights)
        if dice_weight:
            loss = loss + dice_weight * masked_dice(output.logits, target, weight)
        return loss
    if architecture == "vnet":
        return dice_loss(output.logits, target, weight, squared=True, include_background=False)
    if architecture == "conresnet":
        if not isinstance(output, ConResNetOutput):
            raise SegNetsError(f"the ConResNet objective needs a ConResNetOutput, got {type(output).__name__}.")
        return conresnet_loss(output, target, weight)
    if architecture == "runet":
        if not isinstance(output, RUNetOutput):
            raise SegNetsError(f"the RU-Net objective needs a RUNetOutput, got {type(output).__name__}.")
        return runet_hybrid_loss(output, target, weight)
    raise SegNetsError(
        f"no training objective for architecture {architecture!r}; choose unet3d, vnet, conresnet or runet."
    )
