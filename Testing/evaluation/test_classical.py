"""The classical baselines (Fill between slices, random walker) and the metrics the demo and benchmarks use."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from SegNetsLib.core.annotation import bin_centre_slices
from SegNetsLib.evaluation.classical import FillBetweenSlices, random_walker
from SegNetsLib.evaluation.metrics import dice, hausdorff95


def _ball(shape=(24, 32, 32), centre=(12, 16, 16), radius=8.0) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2


def test_dice_and_hausdorff_on_known_masks():
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros((4, 4, 4), bool)
    a[0, 0, :2] = True
    b[0, 0, 1:3] = True
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0 and dice(np.zeros_like(a), np.zeros_like(a)) == 1.0
    shifted = np.roll(_ball(), 2, axis=2)
    distance = hausdorff95(_ball(), shifted, (1.0, 1.0, 2.0))  # shifted 2 voxels of 2 mm along i
    assert 2.0 < distance <= 4.0 + 1e-6  # the 95th percentile is at most the 4 mm shift
    assert 1.0 < hausdorff95(_ball(), shifted, (1.0, 1.0, 1.0)) <= 2.0 + 1e-6  # spacing is honoured
    assert np.isnan(hausdorff95(a, np.zeros_like(a), (1, 1, 1)))


def test_bin_centres_lie_inside_the_structure_extent():
    ball = _ball()
    slices = bin_centre_slices(ball, 3)
    present = np.flatnonzero(ball.any(axis=(1, 2)))
    assert slices == sorted(slices) and present[0] < slices[0] and slices[-1] < present[-1]
    assert all(ball[s].any() for s in slices)


def test_random_walker_recovers_a_bright_ball_from_three_slices():
    truth = _ball()
    image = np.where(truth, 100.0, 0.0) + np.random.default_rng(0).normal(0, 5, truth.shape)
    slices = bin_centre_slices(truth, 3)
    annotation = np.zeros(truth.shape, np.uint8)
    annotation[slices] = truth[slices]
    result = random_walker(image, annotation, {0: slices})
    assert dice(result == 1, truth) > 0.9


@pytest.mark.skipif(
    importlib.util.find_spec("itk") is None, reason="itk-morphologicalcontourinterpolation not installed"
)
def test_fill_between_slices_interpolates_between_annotated_slices():
    truth = _ball()
    slices = bin_centre_slices(truth, 3)
    annotation = np.zeros(truth.shape, np.uint8)
    annotation[slices] = truth[slices]
    result = FillBetweenSlices(annotation).result()
    assert result is not None
    between = slice(slices[0], slices[-1] + 1)
    assert np.array_equal(result[slices], annotation[slices])
    assert dice(result[between] > 0, truth[between]) > 0.9
    assert not result[: slices[0]].any() and not result[slices[-1] + 1 :].any()  # never beyond the end slices
