"""Strokes of a ball-shaped brush: paint that 3D Slicer's Segment Editor lays, with "Sphere brush" on, on the slices
either side of the slice it is painted on.

Arrays are [k, j, i]; axes are array axes (0 = k, 1 = j, 2 = i).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

ALIKE = 0.9
"""A ball's two caps, d slices before and d after the slice painted on, overlap at least this much (intersection over
union): a ball centred on that slice lays the same paint on both sides of it."""


def pieces_of(painted: np.ndarray) -> tuple[np.ndarray, int]:
    """The pieces of ``painted`` (bool [k, j, i]) that touch at no corner: (their numbers 1..n [k, j, i], 0 elsewhere;
    n), as :func:`scipy.ndimage.label` gives them."""
    return ndimage.label(painted, structure=np.ones((3, 3, 3), dtype=bool))


def sphere_strokes(
    painted: np.ndarray, pieces: tuple[np.ndarray, int] | None = None
) -> tuple[dict[int, list[int]], np.ndarray]:
    """({axis: the slices painted on}, bool [k, j, i]: the paint off those slices) for the pieces of ``painted`` (bool
    [k, j, i]; pieces touch at no corner) that a ball-shaped brush laid on one slice: more than one slice thick along
    every axis and thinnest along it; along it, the paint shrinks strictly away from one slice, as far on both sides
    (a structure the volume's end cuts off shrinks away from it on one side alone), each slice's paint within that of
    the slice nearer it (of any label: a segment painted later overwrites another's ball more on the slice painted on
    than on its caps), the two sides alike (:data:`ALIKE`), the outermost caps off the edge of the paint on that slice
    (a ball's caps shrink across the slice; a structure painted whole on slices across its widest part barely does). A ball is centred on the slice the painter sees, so the
    slices beside it hold only its caps: they were not painted as slices. ({0: [], 1: [], 2: []}, all False) when no
    piece is such a stroke; a stroke whose ball the volume's end cuts short, or whose ball overlaps another's, is none.
    ``pieces``: :func:`pieces_of` ``painted`` where the caller has them.
    """
    centres: dict[int, list[int]] = {0: [], 1: [], 2: []}
    caps = np.zeros(painted.shape, dtype=bool)
    pieces, _ = pieces if pieces is not None else pieces_of(painted)
    for number, box in enumerate(ndimage.find_objects(pieces), start=1):
        piece = pieces[box] == number
        spans = piece.shape  # a ball is thick along every axis, and no thicker across its slice than along it
        for axis in (a for a in range(3) if min(spans) > 1 and spans[a] <= min(spans)):
            centre = _centre(np.moveaxis(piece, axis, 0))
            if centre is not None:
                centres[axis].append(box[axis].start + centre)
                off = piece.copy()
                off[(slice(None),) * axis + (centre,)] = False
                caps[box] |= off
                break
    return centres, caps


def _centre(moved: np.ndarray) -> int | None:
    """The slice of ``moved`` (one piece's paint, bool, the axis first, every slice holding some) a ball-shaped brush
    was painted on, or None when its paint is no such stroke."""
    counts = moved.sum(axis=(1, 2))
    centre = int(np.argmax(counts))
    below, above = centre, len(counts) - 1 - centre  # slices of paint on either side
    if not below or below != above:
        return None
    for side in (-1, 1):
        for d in range(1, (below if side < 0 else above) + 1):
            cap, inner = moved[centre + side * d], moved[centre + side * (d - 1)]
            if counts[centre + side * d] >= counts[centre + side * (d - 1)] or np.any(cap & ~inner):
                return None  # not shrinking, or not within the slice nearer the centre
    for d in range(1, below + 1):
        lower, upper = moved[centre - d], moved[centre + d]
        if (lower & upper).sum() < ALIKE * (lower | upper).sum():
            return None
    inner = ndimage.binary_erosion(moved[centre])  # the ball's last caps lie inside the paint of its slice
    return centre if not np.any((moved[0] | moved[-1]) & ~inner) else None
