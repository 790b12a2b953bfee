"""How far to trust the interpolated outlines against the image's edges, asked of the painting itself.

One interior painted slice is held out, and the random walker (:func:`finetune.refine.walker_alone`) and the
interpolated outlines (:func:`finetune.interpolate.interpolated_distance`) each predict it from its two painted
neighbours. Where the walker predicts it better (the image's edges hold the structure: a bone, an organ against
fat), the outlines weigh less in the refinement's band. Where the outlines predict it better nothing changes: over
twice the gap the user left, the walker fails for want of seeds (a large organ's middle slice), not for want of
edges, so that case says nothing about the gap itself. Arrays are [k, j, i]; spacing is (i, j, k) mm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from SegNetsLib.core.annotation import painting_axis
from SegNetsLib.core.box import Box
from SegNetsLib.evaluation.metrics import dice
from SegNetsLib.finetune.interpolate import INTERPOLATION_WEIGHT, interpolated_distance
from SegNetsLib.finetune.refine import walker_alone

CALIBRATION_GAIN = 0.5
LOWEST_WEIGHT = 0.2
"""The interpolation weight falls by CALIBRATION_GAIN times the held-out slice's Dice lead of the walker over the
outlines, down to LOWEST_WEIGHT. Chosen on the tune set of bench/sparse_sets.py (24 structures, k = 3, saved network
labelmaps of 60 s runs, each structure refined at weights 0-0.8): mean Dice 0.839 at the fixed 0.5; this rule with
gain 0.25 / **0.5** / 1.0: 0.843 / **0.844** / 0.845 (largest loss on one structure 0.010 / **0.017** / 0.022);
gain 1.0 down to 0: 0.846 (0.023); letting the outlines' lead raise the weight too (gain 0.5, up to 0.8): 0.841; the
best weight of each structure, an oracle: 0.858."""


def held_out_slice(indices: Sequence[int]) -> int | None:
    """The interior annotated slice nearest the middle of the outer two (None with fewer than three)."""
    ordered = sorted(set(int(i) for i in indices))
    if len(ordered) < 3:
        return None
    middle = (ordered[0] + ordered[-1]) / 2.0
    return min(ordered[1:-1], key=lambda i: (abs(i - middle), i))


def held_out_scores(
    image: np.ndarray,
    painted: np.ndarray,
    slices: Mapping[int, Sequence[int]],
    box: Box,
    spacing: Sequence[float],
    unlabeled: np.ndarray | None = None,
) -> tuple[float, float] | None:
    """Mean Dice over the painted values of the walker's and of the outlines' prediction of the held-out slice
    (:func:`held_out_slice` of the axis with the most annotated slices) from its painted neighbours, or None
    when there is no such slice or it holds no structure. ``painted``: the painted labels, 0 elsewhere (``unlabeled``,
    bool [k, j, i]: voxels painted with the ignore value, neither seeds nor scored); ``box``:
    where the walker may run. Every voxel of a painted slice is a seed, so nothing beyond the two neighbours
    reaches the held-out slice: the walker and the outlines work only on the two and the slices between them
    (``box`` cut there along the axis; only the walker's normalization of the intensities, over the part it runs
    on, differs from a run over all of ``box``)."""
    axis = painting_axis(slices)
    held = held_out_slice(slices[axis])
    if held is None:
        return None
    truth = np.take(painted, held, axis=axis)
    values = [int(v) for v in np.unique(truth) if v != 0]
    if not values:
        return None
    ordered = sorted(set(int(i) for i in slices[axis]))
    before, after = ordered[ordered.index(held) - 1], ordered[ordered.index(held) + 1]
    between = [slice(None)] * 3  # the two neighbours and what lies between them, along the axis
    between[axis] = slice(before, after + 1)
    between = tuple(between)
    part = painted[between].copy()
    np.moveaxis(part, axis, 0)[held - before] = 0
    start, stop = list(box.start), list(box.stop)
    start[axis], stop[axis] = max(start[axis], before) - before, min(stop[axis], after + 1) - before
    ends = [0, after - before]
    image_part = image[(slice(None), *between)] if image.ndim == 4 else image[between]
    unknown = None if unlabeled is None else unlabeled[between]
    walker = np.take(
        walker_alone(image_part, part, {axis: ends}, Box(*start, *stop), spacing, unlabeled=unknown),
        held - before,
        axis=axis,
    )
    scored = np.ones(truth.shape, dtype=bool) if unlabeled is None else ~np.take(unlabeled, held, axis=axis)
    walker_dice, outline_dice = [], []
    for value in values:
        outline = np.take(interpolated_distance(part, value, axis, ends, spacing), held - before, axis=axis) > 0
        walker_dice.append(dice((walker == value) & scored, truth == value))
        outline_dice.append(dice(outline & scored, truth == value))
    return float(np.mean(walker_dice)), float(np.mean(outline_dice))


def interpolation_weight(
    image: np.ndarray,
    painted: np.ndarray,
    slices: Mapping[int, Sequence[int]],
    box: Box,
    spacing: Sequence[float],
    unlabeled: np.ndarray | None = None,
) -> float:
    """The outlines' weight in the refinement's band: :data:`INTERPOLATION_WEIGHT` less :data:`CALIBRATION_GAIN`
    times the walker's Dice lead on the held-out slice (:func:`held_out_scores`), at least :data:`LOWEST_WEIGHT`;
    :data:`INTERPOLATION_WEIGHT` without a held-out slice or where the walker does not lead."""
    scores = held_out_scores(image, painted, slices, box, spacing, unlabeled)
    if scores is None:
        return INTERPOLATION_WEIGHT
    walker, outline = scores
    return max(LOWEST_WEIGHT, INTERPOLATION_WEIGHT - CALIBRATION_GAIN * max(0.0, walker - outline))


def classical_inputs(
    image: np.ndarray,
    painted: np.ndarray,
    slices: Mapping[int, Sequence[int]],
    box: Box | None,
    spacing: Sequence[float],
    within: Box | None = None,
    unlabeled: np.ndarray | None = None,
) -> tuple[np.ndarray | None, float]:
    """What :func:`finetune.refine.refine_result` weighs beside a network trained on the painted slices alone: the
    random walker's own result inside ``box`` (:func:`finetune.refine.walker_alone`, [k, j, i]; only inside
    ``within`` when given; ``unlabeled``, bool [k, j, i]: voxels painted with the ignore value, no seeds) and the
    outlines' weight (:func:`interpolation_weight`); without a box (nothing
    painted) (None, :data:`INTERPOLATION_WEIGHT`)."""
    if box is None:
        return None, INTERPOLATION_WEIGHT
    walker = walker_alone(image, painted, slices, box, spacing, within, unlabeled)
    return walker, interpolation_weight(image, painted, slices, box, spacing, unlabeled)
