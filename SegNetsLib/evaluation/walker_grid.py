"""scikit-image's random walker on a coarser grid when its system is large.

The conjugate-gradient solve grows faster than the number of unknown (unseeded) voxels: on 2 CPU cores a brain
MR's whole tumour took 23 s at 1.85 million unknowns and 3-5 s at 0.6 million. Above :data:`MAX_UNKNOWNS` the
walk runs on a grid coarsened by integer factors along two axes, never coarser than :data:`MAX_COARSE_MM`
(intensities averaged over each block, seeds kept where a block holds one class only), and its probabilities are
interpolated back (linearly); every seed keeps its class. The third axis, the one that keeps the most seeds
(across painted slices), stays at full resolution. Arrays are [k, j, i] (data may carry channels on
``channel_axis``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.segmentation import random_walker as skimage_random_walker

MAX_UNKNOWNS = 500_000
"""Unknown voxels above which the walk runs on a coarser grid. Chosen from solve times on 2 CPU cores (brain MR
corrections: 0.6 million unknowns 3-5 s, 1.1 million 8 s, 1.85 million 23 s), not from Dice
(docs/benchmarks/sparse_rounds.md)."""

MAX_COARSE_MM = 3.0
"""The coarser grid's spacing never exceeds this (mm) along an axis: the voxel size of the TUNE set's CT and MR,
on which the walker's constants were chosen. Coarsened further, the walk lost Dice there (the test CT's liver from
three slices, 3 -> 6 mm in-plane: 0.949 -> 0.924); a 1 mm brain MR coarsened to 2 mm lost little (0.920 ->
0.919)."""


def solve_random_walker(
    data: np.ndarray,
    seeds: np.ndarray,
    beta: float,
    sampling: Sequence[float],
    channel_axis: int | None = None,
    max_unknowns: int | None = MAX_UNKNOWNS,
    stands_for: int = 1,
) -> np.ndarray:
    """The walker's probabilities [n, k, j, i] of the n seed indices present in ``seeds`` [k, j, i] (0 = unknown,
    any positive integers, as scikit-image takes them), in increasing order; each seed has probability 1 for its
    own index. ``data`` and ``beta`` as
    scikit-image takes them (:func:`evaluation.classical.walker_input`); ``sampling``: voxel size (k, j, i) mm;
    Jacobi-preconditioned conjugate gradients to 1e-3. ``max_unknowns``: see the module (None: the full grid).
    ``stands_for``: n when this grid is every n-th voxel of the one whose solve it times
    (:func:`finetune.budget.refinement_seconds`); it is then coarsened by the factors that one would be, so that
    the two solves' times keep their ratio."""
    present = [int(index) for index in np.unique(seeds) if index > 0]
    grid = _coarse_grid(seeds, present, sampling, max_unknowns, stands_for)
    if grid is not None:
        factors, coarse_seeds = grid
        coarse = block_means(data, channel_axis, factors)
        # scikit-image divides beta by 10 x the data's standard deviation: an edge keeps its weight
        coarse_beta = beta * max(float(coarse.std()), 1e-12) / max(float(data.std()), 1e-12)
        probabilities = _walk(coarse, coarse_seeds, present, coarse_beta, channel_axis)
        fine = ndimage.zoom(probabilities, (1.0, *map(float, factors)), order=1, mode="nearest", grid_mode=True)
        fine = fine[(slice(None), *(slice(0, n) for n in seeds.shape))]
        for channel, index in enumerate(present):  # seeds keep their class
            fine[:, seeds == index] = 0.0
            fine[channel, seeds == index] = 1.0
        return fine
    return _walk(data, seeds, present, beta, channel_axis)


