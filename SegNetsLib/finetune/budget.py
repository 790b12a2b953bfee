"""The fine-tuning time budget covers the whole run: training gets what the segmentation and the
boundary refinement after it will not need.

Both are estimated before training, on this machine and this volume:
- segmentation: the preprocessing this run already timed, plus one timed forward pass of a full window
  times the number of sliding windows over what the segmentation will cover (:func:`segmented_regions`: the
  whole network grid, or with RoI localization the coarse pass and the painted structure's extended box);
- refinement (random walker on a band around the result, :mod:`SegNetsLib.finetune.refine`): the refinement itself,
  timed at half resolution on a stand-in result made from the painted slices, times REFINEMENT_SCALE.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from SegNetsLib.card.card import RoiSettings
from SegNetsLib.core.annotation import painting_axis
from SegNetsLib.core.box import Box
from SegNetsLib.finetune.cleanup import painted_range
from SegNetsLib.finetune.refine import refine_with_random_walker
from SegNetsLib.inference.locate import extend_roi
from SegNetsLib.inference.predictor import network_window, window_count
from SegNetsLib.inference.preprocess import coarse_grid_shape
from SegNetsLib.runtime.cpu_conv import fast_cpu_convolutions
from SegNetsLib.runtime.devices import synchronize

# full-resolution / half-resolution refinement seconds: 8x the voxels, and about twice the solver's iterations
# (measured 14.4-15 on BraTS whole tumours, 240 x 240 x 155 voxels)
REFINEMENT_SCALE = 16.0
MINIMUM_TRAINING_S = 1.0
# the stand-in's estimate fell short of the real result's 1.7-3.8x on the tune set's CT liver and spleen (60 s runs
# on a loaded machine), and the refinement was then skipped: keep twice the estimate and at least a tenth of the limit
REFINEMENT_MARGIN = 2.0
REFINEMENT_SHARE = 0.1
# forwards timed after the warm-up, the fastest counted: one timing on a shared machine once came out 50x too
# slow (52.9 s kept for segmenting a volume that then took 5 s, leaving 4 s of a 60 s run to training)
TIMED_FORWARDS = 3
# share of the time limit kept free: the estimates are single timings on a shared machine (runs with none ended
# 119.7-120.01 s of 120)
SAFETY_FRACTION = 0.01


def window_seconds(net: nn.Module, in_channels: int, window: Sequence[int], device: torch.device) -> float:
    """Seconds of one inference forward of ``net`` on a zero window (1, in_channels, *window), after a warm-up."""
    was_training = net.training
    net.eval()
    windows = torch.zeros((1, in_channels, *window), device=device)
    try:
        with torch.inference_mode(), fast_cpu_convolutions(device):
            net(windows)  # warm-up: oneDNN / cuDNN choose their kernels on the first call
            synchronize(device)
            timings = []
            for _ in range(TIMED_FORWARDS):
                start = time.perf_counter()
                net(windows)
                synchronize(device)
                timings.append(time.perf_counter() - start)
            return min(timings)
    finally:
        net.train(was_training)


def segmented_regions(
    roi: RoiSettings, grid_shape: Sequence[int], expected: Box | None, spacing_kji: Sequence[float]
) -> list[tuple[int, int, int]]:
    """The shapes (d, h, w) the segmentation slides windows over on a network grid of ``grid_shape``.

    With RoI localization by the network's own coarse pass (``roi`` mode "auto", locator "self") and an
    ``expected`` box on the grid (where the painted structure lies): the coarse grid (``roi.coarse_factor``
    times smaller: :func:`SegNetsLib.inference.preprocess.coarse_grid_shape`) and that
    box extended by the card's rule (spacing_kji: grid spacing, mm). Otherwise the whole grid: a structure
    found elsewhere, or an RU-Net or locator-model pass, is not foreseen, and the whole grid bounds it."""
    grid = tuple(int(n) for n in grid_shape)
    if roi.mode != "auto" or roi.locator != "self" or expected is None:
        return [grid]
    return [coarse_grid_shape(grid, roi.coarse_factor), extend_roi(expected, grid, spacing_kji, roi).shape]


def segmentation_seconds(
    net: nn.Module,
    in_channels: int,
    patch_size: Sequence[int],
    regions: Sequence[Sequence[int]],
    device: torch.device,
    preprocessing_s: float,
) -> float:
    """Seconds to segment ``regions`` (shapes d, h, w on the network grid, :func:`segmented_regions`) with windows of
    the card's ``patch_size`` (shrunk to each region, then sized to what ``net`` takes as the predictor does:
    :func:`SegNetsLib.inference.predictor.network_window`), after ``preprocessing_s`` of preparing the input."""
    timed: dict[tuple[int, int, int], float] = {}
    seconds = preprocessing_s
    for region in regions:
        window = network_window(net, patch_size, region)
        if window not in timed:
            timed[window] = window_seconds(net, in_channels, window, device)
        seconds += window_count(region, window) * timed[window]
    return seconds


def refinement_seconds(
    image: np.ndarray,
    labels: np.ndarray,
    weight: np.ndarray,
    spacing: Sequence[float],
    result: np.ndarray | None = None,
    slices: Mapping[int, Sequence[int]] | None = None,
    classical: np.ndarray | None = None,
) -> float:
    """Estimated seconds of refining ``result`` (image [k, j, i] or [c, k, j, i], labels, weight and result
    [k, j, i], spacing (i, j, k) mm): the refinement timed on every second voxel, times REFINEMENT_SCALE.
    Before training there is no result: give the annotated ``slices`` {axis: indices} instead, and
    :func:`stand_in_result` stands in for it. ``classical``: the walker's own result the refinement weighs in."""
    if result is None:
        result = stand_in_result(np.where(weight > 0, labels, 0), slices, spacing)
    half = (slice(None, None, 2),) * 3
    channels = (slice(None),) if image.ndim == 4 else ()
    start = time.perf_counter()
    refine_with_random_walker(
        image[channels + half],
        result[half],
        labels[half],
        weight[half],
        [2.0 * s for s in spacing],
        classical=None if classical is None else classical[half],
        stands_for=2,  # a system the full grid would solve on a coarser grid is coarsened alike
    )
    return REFINEMENT_SCALE * (time.perf_counter() - start)


