"""Shape-based interpolation between painted slices: each structure's signed distance, interpolated linearly
between consecutive annotated slices along their axis (Raya and Udupa's shape-based interpolation, 1990).

It is what a painted outline says about the slices between two painted ones, whatever the image: where the
image's edges are weak (a vessel or muscle beside tissue of the same intensity) it holds where a walker leaks.
Arrays are [k, j, i]; spacing is (i, j, k) mm; distances are in mm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from SegNetsLib.core.annotation import painting_axis
from SegNetsLib.core.box import Box, box_union

INTERPOLATION_WEIGHT = 0.5
"""Weight of the interpolated outlines against the walker's result wherever they reach."""
INTERPOLATION_MM = 2.0
"""Softness of the interpolated outline: a voxel d mm inside it scores 1 / (1 + exp(-d / INTERPOLATION_MM)).
Both chosen on the tune set of bench/sparse_sets.py (24 structures, saved network labelmaps of 60 s runs; mean
Dice k = 2 / k = 3; the better of Fill between slices and the random walker per structure: 0.707 / 0.801),
without the taper: the confined walker alone 0.718 / 0.793; weight 0.3: 0.740 / 0.813, 0.4: 0.749 / 0.820,
0.45: 0.753 / 0.827, **0.5: 0.755 / 0.829**, 0.55: 0.753 / 0.829 (softness 2 mm); softness 1 / 3 mm at 0.5:
0.753 / 0.831, 0.751 / 0.824."""

TAPER_GAPS = 1.0
"""Beyond the outer painted slices the outline tapers to nothing over this many times the neighbouring gap.
Chosen on the tune set of bench/sparse_sets.py (24 structures, saved network labelmaps; mean Dice k = 2 / 3): no
taper 0.755 / 0.830, 0.5 gap 0.751 / 0.826, **1 gap 0.766 / 0.835**, 1.5 gaps 0.760 / 0.833."""


def signed_distance(mask: np.ndarray, sampling: Sequence[float]) -> np.ndarray:
    """In-plane signed distance (mm) of a 2D ``mask`` [j, i]: positive inside, negative outside, 0 between the
    boundary voxels. An empty mask is -inf everywhere."""
    if not mask.any():
        return np.full(mask.shape, -np.inf, dtype=np.float32)
    if mask.all():
        return np.full(mask.shape, np.inf, dtype=np.float32)
    inside = ndimage.distance_transform_edt(mask, sampling=sampling)
    outside = ndimage.distance_transform_edt(~mask, sampling=sampling)
    return (inside - outside).astype(np.float32)


def interpolated_distance(
    painted: np.ndarray, value: int, axis: int, indices: Sequence[int], spacing: Sequence[float]
) -> np.ndarray:
    """Signed distance (mm, float32 [k, j, i]) of label ``value`` of ``painted`` interpolated between the
    annotated slices ``indices`` along ``axis``. Between two painted slices, each piece (2D connected component)
    is paired with the pieces of the other slice it overlaps or, failing that, the nearest one within the sum of
    their radii; a pair's outlines slide from one centroid to the other while they blend, so an oblique vessel
    keeps its calibre, and an unpaired piece shrinks to nothing at the other slice. Beyond the first and last
    painted slice the outline there tapers to nothing over as many slices as the gap to its neighbour
    (:data:`TAPER_GAPS`). -inf where nothing reaches (beyond the taper, and between two painted slices that both
    lack the structure)."""
    spacing_kji = tuple(float(s) for s in spacing)[::-1]
    plane = tuple(s for a, s in enumerate(spacing_kji) if a != axis)
    moved = np.moveaxis(painted, axis, 0)
    ordered = sorted(set(int(i) for i in indices))
    out = np.full(moved.shape, -np.inf, dtype=np.float32)
    for a, b in zip(ordered, ordered[1:]):
        steps = [(z - a) / (b - a) for z in range(a, b + 1)]
        for z, distance in zip(range(a, b + 1), _between(moved[a] == value, moved[b] == value, plane, steps)):
            out[z] = distance
    if len(ordered) == 1:
        out[ordered[0]] = signed_distance(moved[ordered[0]] == value, plane)
    else:
        _taper(out, ordered[0], ordered[1] - ordered[0], -1)
        _taper(out, ordered[-1], ordered[-1] - ordered[-2], 1)
    return np.moveaxis(out, 0, axis)


