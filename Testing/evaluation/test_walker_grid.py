"""The random walker on a coarser grid for large systems (SegNetsLib.evaluation.walker_grid)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from SegNetsLib.core.annotation import bin_centre_slices, slices_mask
from SegNetsLib.evaluation.classical import walker_input
from SegNetsLib.evaluation.metrics import dice
from SegNetsLib.evaluation.walker_grid import _coarse_grid, _factors, block_means, solve_random_walker

DATA = Path(__file__).resolve().parents[1] / "Data" / "ts_ct_full"


def _ball(shape: tuple[int, int, int], centre: tuple[int, int, int], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2


def _seeds(truth: np.ndarray, slices: list[int], axis: int = 0) -> np.ndarray:
    """Seed indices [k, j, i]: 1 background, 2 structure on the painted ``slices`` along ``axis``, 0 elsewhere."""
    seeds = np.zeros(truth.shape, np.int32)
    painted = slices_mask(truth.shape, {axis: slices})
    seeds[painted] = truth[painted].astype(np.int32) + 1
    return seeds


def _liver() -> tuple[np.ndarray, np.ndarray]:
    """The test CT's liver (label 5) and its image, cropped to the liver's box widened by 4 voxels."""
    from SegNetsLib.imageio.volumes import read_volume

    if not (DATA / "image.nii.gz").exists():
        pytest.skip("Testing/Data/ts_ct_full is missing")
    image = read_volume(DATA / "image.nii.gz").array.astype(np.float64)
    truth = read_volume(DATA / "label.nii.gz").array == 5
    box = tuple(slice(max(0, int(c.min()) - 4), int(c.max()) + 5) for c in np.nonzero(truth))
    return image[box], truth[box]


def test_a_coarser_grid_finds_the_structure_the_full_grid_finds_and_every_seed_keeps_its_class():
    """A real CT liver (3 mm voxels) from three painted slices, taken for 1.5 mm voxels so that a grid twice
    as coarse in-plane is allowed: the walker's result there agrees with the full grid's and is nearly as close to
    the reference (0.949 and 0.924 when measured)."""
    image, truth = _liver()
    seeds = _seeds(truth, bin_centre_slices(truth, 3))
    data, beta = walker_input(image, "noise")
    unknowns = int(np.count_nonzero(seeds == 0))
    full = solve_random_walker(data, seeds, beta, (1.5, 1.5, 1.5), max_unknowns=None)
    coarse = solve_random_walker(data, seeds, beta, (1.5, 1.5, 1.5), max_unknowns=unknowns // 3)
    assert coarse.shape == full.shape == (2, *truth.shape)
    for index in (1, 2):
        assert np.all(coarse[index - 1][seeds == index] == 1.0)
    by_full, by_coarse = full[1] > 0.5, coarse[1] > 0.5
    assert dice(by_full, truth) > 0.9
    assert dice(by_coarse, by_full) > 0.93
    assert dice(by_coarse, truth) > dice(by_full, truth) - 0.04


def test_the_coarser_grid_never_passes_the_largest_voxel_size():
    """At 3 mm (:data:`MAX_COARSE_MM`) there is nothing to coarsen: the walk is scikit-image's own, however large."""
    image, truth = _liver()
    seeds = _seeds(truth, bin_centre_slices(truth, 2))
    data, beta = walker_input(image, "noise")
    limited = solve_random_walker(data, seeds, beta, (3.0, 3.0, 3.0), max_unknowns=1000)
    np.testing.assert_array_equal(limited, solve_random_walker(data, seeds, beta, (3.0, 3.0, 3.0), None))
    assert _factors(4.0, (5.0, 0.8, 0.8), kept=0) == (1, 2, 2)
    assert _factors(100.0, (5.0, 0.8, 0.8), kept=0) == (1, 3, 3)  # 2.4 mm, not 8 mm
    assert _factors(100.0, (5.0, 0.8, 0.8), kept=1) == (1, 1, 3)


