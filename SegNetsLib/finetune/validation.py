"""Validation on held-out annotated slices: the Dice that decides early stopping and which model is kept.

All arrays are on the training (network) grid, [k, j, i]; the network sees normalized (C, D, H, W) input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from SegNetsLib.core.box import Box
from SegNetsLib.evaluation.metrics import class_overlaps
from SegNetsLib.finetune.sampling import Slice


def predict_box(
    net: nn.Module, image: np.ndarray, box: Box, patch_size: Sequence[int], device: torch.device
) -> np.ndarray:
    """Class indices [d, h, w] (int64) of ``box`` of ``image`` (C, D, H, W), by overlapping sliding windows."""
    crop = torch.from_numpy(np.ascontiguousarray(image[(slice(None), *box.slices)]))[None].to(device)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            logits = sliding_window_inference(
                crop,
                tuple(patch_size),
                4,
                lambda x: net(x).logits,
                overlap=0.25,
                mode="gaussian",
                padding_mode="replicate",
            )
    finally:
        net.train(was_training)
    return logits.argmax(1)[0].cpu().numpy()


def slice_box(slice_: Slice, region: Box, patch_size: Sequence[int], shape: Sequence[int]) -> Box:
    """The part of ``region`` around one slice: a slab as thick as the patch along the slice axis."""
    axis, index = slice_
    start, stop = list(region.start), list(region.stop)
    half = patch_size[axis] // 2
    start[axis] = max(0, index - half)
    stop[axis] = min(shape[axis], start[axis] + patch_size[axis])
    start[axis] = max(0, min(start[axis], stop[axis] - patch_size[axis]))
    return Box(*start, *stop)


def slices_dice(
    net: nn.Module,
    image: np.ndarray,
    labels: np.ndarray,
    weight: np.ndarray,
    slices: Sequence[Slice],
    region: Box,
    patch_size: Sequence[int],
    num_classes: int,
    device: torch.device,
) -> float:
    """Mean foreground Dice over the labelled voxels of ``slices`` (classes present there or predicted)."""
    intersection = np.zeros(num_classes)
    total = np.zeros(num_classes)
    for slice_ in slices:
        box = slice_box(slice_, region, patch_size, labels.shape)
        prediction = predict_box(net, image, box, patch_size, device)
        axis, index = slice_
        local = index - box.start[axis]
        where_box = tuple(box.slices)
        truth_slab, weight_slab = labels[where_box], weight[where_box]
        take = (slice(None),) * axis + (local,)
        labelled = weight_slab[take] > 0
        both, sizes = class_overlaps(prediction[take][labelled], truth_slab[take][labelled], num_classes)
        intersection += both
        total += sizes
    present = total[1:] > 0
    if not present.any():
        return 1.0
    return float(np.mean(2 * intersection[1:][present] / total[1:][present]))
