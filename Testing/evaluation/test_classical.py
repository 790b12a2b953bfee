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


def test_a_part_scaled_by_the_noise_of_the_whole_weighs_its_edges_as_the_whole_does():
    """scikit-image weighs an edge exp(-beta / (10 x the data's std) x difference^2): with the whole's noise, the
    part's beta makes that exp(-NOISE_BETA (difference / noise)^2), whatever the part's own spread."""
    from SegNetsLib.evaluation.classical import NOISE_BETA, edge_noise, walker_input

    whole = (100.0 + 1000.0 * _ball() + np.random.default_rng(0).normal(0, 10, _ball().shape)).astype(np.uint16)
    noise = edge_noise(whole)
    assert noise == pytest.approx(edge_noise(whole.astype(np.float64)))  # unsigned differences do not wrap
    assert 5.0 < noise < 20.0
    part = whole[:3]  # outside the ball: noise only, a far smaller spread than the whole's
    data, beta = walker_input(part, "noise", noise=noise)
    assert np.allclose(np.diff(data, axis=0), np.diff(part.astype(np.float64), axis=0) / noise)
    assert beta / (10.0 * data.std()) == pytest.approx(NOISE_BETA)
    own, own_beta = walker_input(part, "noise")
    assert own_beta / (10.0 * own.std()) == pytest.approx(NOISE_BETA) and edge_noise(part) != pytest.approx(noise)
