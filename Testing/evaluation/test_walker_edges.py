"""How the random walker measures edges (SegNetsLib.evaluation.classical: noise_level, walker_input)."""

from __future__ import annotations

import numpy as np
import pytest

from SegNetsLib.core.annotation import bin_centre_slices
from SegNetsLib.evaluation.classical import noise_level, random_walker, walker_input
from SegNetsLib.evaluation.metrics import dice


def _ball(shape=(24, 32, 32), centre=(12, 16, 12), radius=7.0) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2


def test_the_noise_level_is_the_noise_whatever_the_edges_and_flat_regions():
    """Gaussian noise of sigma 4: neighbours differ by N(0, 2 sigma^2), whose median absolute value is
    0.954 sigma. Neither a bright block (a few edges) nor a flat region of zeros (no differences at all)
    moves the estimate."""
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 4.0, (24, 32, 32))
    assert noise_level(noise) == pytest.approx(0.954 * 4.0, rel=0.05)
    with_block = noise.copy()
    with_block[8:16, 8:24, 8:24] += 500.0
    with_zeros = noise.copy()
    with_zeros[:, :, 16:] = 0.0
    assert noise_level(with_block) == pytest.approx(noise_level(noise), rel=0.05)
    assert noise_level(with_zeros) == pytest.approx(noise_level(noise), rel=0.05)
    channels = np.stack([noise, 2.0 * noise])  # [c, k, j, i]: differences along the channels do not count
    assert noise_level(channels, channel_axis=0) == pytest.approx(1.5 * noise_level(noise), rel=0.1)


def test_a_faint_edge_beside_a_bright_structure_holds_against_the_noise_not_against_the_spread():
    """A ball 8 noise levels above its surroundings, beside a slab 300 above them: z-scored, the slab's
    spread makes the ball's edge faint and the walker from three painted slices misses its shape between
    them; measured against the noise, the edge holds."""
    truth = _ball()
    rng = np.random.default_rng(1)
    image = 8.0 * truth + rng.normal(0, 1.0, truth.shape)
    image[:, :, 24:] += 300.0  # the bright neighbour, away from the ball
    slices = bin_centre_slices(truth, 3)
    annotation = np.zeros(truth.shape, np.uint8)
    annotation[slices] = truth[slices]
    by_noise = dice(random_walker(image, annotation, {0: slices}, mode="cg_j", edges="noise") == 1, truth)
    by_spread = dice(random_walker(image, annotation, {0: slices}, mode="cg_j", edges="std") == 1, truth)
    assert by_noise > 0.9
    assert by_noise > by_spread + 0.05


def test_a_noise_free_image_keeps_the_edges_of_the_z_scored_rule():
    """Without noise every difference is an edge and the median one an edge's height: the noise rule would
    soften every edge to exp(-1); it never goes below the z-scored rule's sharpness, so both agree."""
    truth = _ball()
    image = 100.0 * truth
    slices = bin_centre_slices(truth, 3)
    annotation = np.zeros(truth.shape, np.uint8)
    annotation[slices] = truth[slices]
    by_noise = random_walker(image, annotation, {0: slices}, mode="cg_j", edges="noise")
    assert np.array_equal(by_noise, random_walker(image, annotation, {0: slices}, mode="cg_j", edges="std"))
    assert dice(by_noise == 1, truth) > 0.95


def test_an_unknown_edge_rule_is_refused_by_name():
    with pytest.raises(ValueError, match="edges must be 'std' or 'noise', not 'sobel'"):
        walker_input(np.zeros((2, 2, 2)), "sobel")