def test_below_the_limit_the_walk_is_scikit_images_own():
    from skimage.segmentation import random_walker

    image, truth = _liver()
    seeds = _seeds(truth, bin_centre_slices(truth, 2))
    data, beta = walker_input(image, "noise")
    ours = solve_random_walker(data, seeds, beta, (1.0, 1.0, 1.0), max_unknowns=seeds.size)
    theirs = random_walker(data, seeds, beta=beta, mode="cg_j", tol=1e-3, return_full_prob=True)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_the_axis_across_painted_slices_stays_at_full_resolution(axis):
    """Painted slices at both ends of an odd-length box and in the middle: coarsening across them would merge
    each with unknown voxels, so their axis is the one kept."""
    truth = np.zeros((37, 37, 37), bool)
    truth[10:27, 10:27, 10:27] = True
    seeds = _seeds(truth, [0, 18, 36], axis)
    factors, coarse = _coarse_grid(seeds, [1, 2], (1.0, 1.0, 1.0), int(np.count_nonzero(seeds == 0)) // 4 + 1)
    assert factors[axis] == 1 and sorted(factors) == [1, 2, 2]
    seeded = np.moveaxis(coarse, axis, 0).any(axis=(1, 2))
    assert np.flatnonzero(seeded).tolist() == [0, 18, 36]  # every painted slice still seeds, nothing else


def test_a_class_thinner_than_a_block_keeps_the_full_grid():
    """A 1-voxel-wide structure: on a 2 x 2 grid no block holds only its seeds, so the walk stays on the full
    grid rather than losing the class."""
    rng = np.random.default_rng(0)
    truth = np.zeros((9, 24, 24), bool)
    truth[:, 11, 11] = True
    image = 5.0 * truth + rng.normal(0, 1.0, truth.shape)
    seeds = _seeds(truth, [0, 4, 8])
    data, beta = walker_input(image, "noise")
    limited = solve_random_walker(data, seeds, beta, (1.0, 1.0, 1.0), max_unknowns=100)
    np.testing.assert_array_equal(limited, solve_random_walker(data, seeds, beta, (1.0, 1.0, 1.0), None))


def test_seeds_everywhere_give_each_seed_its_own_class():
    """Nothing left to solve (every voxel a seed): one probability map per seed index, 1 on its own seeds."""
    seeds = np.ones((4, 6, 8), np.int32)
    seeds[1:3, 2:4, 3:6] = 2
    probabilities = solve_random_walker(np.random.default_rng(0).random(seeds.shape), seeds, 1.0, (1.0, 1.0, 1.0))
    assert probabilities.shape == (2, 4, 6, 8)
    np.testing.assert_array_equal(probabilities[1], seeds == 2)
    np.testing.assert_array_equal(probabilities[0], seeds == 1)


def test_a_half_resolution_timing_is_coarsened_as_the_full_grid_would_be():
    """The refinement's time estimate runs on every second voxel (``stands_for=2``): a system whose full grid is
    coarsened 2 x 2 is coarsened 2 x 2 there too, so that the two times keep the ratio of uncoarsened solves."""
    truth = np.zeros((40, 64, 64), bool)
    truth[8:32, 16:48, 16:48] = True
    seeds = _seeds(truth, [10, 20, 30])
    half_seeds = seeds[::2, ::2, ::2]
    full_limit = int(np.count_nonzero(seeds == 0)) // 3
    full, _ = _coarse_grid(seeds, [1, 2], (1.0, 1.0, 1.0), full_limit)
    half, _ = _coarse_grid(half_seeds, [1, 2], (2.0, 2.0, 2.0), full_limit, stands_for=2)
    assert full == half == (1, 2, 2)
    assert _coarse_grid(half_seeds, [1, 2], (2.0, 2.0, 2.0), full_limit) is None  # on its own it is small enough


def test_with_thick_slices_the_painted_axis_stays_whole_and_the_plane_is_coarsened():
    """5 mm slices, 1 mm in-plane: the slice axis cannot be coarsened within 3 mm, and a grid coarsened along one
    in-plane axis only keeps as many seeds as fewer blocks; the plane is coarsened along both of its axes."""
    seeds = np.zeros((20, 60, 60), np.int32)
    seeds[::5] = 1
    seeds[::5, 20:40, 20:40] = 2
    factors, _ = _coarse_grid(seeds, [1, 2], (5.0, 1.0, 1.0), int(np.count_nonzero(seeds == 0)) // 4)
    assert factors == (1, 2, 2)


def test_the_probabilities_come_back_on_the_block_centres():
    """A uniform image between two seed slabs (2 voxels thick, so that a block holds them whole): the walk's
    probability rises linearly across the gap, and on a grid coarsened along the ramp it comes back on the same
    line (no shift of half a block)."""
    data = np.random.default_rng(0).normal(0.0, 1e-6, (4, 8, 62))  # uniform: every edge weighs 1
    seeds = np.zeros(data.shape, np.int32)
    seeds[:, :, :2], seeds[:, :, -2:] = 1, 2
    limit = int(np.count_nonzero(seeds == 0)) // 3
    assert _coarse_grid(seeds, [1, 2], (1.0, 1.0, 1.0), limit)[0] == (1, 2, 2)  # the ramp's axis coarsened
    full = solve_random_walker(data, seeds, 1e-6, (1.0, 1.0, 1.0), max_unknowns=None)[1]
    coarse = solve_random_walker(data, seeds, 1e-6, (1.0, 1.0, 1.0), max_unknowns=limit)[1]
    ramp = np.clip((np.arange(62) - 1) / 59, 0, 1)
    np.testing.assert_allclose(full[0, 0], ramp, atol=0.01)
    np.testing.assert_allclose(coarse[0, 0], full[0, 0], atol=0.012)  # a shift of one voxel: 0.017


def test_the_refinement_band_on_a_coarser_grid_keeps_each_label_and_the_channels(monkeypatch):
    """Two labels (values 2 and 5, so the walker's seed indices are not the values) on a 2-channel image, the band
    widened (``outer_mm``) past 500,000 unknowns: the band is walked on a coarser grid, and each structure comes
    out of a dilated or eroded network result within Dice 0.95 of the truth."""
    from scipy import ndimage

    import SegNetsLib.evaluation.walker_grid as walker_grid
    from SegNetsLib.finetune.refine import refine_with_random_walker

    grids = []
    coarse_grid = walker_grid._coarse_grid

    def recorded(*args, **kwargs):
        grid = coarse_grid(*args, **kwargs)
        grids.append(None if grid is None else grid[0])
        return grid

    monkeypatch.setattr(walker_grid, "_coarse_grid", recorded)
    shape = (40, 128, 128)
    first = _ball(shape, (20, 50, 45), 14.0)
    second = _ball(shape, (20, 80, 90), 10.0)
    truth = np.zeros(shape, np.uint8)
    truth[first], truth[second] = 2, 5
    noise = np.random.default_rng(0).normal(0, 3.0, (2, *shape))
    image = np.stack([60.0 * (truth == 2) + 30.0 * (truth == 5), 40.0 * (truth > 0)]) + noise
    network = np.zeros(shape, np.uint8)
    network[ndimage.binary_dilation(first, iterations=2)] = 2
    network[ndimage.binary_erosion(second, iterations=2)] = 5
    annotation, weight = np.zeros(shape, np.uint8), np.zeros(shape, np.float32)
    annotation[20], weight[20] = truth[20], 1.0
    out = refine_with_random_walker(image, network, annotation, weight, (1.0, 1.0, 1.0), outer_mm=80.0)
    assert grids == [(1, 2, 2)]
    assert dice(out == 2, truth == 2) > 0.95 > dice(network == 2, truth == 2)
    assert dice(out == 5, truth == 5) > 0.95 > dice(network == 5, truth == 5)
    assert np.array_equal(out[20], truth[20])


def test_seed_indices_need_not_be_consecutive():
    """Seed indices 1 and 3 (as the refinement's band has when a label holds no seed there): two probability maps,
    in the indices' order, on the coarser grid as on the full one."""
    image, truth = _liver()
    seeds = _seeds(truth, bin_centre_slices(truth, 3))
    seeds[seeds == 2] = 3
    data, beta = walker_input(image, "noise")
    full = solve_random_walker(data, seeds, beta, (1.5, 1.5, 1.5), max_unknowns=None)
    coarse = solve_random_walker(
        data, seeds, beta, (1.5, 1.5, 1.5), max_unknowns=int(np.count_nonzero(seeds == 0)) // 3
    )
    assert full.shape == coarse.shape == (2, *truth.shape)
    assert np.all(coarse[1][seeds == 3] == 1.0) and np.all(coarse[0][seeds == 1] == 1.0)
    assert dice(coarse[1] > 0.5, full[1] > 0.5) > 0.93


@pytest.mark.parametrize("shape", [(8, 256, 256), (8, 255, 254)])  # whole blocks, and blocks padded at the ends
def test_block_means_hold_no_float64_copy_of_the_image(shape):
    """Averaging a float32 image into 4 x 4 blocks holds the means and, where the blocks reach past the ends, one
    padded copy of the image: a float64 copy of it (twice its size, and its padded copy) is not made."""
    image = np.random.default_rng(0).normal(0, 300, shape).astype(np.float32)
    expected = np.pad(image.astype(np.float64), [(0, -n % f) for n, f in zip(shape, (1, 4, 4))], mode="edge")
    expected = expected.reshape(8, 1, 64, 4, 64, 4).mean(axis=(1, 3, 5))
    padded = any(n % 4 for n in shape[1:])
    tracemalloc.start()
    try:
        means = block_means(image, None, (1, 4, 4))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert means.dtype == np.float64 and np.array_equal(means, expected)
    assert peak < (1.2 if padded else 0.2) * image.nbytes, peak / image.nbytes