def stand_in_result(
    painted: np.ndarray, slices: Mapping[int, Sequence[int]], spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """A result of the size a network's will have, before there is one: along the axis with the most annotated
    slices, every slice of the range the clean-up allows (:func:`SegNetsLib.finetune.cleanup.painted_range`; spacing
    (i, j, k) mm) holds the painted labels of the nearest annotated slice ([k, j, i], ``painted`` values, 0
    elsewhere)."""
    axis = painting_axis(slices)
    annotated = np.array(sorted(set(int(i) for i in slices[axis])))
    moved = np.moveaxis(painted, axis, 0)
    out = np.zeros_like(moved)
    for index in range(moved.shape[0])[painted_range(annotated, moved.shape[0], painted, spacing, axis)]:
        out[index] = moved[annotated[np.argmin(np.abs(annotated - index))]]
    return np.moveaxis(out, 0, axis)


def refinement_reserve(estimate_s: float, time_limit_s: float) -> float:
    """Seconds kept before training for the refinement estimated at ``estimate_s`` on the stand-in result: at
    least REFINEMENT_MARGIN times that and REFINEMENT_SHARE of the limit, since the check on the network's
    real result decides whether it runs."""
    return max(REFINEMENT_MARGIN * estimate_s, REFINEMENT_SHARE * time_limit_s)


def _seconds(value: float, extra_decimals: int = 0) -> str:
    """``value`` seconds rounded as a user reads them: whole seconds from 10 s, tenths from 0.1 s, else
    hundredths (``extra_decimals`` more); under 0.005 s "less than 0.01 s"."""
    if value < 0.005:
        return "less than 0.01 s"
    decimals = (0 if value >= 9.95 else 1 if value >= 0.095 else 2) + extra_decimals
    return f"{value:.{decimals}f} s"


def refinement_skipped_note(needed_s: float, left_s: float, limit_s: float) -> str:
    """The note that the refinement, estimated at ``needed_s`` seconds, was skipped with ``left_s`` seconds of the
    ``limit_s`` time limit left (negative: the run is already past it). The two numbers never read alike."""
    limit = f"the {limit_s:g} s time limit"
    if left_s < 0.005:  # a few milliseconds left are nothing a user can act on
        needed = _seconds(needed_s)
        needed = needed if needed.startswith("less") else f"about {needed}"
        return f"boundary refinement skipped: it would take {needed}, and none of {limit} was left"
    needed, left = _seconds(needed_s), _seconds(left_s)
    for extra in (1, 2):
        if needed != left:
            break
        needed, left = _seconds(needed_s, extra), _seconds(left_s, extra)
    return f"boundary refinement skipped: it would take about {needed}, and only {left} of {limit} were left"


def training_budget_s(time_limit_s: float, elapsed_s: float, reserve_s: float) -> float:
    """Seconds left for training in a ``time_limit_s`` run that has used ``elapsed_s`` and must keep ``reserve_s``
    (and SAFETY_FRACTION of the limit)."""
    return max(MINIMUM_TRAINING_S, (1.0 - SAFETY_FRACTION) * time_limit_s - elapsed_s - reserve_s)