def _coarse_grid(
    seeds: np.ndarray, present: Sequence[int], sampling: Sequence[float], max_unknowns: int | None, stands_for: int = 1
) -> tuple[tuple[int, int, int], np.ndarray] | None:
    """The factors (k, j, i) and the seeds of the coarser grid to walk on, or None for the full grid (few enough
    unknowns, nothing to coarsen within :data:`MAX_COARSE_MM`, or a class that would lose all its seeds). The
    axis left at full resolution is the one whose grid keeps the most of the seeds (in voxels of the full grid;
    then the coarser grid): across painted slices, their axis. ``present``: the seed indices in ``seeds``;
    ``stands_for``: see :func:`solve_random_walker`."""
    unknowns = int(np.count_nonzero(seeds == 0)) * stands_for**3
    if max_unknowns is None or unknowns <= max_unknowns:
        return None
    fine = [float(s) / stands_for for s in sampling]
    grids = []
    for kept in range(3):
        factors = _factors(unknowns / max_unknowns, fine, kept)
        coarse = _coarse_seeds(seeds, factors)
        block = math.prod(factors)
        grids.append((np.count_nonzero(coarse) * block, block, -kept, factors, coarse))
    classes = {0, *present}
    for _, block, _, factors, coarse in sorted(grids, key=lambda grid: grid[:3], reverse=True):
        if block > 1 and set(np.unique(coarse)) == classes:
            return factors, coarse
    return None


def _walk(
    data: np.ndarray, seeds: np.ndarray, present: Sequence[int], beta: float, channel_axis: int | None
) -> np.ndarray:
    """scikit-image's probabilities [n, k, j, i] of the n seed indices ``present`` in ``seeds``, in their order."""
    with warnings.catch_warnings():  # scikit-image warns about solver tolerances; the labels are still right
        warnings.simplefilter("ignore", UserWarning)
        out = skimage_random_walker(
            data, seeds, beta=beta, mode="cg_j", tol=1e-3, channel_axis=channel_axis, return_full_prob=True
        )
    if out.shape != (len(present), *seeds.shape):  # nothing left to solve: scikit-image joins the seeds' masks
        out = np.stack([seeds == index for index in present]).astype(np.float64)  # along the last axis instead
    return out


def _factors(reduction: float, sampling: Sequence[float], kept: int) -> tuple[int, int, int]:
    """Integer factors (k, j, i) along the two axes other than ``kept``: the smallest f with f^2 >= ``reduction``,
    each lowered so that the coarse spacing stays within :data:`MAX_COARSE_MM`."""
    wanted = math.ceil(math.sqrt(reduction))
    limits = [max(1, math.floor(MAX_COARSE_MM / float(s) + 1e-9)) for s in sampling]
    return tuple(1 if axis == kept else min(wanted, limits[axis]) for axis in range(3))


def blocks(array: np.ndarray, factors: Sequence[int], mode: str) -> np.ndarray:
    """``array`` [k, j, i] padded at the ends (numpy's pad ``mode``) to whole blocks of ``factors`` voxels and
    reshaped to [k', fk, j', fj, i', fi]."""
    shape = [-(-n // f) for n, f in zip(array.shape, factors)]
    widths = [(0, c * f - n) for n, c, f in zip(array.shape, shape, factors)]
    padded = np.pad(array, widths, mode=mode) if any(w for _, w in widths) else array  # whole blocks: no copy
    return padded.reshape(shape[0], factors[0], shape[1], factors[1], shape[2], factors[2])


def _coarse_seeds(seeds: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """A coarse voxel is a seed where its whole block is one seed index (a block reaching past the end is not):
    across painted slices, each shares its blocks with unknown voxels."""
    grouped = blocks(seeds, factors, "constant")
    low, high = grouped.min(axis=(1, 3, 5)), grouped.max(axis=(1, 3, 5))
    return np.where(low == high, low, 0).astype(seeds.dtype)


def block_means(data: np.ndarray, channel_axis: int | None, factors: Sequence[int]) -> np.ndarray:
    """Block means (float64) of ``data`` (each channel's), summed in float64 as numpy reads the blocks, without a
    float64 copy of ``data`` (at clinical size, hundreds of MB)."""
    if channel_axis is None:
        return blocks(data, factors, "edge").mean(axis=(1, 3, 5), dtype=np.float64)
    channels = np.moveaxis(data, channel_axis, 0)
    coarse = [blocks(channel, factors, "edge").mean(axis=(1, 3, 5), dtype=np.float64) for channel in channels]
    return np.moveaxis(np.stack(coarse), 0, channel_axis)