def _taper(distances: np.ndarray, end: int, gap: int, step: int) -> None:
    """In place, along axis 0: beyond the painted slice ``end`` (``step`` -1: before it, 1: after it), its
    outline shrinking linearly to nothing over ``TAPER_GAPS`` x ``gap`` slices."""
    base = distances[end]
    if not np.isfinite(base).any() or base.max() <= 0:
        return
    reach = max(1, int(round(TAPER_GAPS * gap)))
    for offset in range(1, reach + 1):
        z = end + step * offset
        if not 0 <= z < distances.shape[0]:
            return
        distances[z] = _shrunk(base, offset / (reach + 1))


def _shrunk(distance: np.ndarray, fraction: float) -> np.ndarray:
    """``distance`` less ``fraction`` of its deepest point (a little more at 1: the outline is gone there)."""
    return distance - fraction * (float(distance.max()) + 1e-3)


def _between(first: np.ndarray, second: np.ndarray, plane: Sequence[float], steps: Sequence[float]) -> list:
    """Signed distances [j, i] at each fraction ``steps`` (0 = ``first``, 1 = ``second``, 2D masks)."""
    pieces_a, pieces_b = _pieces(first, plane), _pieces(second, plane)
    out = [np.full(first.shape, -np.inf, dtype=np.float32) for _ in steps]
    for piece_a, piece_b in _pairs(pieces_a, pieces_b):
        for index, t in enumerate(steps):
            np.maximum(out[index], _blend(piece_a, piece_b, t), out=out[index])
    return out


class _Piece:
    """One 2D connected component: its mask, signed distance (mm), centroid (voxels and mm) and the radius (mm)
    of a disc of its area."""

    def __init__(self, mask: np.ndarray, plane: Sequence[float]) -> None:
        self.mask = mask
        self.distance = signed_distance(mask, plane)
        self.centroid = np.array(ndimage.center_of_mass(mask))
        self.centre_mm = self.centroid * np.asarray(plane)
        self.radius = float(np.sqrt(mask.sum() * plane[0] * plane[1] / np.pi))


def _pieces(mask: np.ndarray, plane: Sequence[float]) -> list[_Piece]:
    labelled, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    return [_Piece(labelled == index, plane) for index in range(1, count + 1)]


def _pairs(pieces_a: list[_Piece], pieces_b: list[_Piece]) -> list[tuple[_Piece | None, _Piece | None]]:
    """Overlapping pieces pair up; a piece overlapping none pairs with the nearest of the other slice when their
    centroids lie closer than the sum of their radii, else with nothing."""
    pairs = [(a, b) for a in pieces_a for b in pieces_b if (a.mask & b.mask).any()]
    for mine, theirs, first in ((pieces_a, pieces_b, True), (pieces_b, pieces_a, False)):
        for piece in mine:
            if any(piece is (p if first else q) for p, q in pairs):
                continue
            near = min(theirs, key=lambda other: _gap_mm(piece, other), default=None)
            if near is not None and _gap_mm(piece, near) < piece.radius + near.radius:
                pairs.append((piece, near) if first else (near, piece))
            else:
                pairs.append((piece, None) if first else (None, piece))
    return pairs


def _gap_mm(a: _Piece, b: _Piece) -> float:
    return float(np.hypot(*(a.centre_mm - b.centre_mm)))


def _blend(a: _Piece | None, b: _Piece | None, t: float) -> np.ndarray:
    """The pair's signed distance at fraction ``t`` from ``a`` to ``b``: both slid to the centroid between
    theirs and blended (a missing partner: the piece's own distance less its depth, so it ends there)."""
    if b is None:
        return _shrunk(a.distance, t)
    if a is None:
        return _shrunk(b.distance, 1.0 - t)
    move = b.centroid - a.centroid
    first = _slid(a.distance, t * move) if t > 0 else a.distance
    second = _slid(b.distance, -(1.0 - t) * move) if t < 1 else b.distance
    return (1.0 - t) * first + t * second


