"""Shape-based interpolation between painted slices and its blend into the refinement
(SegNetsLib.finetune.interpolate, SegNetsLib.finetune.refine)."""

from __future__ import annotations

import numpy as np

from SegNetsLib.evaluation.metrics import dice
from SegNetsLib.finetune.interpolate import interpolate_slices, interpolated_distance, interpolated_distances
from SegNetsLib.finetune.refine import refine_with_random_walker


def _disc(radius: float, shape=(40, 40), centre=(20, 20)) -> np.ndarray:
    y, x = np.indices(shape)
    return (y - centre[0]) ** 2 + (x - centre[1]) ** 2 <= radius**2


def test_between_two_discs_the_outline_takes_the_mean_radius():
    painted = np.zeros((11, 40, 40), np.uint8)
    painted[0] = _disc(4.0)
    painted[10] = _disc(12.0)
    distance = interpolated_distance(painted, 1, 0, [0, 10], spacing=(0.5, 0.5, 2.0))
    middle = distance[5] > 0
    assert abs(np.sqrt(middle.sum() / np.pi) - 8.0) < 0.6  # radius in voxels
    assert abs(distance[5][20, 20] - 4.0) < 0.3  # mm: the centre lies 8 voxels of 0.5 mm deep
    assert np.isfinite(distance[:11]).all()


def test_beyond_the_outer_painted_slices_the_outline_tapers_over_one_gap():
    painted = np.zeros((40, 40, 40), np.uint8)
    painted[15] = painted[20] = _disc(6.0)
    labels = interpolate_slices(painted, {0: [15, 20], 1: [], 2: []}, spacing=(1, 1, 1))
    assert all(np.array_equal(labels[z] == 1, _disc(6.0)) for z in range(15, 21))
    areas = [int(labels[z].sum()) for z in range(40)]
    assert areas[:10] == [0] * 10 and areas[26:] == [0] * 14  # one gap (5 slices) beyond, then nothing
    assert areas[15] > areas[14] > areas[12] > areas[10] > 0  # shrinking away from the painted slice
    assert areas[20] > areas[21] > areas[23] > areas[25] > 0


def test_a_painted_slice_without_the_structure_ends_it_between_the_slices():
    painted = np.zeros((9, 40, 40), np.uint8)
    painted[0] = _disc(10.0)  # slice 8 is painted background only
    distance = interpolated_distance(painted, 1, 0, [0, 8], spacing=(1, 1, 1))
    areas = [(distance[z] > 0).sum() for z in range(9)]
    assert areas[0] == _disc(10.0).sum() and areas[8] == 0
    assert all(a >= b for a, b in zip(areas, areas[1:]))  # shrinks steadily


def test_two_labels_each_take_their_own_outline():
    painted = np.zeros((6, 40, 40), np.uint8)
    painted[0][_disc(5.0, centre=(10, 10))] = 1
    painted[5][_disc(5.0, centre=(10, 10))] = 1
    painted[0][_disc(5.0, centre=(30, 30))] = 2
    painted[5][_disc(5.0, centre=(30, 30))] = 2
    distances = interpolated_distances(painted, {0: [0, 5], 1: [], 2: []}, spacing=(1, 1, 1))
    assert sorted(distances) == [1, 2]
    labels = interpolate_slices(painted, {0: [0, 5]}, spacing=(1, 1, 1))
    assert set(np.unique(labels[3])) == {0, 1, 2}
    assert np.array_equal(labels[3] == 2, _disc(5.0, centre=(30, 30)))


def test_where_the_walker_leaks_the_interpolated_outline_holds():
    """A tube of the same intensity as the tissue it runs through on one side: the walker from the painted
    ends leaks into that tissue; blended with the outline interpolated between the painted slices the result
    stays near the tube."""
    shape = (24, 48, 48)
    tube = np.stack([_disc(6.0, shape[1:], (24, 24)) for _ in range(shape[0])])
    tissue = np.zeros(shape, bool)
    tissue[:, 24:, :] = True  # the lower half of every slice, touching the tube
    rng = np.random.default_rng(0)
    image = (100.0 * (tube | tissue) + rng.normal(0, 3, shape)).astype(np.float32)
    annotation = np.zeros(shape, np.uint8)
    weight = np.zeros(shape, np.float32)
    slices = {0: [4, 19], 1: [], 2: []}
    for z in slices[0]:
        annotation[z] = tube[z]
        weight[z] = 1.0
    network = np.zeros(shape, np.uint8)
    kwargs = dict(spacing=(1, 1, 1), outer_mm=30)
    alone = refine_with_random_walker(image, network, annotation, weight, **kwargs)
    distances = interpolated_distances(np.where(weight > 0, annotation, 0), slices, (1, 1, 1))
    blended = refine_with_random_walker(image, network, annotation, weight, interpolated=distances, **kwargs)
    inside = slice(4, 20)
    assert dice(blended[inside] > 0, tube[inside]) > 0.9 > dice(alone[inside] > 0, tube[inside])
    assert np.array_equal(blended[weight > 0], annotation[weight > 0])
