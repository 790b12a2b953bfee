"""Segmentation losses; every one takes a per-voxel weight map (N, D, H, W) where 0 = not labeled.

- :mod:`.basic`: weighted softmax cross-entropy, Dice (plain and V-Net squared), masked Dice;
- :mod:`.conresnet`: ConResNet's Dice + BCE + residual BCE with deep supervision;
- :mod:`.runet`: 3D RU-Net's Dice-based multi-task hybrid loss;
- :mod:`.objective`: ``objective(architecture, output, target, weight)``, each network's paper loss.
"""

from SegNetsLib.losses.basic import dice_loss, dice_per_class, masked_dice, one_hot, weighted_cross_entropy
from SegNetsLib.losses.conresnet import conresnet_loss
from SegNetsLib.losses.objective import objective
from SegNetsLib.losses.runet import runet_global_loss, runet_hybrid_loss

__all__ = [
    "conresnet_loss",
    "dice_loss",
    "dice_per_class",
    "masked_dice",
    "objective",
    "one_hot",
    "runet_global_loss",
    "runet_hybrid_loss",
    "weighted_cross_entropy",
]