def _slid(distance: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``distance`` [j, i] moved by ``shift`` voxels (linear interpolation, edges extended)."""
    if not np.any(np.abs(shift) > 1e-3):
        return distance
    return ndimage.shift(distance, shift, order=1, mode="nearest").astype(np.float32)


def interpolated_distances(
    painted: np.ndarray,
    slices: Mapping[int, Sequence[int]],
    spacing: Sequence[float],
    unlabeled: np.ndarray | None = None,
) -> dict[int, np.ndarray]:
    """Label value -> :func:`interpolated_distance` between the annotated slices of the axis that has the most.
    ``unlabeled``: bool [k, j, i], voxels painted with the ignore value; a label whose painting touches one has no
    outline known there (a stroke, the rest left unlabeled) and is left out."""
    axis = painting_axis(slices)
    values = [int(v) for v in np.unique(painted) if v != 0]
    if not slices[axis]:
        return {}
    if unlabeled is not None and unlabeled.any():
        values = [v for v in values if not (ndimage.binary_dilation(painted == v) & unlabeled).any()]
    return {value: interpolated_distance(painted, value, axis, slices[axis], spacing) for value in values}


def with_interpolation(
    seeds: np.ndarray,
    box: tuple[slice, ...],
    scores: np.ndarray,
    distances: Mapping[int, np.ndarray],
    values: Sequence[int],
    fixed: np.ndarray,
    weight: float = INTERPOLATION_WEIGHT,
    softness_mm: float = INTERPOLATION_MM,
) -> np.ndarray:
    """Seed indices [k, j, i] (1 = background, 2.. = ``values``): the walker's ``scores`` [1 + len(values), box]
    inside ``box`` and its ``seeds`` elsewhere, blended wherever the outlines reach with each value's soft
    interpolated outline (``distances``: value -> signed distance in mm, -inf where it does not reach), ``weight``
    against the walker's 1 - ``weight``. Voxels where ``fixed`` is True keep their seed."""
    box = tuple(slice(b.start, min(b.stop, n)) for b, n in zip(box, seeds.shape))
    region = box_union(_bounding_box(seeds != 1), Box.from_slices(box))  # outside: background seeds only
    full = np.zeros((1 + len(values), *region.shape), dtype=np.float32)
    local = seeds[region.slices]
    for index in range(1, 2 + len(values)):
        full[index - 1][local == index] = 1.0
    inner = tuple(slice(b.start - r.start, b.stop - r.start) for b, r in zip(box, region.slices))
    full[(slice(None), *inner)] = scores
    interpolated = np.zeros_like(full)
    in_range = np.zeros(region.shape, dtype=bool)
    for position, value in enumerate(values, start=1):
        if value in distances:
            part = distances[value][region.slices]
            in_range |= np.isfinite(part)
            interpolated[position] = 1.0 / (1.0 + np.exp(-np.clip(part, -50.0, 50.0) / softness_mm))
    interpolated[0] = np.clip(1.0 - interpolated[1:].sum(axis=0), 0.0, 1.0)
    full[:, in_range] = (1.0 - weight) * full[:, in_range] + weight * interpolated[:, in_range]
    out = seeds.copy()
    out[region.slices] = np.argmax(full, axis=0) + 1
    out[fixed] = seeds[fixed]
    return out


def _bounding_box(mask: np.ndarray) -> Box:
    """The tight box around ``mask``'s True voxels (a one-voxel box at the origin for an empty mask)."""
    if not mask.any():
        return Box(0, 0, 0, 1, 1, 1)
    low = [int(c.min()) for c in np.nonzero(mask)]
    high = [int(c.max()) + 1 for c in np.nonzero(mask)]
    return Box(*low, *high)


def interpolate_slices(
    painted: np.ndarray, slices: Mapping[int, Sequence[int]], spacing: Sequence[float]
) -> np.ndarray:
    """Labelmap (``painted``'s dtype, [k, j, i]) of :func:`interpolated_distances`: each voxel takes the label whose
    interpolated distance is largest and positive; 0 wherever no label reaches."""
    out = np.zeros(painted.shape, dtype=painted.dtype)
    best = np.zeros(painted.shape, dtype=np.float32)
    for value, distance in interpolated_distances(painted, slices, spacing).items():
        wins = distance > best
        out[wins] = value
        best[wins] = distance[wins]
    return out
