"""One Dice: binary masks, per-class overlaps that add up over slices or cases, and the 95 % Hausdorff distance."""

from __future__ import annotations

import numpy as np
import pytest

from SegNetsLib.evaluation.metrics import class_overlaps, dice, hausdorff95


def test_binary_dice_matches_its_definition():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = rng.random((4, 5, 6)) > 0.6, rng.random((4, 5, 6)) > 0.5
        assert dice(a, b) == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()))
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    assert dice(np.ones(3, bool), np.zeros(3, bool)) == 0.0


def test_class_overlaps_count_each_class_and_pool_over_parts():
    prediction = np.array([0, 1, 2, 2, 1])
    truth = np.array([0, 2, 2, 1, 1])
    intersection, sizes = class_overlaps(prediction, truth, 3)
    assert intersection.tolist() == [1, 1, 1]
    assert sizes.tolist() == [2, 4, 4]
    first = class_overlaps(prediction[:2], truth[:2], 3)
    second = class_overlaps(prediction[2:], truth[2:], 3)
    assert (first[0] + second[0]).tolist() == intersection.tolist()
    assert (first[1] + second[1]).tolist() == sizes.tolist()
    with pytest.raises(ValueError):
        class_overlaps(prediction, truth[:3], 3)


def test_hausdorff95_of_a_shifted_cube_is_the_shift_in_mm():
    a = np.zeros((12, 12, 12), bool)
    a[3:8, 3:8, 3:8] = True
    b = np.roll(a, 2, axis=0)
    assert hausdorff95(a, b, (1.5, 1.0, 1.0)) == pytest.approx(3.0)
    assert np.isnan(hausdorff95(a, np.zeros_like(a), (1, 1, 1)))
