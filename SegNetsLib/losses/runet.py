"""3D RU-Net's Dice-based multi-task hybrid loss (Huang et al. 2019; train.py v2 of huangyjhust/3D-RU-Net).

L = L_G + L_R + 1.0 * L_C:
- L_G, global: 1 - 2(sum_{c>=1} sum w p g + 1e-4) / (sum_{c>=1} sum w (p + g) + 1e-4) of the coarse mask
  (softmax of the locator head) against the label max-pooled by (2, 4, 4);
- L_R, region: 1 - 2 sum_RoIs sum_{c>=1} w p g / sum_RoIs sum_{c>=1} w (p + g), Dice pooled over all RoIs;
- L_C, contour: the same on the contour head against the contour label (label minus its in-plane
  3x3 erosion, per axial slice; the volume's border does not erode, as with cv2.erode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from SegNetsLib.core.box import crop
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.losses.basic import labeled_indices, one_hot
from SegNetsLib.nets.blocks.padding import pad_to_multiple
from SegNetsLib.nets.outputs import RUNetOutput

GRID = (2, 4, 4)  # RU-Net's coarse cell in voxels (z, y, x)
GLOBAL_SMOOTH = 1e-4  # official global Dice epsilon
CONTOUR_WEIGHT = 1.0  # official weight of L_C (v2; v0 used 0.5)


def coarse_target(truth: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Max-pool one-hot ``truth`` (N, C, D, H, W) and ``weight`` (N, D, H, W) by (2, 4, 4) cells.

    Only labeled voxels vote: a cell is positive when one of its labeled voxels is, and weighs the
    largest weight inside it (0 when none of its voxels is labeled). Sizes are zero-padded to the grid.
    """
    labeled = (weight > 0).unsqueeze(1).to(truth.dtype)
    truth, _ = pad_to_multiple(truth * labeled, GRID)
    w, _ = pad_to_multiple(weight.unsqueeze(1), GRID)
    return F.max_pool3d(truth, GRID), F.max_pool3d(w, GRID)[:, 0]


def contour_target(truth: torch.Tensor) -> torch.Tensor:
    """Inner contour of each channel of 0/1 ``truth`` (N, C, D, H, W): truth minus its 3x3 in-plane erosion
    per axial slice. Outside the volume does not erode (official Step2_ContourExtraction.py: ``cv2.erode``'s
    default border), so a structure cut by the patch border gets no contour along that cut."""
    outside = F.pad(1 - truth, (1, 1, 1, 1), value=0.0)
    eroded = 1 - F.max_pool3d(outside, (1, 3, 3), stride=1)
    return truth - eroded


def contour_weight_map(weight: torch.Tensor) -> torch.Tensor:
    """Weight (N, D, H, W) for the contour target: a voxel's contour label is only known when its whole
    3x3 in-plane neighbourhood is labeled (sparse sagittal/coronal slices would otherwise turn every
    labeled foreground voxel into "contour"); elsewhere the weight is 0. Outside the volume counts as labeled."""
    unlabeled = F.pad((weight <= 0).to(weight.dtype).unsqueeze(1), (1, 1, 1, 1), value=0.0)
    neighbourhood_labeled = 1 - F.max_pool3d(unlabeled, (1, 3, 3), stride=1)[:, 0]
    return weight * neighbourhood_labeled


def _foreground_dice_terms(
    probs: torch.Tensor, truth: torch.Tensor, weight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum w p g, sum w (p + g)) over foreground channels c >= 1 and all voxels, unlabeled voxels left out."""
    w = weight.to(probs.dtype).unsqueeze(1)
    labeled = w > 0
    zero = torch.zeros((), dtype=probs.dtype, device=probs.device)
    p = torch.where(labeled, probs[:, 1:], zero)
    g = torch.where(labeled, truth[:, 1:], zero)
    return (w * p * g).sum(), (w * (p + g)).sum()


def runet_hybrid_loss(
    output: RUNetOutput,
    target: torch.Tensor,
    weight: torch.Tensor,
    *,
    contour_weight: float = CONTOUR_WEIGHT,
) -> torch.Tensor:
    """3D RU-Net's hybrid loss L_G + L_R + contour_weight * L_C (see the module docstring).

    target: (N, D, H, W) class indices; weight: (N, D, H, W), 0 = not labeled. RoIs are the network's own
    (predicted) boxes in ``output.rois`` with their heads in ``output.roi_logits`` / ``roi_contour_logits``;
    the region and contour Dice are pooled over every RoI (official; no epsilon, except that a loss with
    no labeled voxel in any RoI is 0 instead of 0/0).
    """
    coarse = output.coarse_logits
    num_classes = coarse.shape[1]
    if tuple(target.shape) != tuple(weight.shape) or target.dim() != 4:
        raise SegNetsError(
            f"RU-Net loss needs target and weight of one shape (N, D, H, W), got {tuple(target.shape)} and {tuple(weight.shape)}."
        )
    truth = one_hot(labeled_indices(target, weight, num_classes), num_classes).to(coarse.dtype)
    g_truth, g_weight = coarse_target(truth, weight)
    if g_truth.shape != coarse.shape:
        raise SegNetsError(
            f"RU-Net coarse logits {tuple(coarse.shape)} do not match the target grid {tuple(g_truth.shape)}."
        )
    inter, total = _foreground_dice_terms(torch.softmax(coarse, dim=1), g_truth, g_weight)
    global_loss = 1 - (2 * inter + GLOBAL_SMOOTH) / (total + GLOBAL_SMOOTH)

    contour = contour_target(truth)
    contour_weight_full = contour_weight_map(weight)
    sums = {
        "region": [coarse.new_zeros(()), coarse.new_zeros(())],
        "contour": [coarse.new_zeros(()), coarse.new_zeros(())],
    }
    for box, region, edge in zip(output.rois, output.roi_logits, output.roi_contour_logits):
        for name, logits, labels, w in (
            ("region", region, crop(truth, box), crop(weight, box)),
            ("contour", edge, crop(contour, box), crop(contour_weight_full, box)),
        ):
            if logits.shape[2:] != labels.shape[2:]:
                raise SegNetsError(f"RU-Net {name} logits {tuple(logits.shape)} do not match RoI {tuple(box)}.")
            i, t = _foreground_dice_terms(torch.softmax(logits, dim=1), labels, w)
            sums[name][0] = sums[name][0] + i
            sums[name][1] = sums[name][1] + t
    tiny = torch.finfo(coarse.dtype).tiny
    region_loss, contour_loss = (
        (1 - 2 * i / t.clamp_min(tiny)) * (t > 0) for i, t in (sums["region"], sums["contour"])
    )
    return global_loss + region_loss + contour_weight * contour_loss


def runet_global_loss(coarse_logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """3D RU-Net's global Dice L_G of coarse logits (N, C, D/2, H/4, W/4) against target / weight (N, D, H, W).

    The hybrid loss of an output without RoIs is exactly its global term (region and contour sums are empty).
    """
    output = RUNetOutput(
        logits=coarse_logits, coarse_logits=coarse_logits, rois=[], roi_logits=[], roi_contour_logits=[]
    )
    return runet_hybrid_loss(output, target, weight)
