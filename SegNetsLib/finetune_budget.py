"""The fine-tuning time budget covers the whole run: training gets what the segmentation and the
boundary refinement after it will not need.

The segmentation after training is estimated from one timed forward pass of a full window times the
number of sliding windows over the network grid; the refinement (random walker on a band around the
result) is budgeted at the same again. Measured on the BraTS leave-one-out runs (240 x 240 x 155
voxels, 2 CPU cores): whole-volume segmentation 4-5 s, segmentation plus refinement 9-13 s.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch
from torch import nn

from .cpu_conv import fast_cpu_convolutions
from .devices import synchronize
from .inference import window_count, window_size

REFINEMENT_FACTOR = 2.0  # segmentation + refinement, as a multiple of the segmentation alone
MINIMUM_TRAINING_S = 1.0


def window_seconds(net: nn.Module, in_channels: int, window: Sequence[int], device: torch.device) -> float:
    """Seconds of one inference forward of ``net`` on a zero window (1, in_channels, *window), after a warm-up."""
    was_training = net.training
    net.eval()
    windows = torch.zeros((1, in_channels, *window), device=device)
    try:
        with torch.inference_mode(), fast_cpu_convolutions(device):
            net(windows)  # warm-up: oneDNN / cuDNN choose their kernels on the first call
            synchronize(device)
            start = time.perf_counter()
            net(windows)
            synchronize(device)
            return time.perf_counter() - start
    finally:
        net.train(was_training)


def after_training_reserve_s(
    net: nn.Module, in_channels: int, patch_size: Sequence[int], grid_shape: Sequence[int], device: torch.device
) -> float:
    """Seconds to keep for segmenting the whole network grid ``grid_shape`` (d, h, w) with windows of the
    card's ``patch_size`` (shrunk to the grid) and refining the result."""
    window = window_size(patch_size, grid_shape)
    segmentation = window_count(grid_shape, window) * window_seconds(net, in_channels, window, device)
    return REFINEMENT_FACTOR * segmentation


def training_budget_s(time_limit_s: float, elapsed_s: float, reserve_s: float) -> float:
    """Seconds left for training in a ``time_limit_s`` run that has used ``elapsed_s`` and must keep ``reserve_s``."""
    return max(MINIMUM_TRAINING_S, time_limit_s - elapsed_s - reserve_s)
