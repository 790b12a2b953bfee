"""The interpolation weight asked of a held-out painted slice (SegNetsLib.finetune.calibrate)."""

from __future__ import annotations

import numpy as np
import pytest

from SegNetsLib.core.box import Box
from SegNetsLib.finetune.calibrate import (
    LOWEST_WEIGHT,
    classical_inputs,
    held_out_scores,
    held_out_slice,
    interpolation_weight,
)
from SegNetsLib.finetune.interpolate import INTERPOLATION_WEIGHT

SHAPE = (21, 32, 32)
WHOLE = Box(0, 0, 0, *SHAPE)


@pytest.mark.parametrize(
    ("indices", "held"),
    [([5], None), ([3, 9], None), ([2, 10, 20], 10), ([16, 0, 8, 12, 4], 8), ([0, 5, 6, 20], 6)],
)
def test_the_held_out_slice_is_the_interior_one_nearest_the_middle(indices, held):
    assert held_out_slice(indices) == held


def _painted(truth: np.ndarray, indices: list[int]) -> np.ndarray:
    painted = np.zeros(truth.shape, np.uint8)
    painted[indices] = 3 * truth[indices]
    return painted


def test_where_the_edges_hold_the_structure_the_outlines_weigh_less():
    """A bright ball painted on slices 4, 10 and 16: from 4 and 16 the outlines give slice 10 their small
    circles (radius 5.3 of 8), while the walker follows the ball's edge there."""
    z, y, x = np.indices(SHAPE)
    truth = ((z - 10) ** 2 + (y - 16) ** 2 + (x - 16) ** 2) <= 64
    image = (100.0 * truth + np.random.default_rng(0).normal(0, 5, SHAPE)).astype(np.float32)
    painted = _painted(truth, [4, 10, 16])
    walker, outline = held_out_scores(image, painted, {0: [4, 10, 16]}, WHOLE, (1, 1, 1))
    assert walker > 0.95 and outline < 0.75
    weight = interpolation_weight(image, painted, {0: [4, 10, 16]}, WHOLE, (1, 1, 1))
    assert weight == pytest.approx(max(LOWEST_WEIGHT, INTERPOLATION_WEIGHT - 0.5 * (walker - outline)))
    assert LOWEST_WEIGHT <= weight < INTERPOLATION_WEIGHT - 0.1
    assert painted[10].sum() == 3 * truth[10].sum()  # the painting is not modified


def test_where_the_image_shows_nothing_the_weight_stays():
    """A tube in noise that shows nothing of it: the outlines predict the held-out slice exactly, the walker
    cannot; that never raises the outlines' weight."""
    z, y, x = np.indices(SHAPE)
    truth = ((y - 16) ** 2 + (x - 16) ** 2) <= 25
    image = np.random.default_rng(1).normal(0, 1, SHAPE).astype(np.float32)
    painted = _painted(truth, [2, 10, 18])
    walker, outline = held_out_scores(image, painted, {0: [2, 10, 18]}, WHOLE, (1, 1, 1))
    assert outline == pytest.approx(1.0) and walker < outline
    assert interpolation_weight(image, painted, {0: [2, 10, 18]}, WHOLE, (1, 1, 1)) == INTERPOLATION_WEIGHT


def test_without_a_held_out_slice_holding_the_structure_the_weight_is_the_default():
    z, y, x = np.indices(SHAPE)
    truth = ((z - 10) ** 2 + (y - 16) ** 2 + (x - 16) ** 2) <= 64
    image = (100.0 * truth).astype(np.float32)
    two = _painted(truth, [6, 14])
    assert held_out_scores(image, two, {0: [6, 14]}, WHOLE, (1, 1, 1)) is None
    assert interpolation_weight(image, two, {0: [6, 14]}, WHOLE, (1, 1, 1)) == INTERPOLATION_WEIGHT
    empty_middle = _painted(truth, [6, 19, 20])  # slices 19 and 20 hold background only
    assert held_out_scores(image, empty_middle, {0: [6, 19, 20]}, WHOLE, (1, 1, 1)) is None


def test_the_classical_inputs_are_the_walkers_result_and_the_calibrated_weight():
    """Beside a network trained on painted slices: the walker's own result and the held-out weight; with slices
    along several axes (no box) neither."""
    z, y, x = np.indices(SHAPE)
    truth = ((z - 10) ** 2 + (y - 16) ** 2 + (x - 16) ** 2) <= 64
    image = (100.0 * truth + np.random.default_rng(0).normal(0, 5, SHAPE)).astype(np.float32)
    painted = _painted(truth, [4, 10, 16])
    walker, weight = classical_inputs(image, painted, {0: [4, 10, 16]}, WHOLE, (1, 1, 1))
    assert walker.shape == SHAPE and set(np.unique(walker)) == {0, 3}
    assert ((walker == 3) == truth).mean() > 0.98
    assert weight == interpolation_weight(image, painted, {0: [4, 10, 16]}, WHOLE, (1, 1, 1)) < INTERPOLATION_WEIGHT
    assert classical_inputs(image, painted, {0: [4, 10, 16]}, None, (1, 1, 1)) == (None, INTERPOLATION_WEIGHT)
