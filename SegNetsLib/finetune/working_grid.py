"""The grid the random walkers of a fine-tuning run work on: a large, finely sampled volume coarsened in-plane.

The walker alone, its held-out calibration and the refinement band cost about 3 s per million voxels of the
painted structure's known box at full resolution on 2 CPU cores (distance transforms, the noise estimate, the
solve's probabilities interpolated back), whatever the solver's own grid. On a clinical CT (0.75 mm in-plane) a
liver's box holds 14 million voxels: those steps took 39 s, and a 60 s run left its network one iteration.
Where the known box holds more than :data:`MAX_WORKING_VOXELS`, they run on a grid coarsened by integer factors
along the two axes across the painted slices, as near as those allow to
:data:`SegNetsLib.evaluation.walker_grid.MAX_COARSE_MM` (the voxel size the walkers' constants were chosen at; below
it, the solves themselves grow long again), or coarser still where that grid would hold more than
:data:`MAX_WALKED_VOXELS` of the box. Their labelmap comes back to the full grid by linear interpolation of each
label's share. The painted slices' axis is not coarsened, so every painted slice is a slice of the working grid.
A network trained on painted slices alone results only inside their known box, and the walkers then read only that
box and the refinement's reach around it: the working grid covers only that region (:meth:`WorkingGrid.within`), the
rest of a large volume is never averaged. Arrays are [k, j, i] (an image may be [c, k, j, i]); spacing is (i, j, k) mm.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from SegNetsLib.core.annotation import painting_axis
from SegNetsLib.core.box import Box, mask_box
from SegNetsLib.evaluation.walker_grid import MAX_COARSE_MM, block_means, blocks

MAX_WORKING_VOXELS = 2_000_000
"""Known-box voxels above which the walkers work on a coarser grid. Chosen from times on 2 CPU cores, not from
Dice (docs/benchmarks/sparse.md): every structure of the benchmark's sets and the BraTS folds (at most 1.8 million)
stays at full resolution."""

MAX_WALKED_VOXELS = 1_000_000
"""Known-box voxels on the working grid above which it is coarsened beyond MAX_COARSE_MM in-plane. Chosen on the
TUNE set's CT colon at 0.75 mm (known box 40 million voxels): at 3 mm 2.5 million, the walkers 54 s and the run
72 s (Dice 0.43); at 5.25 mm 0.8 million, the run 58 s (Dice 0.58). No other structure measured at clinical
sampling comes near (the liver: 0.85 million at 3 mm)."""


class Walked(NamedTuple):
    """What the walkers see: image [k, j, i] or [c, k, j, i], labels and weight [k, j, i], spacing (i, j, k) mm."""

    image: np.ndarray
    labels: np.ndarray
    weight: np.ndarray
    spacing: tuple[float, float, float]

    @property
    def painted(self) -> np.ndarray:
        """The painted labels, 0 elsewhere."""
        return np.where(self.weight > 0, self.labels, 0)


@dataclass(frozen=True)
class WorkingGrid:
    """The full grid's ``shape`` [k, j, i] coarsened by integer ``factors`` (k, j, i); all ones: the full grid itself,
    every method then returning its input. ``region``: the part of the full grid it covers (its start, and its stop
    unless at the grid's end, a multiple of the factors: the blocks are those of the whole grid), None: all of it."""

    shape: tuple[int, int, int]
    factors: tuple[int, int, int] = (1, 1, 1)
    region: Box | None = None

    @property
    def coarse(self) -> bool:
        return any(f > 1 for f in self.factors)

    def spacing(self, spacing: Sequence[float]) -> tuple[float, float, float]:
        """Voxel size (i, j, k) mm on this grid of a full grid of ``spacing`` (i, j, k) mm."""
        return tuple(float(s) * f for s, f in zip(spacing, self.factors[::-1]))

    def within(self, box: Box, reach_mm: float, spacing: Sequence[float]) -> WorkingGrid:
        """This grid cut to ``box`` (full grid) widened on every side by more than ``reach_mm`` (``spacing``: (i, j, k)
        mm of the full grid) and three of its voxels, outward to whole blocks: where every walker reads when all it
        labels lies inside ``box`` and nothing reaches farther than ``reach_mm`` from it."""
        if not self.coarse:
            return self
        mm = self.spacing(spacing)[::-1]
        start, stop = [], []
        for low, high, n, f, s in zip(box.start, box.stop, self.shape, self.factors, mm):
            widen = (math.ceil(reach_mm / s) + 3) * f
            start.append(max(0, (low - widen) // f * f))
            stop.append(min(n, -(-(high + widen) // f) * f))
        return dataclasses.replace(self, region=Box(*start, *stop))

    def slices(self, slices: Mapping[int, Sequence[int]]) -> dict[int, list[int]]:
        """Painted ``slices`` {axis: indices of the full grid} as slices of this grid (those it covers)."""
        start, stop, factors = self._origin(), self.region.stop if self.region else self.shape, self.factors
        return {
            axis: [(int(i) - start[axis]) // factors[axis] for i in indices if start[axis] <= int(i) < stop[axis]]
            for axis, indices in slices.items()
        }

    def _origin(self) -> tuple[int, int, int]:
        return self.region.start if self.region is not None else (0, 0, 0)

    def _cut(self, array: np.ndarray) -> np.ndarray:
        """``array`` [k, j, i] or [c, k, j, i] of the full grid cut to the region."""
        return array if self.region is None else array[(..., *self.region.slices)]

    def walked(self, image: np.ndarray, labels: np.ndarray, weight: np.ndarray, spacing: Sequence[float]) -> Walked:
        """The full grid's ``image``, ``labels``, ``weight`` and ``spacing`` on this grid."""
        return Walked(self.image(image), self.labels(labels), self.weight(weight), self.spacing(spacing))

    def image(self, image: np.ndarray) -> np.ndarray:
        """Block means (float32) of ``image`` [k, j, i] or [c, k, j, i]."""
        if not self.coarse:
            return image
        return block_means(self._cut(image), 0 if image.ndim == 4 else None, self.factors).astype(np.float32)

    def labels(self, labels: np.ndarray) -> np.ndarray:
        """Each block's most frequent label (the lowest of equals), ``labels``' dtype."""
        if not self.coarse:
            return labels
        labels = self._cut(labels)
        values = np.unique(labels)
        shares = [blocks(labels == value, self.factors, "edge").mean(axis=(1, 3, 5)) for value in values]
        return values[np.argmax(np.stack(shares), axis=0)].astype(labels.dtype)

    def weight(self, weight: np.ndarray) -> np.ndarray:
        """Each block's smallest weight: a coarse voxel is annotated only where its whole block is."""
        if not self.coarse:
            return weight
        return blocks(self._cut(weight), self.factors, "edge").min(axis=(1, 3, 5))

    def box(self, box: Box | None) -> Box | None:
        """The voxels of this grid ``box`` (full grid) touches (within its region)."""
        if box is None or not self.coarse:
            return box
        if self.region is not None:
            box = box.intersection(self.region)
        origin = self._origin()
        start = [(b - o) // f for b, o, f in zip(box.start, origin, self.factors)]
        stop = [-(-(b - o) // f) for b, o, f in zip(box.stop, origin, self.factors)]
        return Box(*start, *stop)

    def full(self, labels: np.ndarray) -> np.ndarray:
        """``labels`` of this grid on the full grid: each label's share of a block interpolated linearly between
        block centres, the largest share winning (background first among equals)."""
        if not self.coarse:
            return labels
        out = np.zeros(self.shape, dtype=labels.dtype)
        around = mask_box(labels != 0)
        if around is None:
            return out
        covered = out[self.region.slices] if self.region is not None else out  # a view: filled in place
        low = [max(0, a - 1) for a in around.start]
        high = [min(n, b + 1) for b, n in zip(around.stop, labels.shape)]
        part = labels[tuple(slice(a, b) for a, b in zip(low, high))]
        values = [0, *(int(v) for v in np.unique(part) if v != 0)]
        region = tuple(slice(a * f, min(n, b * f)) for a, b, f, n in zip(low, high, self.factors, covered.shape))
        inside = tuple(slice(0, r.stop - r.start) for r in region)
        shares = [
            ndimage.zoom((part == v).astype(np.float32), self.factors, order=1, mode="nearest", grid_mode=True)[inside]
            for v in values[1:]
        ]
        covered[region] = np.asarray(values, dtype=labels.dtype)[_largest_share(shares)]
        return out


def _largest_share(shares: Sequence[np.ndarray]) -> np.ndarray:
    """Per voxel, the index of the largest of (background, *``shares``) (float32 arrays of one shape; background is
    one minus their sum: linear interpolation keeps the shares summing to one), the first of equals; as ``np.argmax``
    over them stacked, without a stack of them or an int64 result (at clinical size each copy of the region is
    hundreds of MB)."""
    best = shares[0].copy()
    for share in shares[1:]:
        best += share  # in the order of np.sum over the stacked shares' first axis: the same float32 sums
    np.subtract(1.0, best, out=best)  # the background's share
    winner = np.zeros(best.shape, dtype=np.min_scalar_type(len(shares)))
    for index, share in enumerate(shares, start=1):
        larger = share > best
        winner[larger] = index
        np.maximum(best, share, out=best)
    return winner


def working_grid(
    shape: Sequence[int], spacing: Sequence[float], slices: Mapping[int, Sequence[int]], box: Box | None
) -> WorkingGrid:
    """The grid the walkers work on for a full grid of ``shape`` [k, j, i] and ``spacing`` (i, j, k) mm whose painted
    structure's known ``box`` is given (None, or slices along several axes: the full grid): the full grid while the box
    holds at most :data:`MAX_WORKING_VOXELS`, else coarsened along the two axes across the painted ``slices``
    ({axis: indices}) by the largest integer factors keeping each within MAX_COARSE_MM, or coarser still where the
    box would hold more than :data:`MAX_WALKED_VOXELS` voxels of that grid."""
    full = WorkingGrid(tuple(int(n) for n in shape))
    if box is None or box.size <= MAX_WORKING_VOXELS or sum(1 for indices in slices.values() if indices) > 1:
        return full  # (slices along several axes: coarsening across one axis would merge the others' slices)
    axis = painting_axis(slices)
    spacing_kji = tuple(float(s) for s in spacing)[::-1]
    across = [a for a in range(3) if a != axis]
    coarse_mm = MAX_COARSE_MM
    while True:  # coarser in steps of the finest axis' voxel until the box fits or the factors reach its size
        factors = tuple(1 if a == axis else max(1, math.floor(coarse_mm / spacing_kji[a] + 1e-9)) for a in range(3))
        fits = box.size <= MAX_WALKED_VOXELS * math.prod(factors)
        if fits or all(factors[a] >= box.shape[a] for a in across):
            return WorkingGrid(full.shape, factors)
        coarse_mm += min(spacing_kji[a] for a in across)
