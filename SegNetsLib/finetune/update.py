"""What a correction round changes of the result on screen: the slices its added painting reaches.

A correction changes the result only where the added slice is the nearest painting (:func:`local_update`), so
that it never undoes what the user already accepted elsewhere; the round's random walkers run only in the box that
may change (:func:`changing_box`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from SegNetsLib.core import annotation as ann
from SegNetsLib.core.box import Box
from SegNetsLib.finetune.suggest import distance_to_painted

# A correction that confirms the result: an added slice on which the result the user had already agrees with the
# painting (:func:`slice_agreement` at least CONFIRMED_DICE) changes the result on that slice only. Chosen on
# bench/sparse_sets.py's TUNE set (41 structures, 121 corrections; docs/benchmarks/sparse_rounds.md): no correction
# lowered Dice (7 without it, the largest -0.004), mean gain +0.0390 against +0.0401; with 0.95: 5 and +0.0395.
CONFIRMED_DICE = 0.90


def changing_box(shape: Sequence[int], painted: Mapping[int, Sequence[int]], added: Mapping[int, Sequence[int]]) -> Box:
    """The box of an array of ``shape`` [k, j, i] that :func:`local_update` may change when ``added`` slices join
    those ``painted`` before ({axis: indices}): along the added slices' axis, from the nearest slice painted before
    below them to the nearest above (or the array's ends), both included: painted, every voxel of those two is a
    seed, so what lies between them is settled without the rest."""
    axis = ann.painting_axis(added)
    first, last = min(added[axis]), max(added[axis])
    below = [int(i) for i in painted.get(axis, []) if i < first]
    above = [int(i) for i in painted.get(axis, []) if i > last]
    start, stop = [0, 0, 0], [int(n) for n in shape]
    start[axis] = max(below) if below else 0
    stop[axis] = min(above) + 1 if above else stop[axis]
    return Box(*start, *stop)


def local_update(
    previous: np.ndarray,
    new: np.ndarray,
    painted: Sequence[int],
    added: Sequence[int],
    axis: int,
    painting: np.ndarray | None = None,
    ignore_value: int | None = ann.DEFAULT_IGNORE_VALUE,
) -> np.ndarray:
    """``previous`` [k, j, i] with the slices nearer each ``added`` slice than any slice painted before
    (``painted``) along ``axis`` taken from ``new``: a correction changes the result where the new slice is the
    nearest painting (to the volume's end beyond the outer painted slice) and keeps it where an earlier one is.
    With ``painting`` (the annotation's labels [k, j, i]), an added slice on which ``previous`` already agrees with
    it (:data:`CONFIRMED_DICE`; a slice empty in both counts) changes only itself: the user confirmed the result
    there, and its neighbours count it as painted. So does an added slice painted with nothing of the structure
    between slices painted with some of it on both sides (:func:`gap_slices`): the painting shows a gap but not
    how wide, and its neighbours keep what the user had.

    Chosen on bench/sparse_sets.py's TUNE set (docs/benchmarks/sparse_rounds.md). On its first 24 structures
    (rounds 1 to 4 with the suggested slice, 71 corrections): mean Dice gain +0.0334, 1 loss (-0.001), against
    +0.0358 and 6 losses (at most -0.014) taking every slice between the painted neighbours, and +0.0351 and 14
    losses (at most -0.045) taking the new result whole."""
    out = np.array(previous, copy=True)
    moved_out, moved_new = np.moveaxis(out, axis, 0), np.moveaxis(new, axis, 0)
    positions = np.arange(moved_out.shape[0])
    confirmed = [
        k
        for k in added
        if painting is not None
        and slice_agreement(np.take(previous, k, axis), np.take(painting, k, axis), ignore_value) >= CONFIRMED_DICE
    ]
    if painting is not None:
        confirmed += [
            k for k in gap_slices(painting, [*painted, *added], added, axis, ignore_value) if k not in confirmed
        ]
    distance = distance_to_painted([*painted, *confirmed], len(positions))  # a confirmed slice settles its neighbours
    for k in added:
        nearer = positions == k if k in confirmed else np.abs(positions - k) < distance
        moved_out[nearer] = moved_new[nearer]
    return out


def gap_slices(
    painting: np.ndarray, painted: Sequence[int], added: Sequence[int], axis: int, ignore_value: int | None
) -> list[int]:
    """The ``added`` slices of ``painting`` [k, j, i] (labels; ``ignore_value`` unpainted) along ``axis`` painted with
    no label at all, with a ``painted`` slice holding the same label on each side of them: one label below and
    another above is where each structure ends, not a gap in one."""
    held = {k: _labels_held(np.take(painting, k, axis), ignore_value) for k in {*painted, *added}}
    return [
        k
        for k in added
        if not held[k]
        and set().union(*(held[i] for i in held if i < k)) & set().union(*(held[i] for i in held if i > k))
    ]


def _labels_held(painting: np.ndarray, ignore_value: int | None) -> set[int]:
    """The labels of a painted slice [j, i] other than background (0) and ``ignore_value``."""
    return {int(v) for v in np.unique(painting) if v != 0 and v != ignore_value}


def slice_agreement(result: np.ndarray, painting: np.ndarray, ignore_value: int | None) -> float:
    """The lowest Dice, over the labels either gives, of a result's labels against those painted on the same slice
    [j, i], over the painted voxels (those not ``ignore_value``): a label the result missed scores 0 however large the
    others; 1.0 when both are empty there."""
    known = np.ones(painting.shape, dtype=bool) if ignore_value is None else painting != ignore_value
    ours, theirs = np.asarray(result)[known], np.asarray(painting)[known]
    values = set(np.unique(ours[ours != 0]).tolist()) | set(np.unique(theirs[theirs != 0]).tolist())
    return min(
        (
            2.0
            * np.count_nonzero((ours == v) & (theirs == v))
            / (np.count_nonzero(ours == v) + np.count_nonzero(theirs == v))
            for v in values
        ),
        default=1.0,
    )
