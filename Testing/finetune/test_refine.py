"""Random-walker boundary refinement of a network labelmap (SegNetsLib.finetune.refine)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from SegNetsLib.core.box import Box
from SegNetsLib.finetune.refine import reach_box, refine_with_random_walker


def _ball(shape=(20, 32, 32), radius=8.0) -> np.ndarray:
    z, y, x = np.indices(shape)
    return ((z - 10) ** 2 + (y - 16) ** 2 + (x - 16) ** 2) <= radius**2


def test_a_shrunken_prediction_grows_back_to_the_edges():
    truth = _ball()
    rng = np.random.default_rng(0)
    image = (100.0 * truth + rng.normal(0, 5, truth.shape)).astype(np.float32)
    too_small = _ball(radius=5.0).astype(np.uint8) * 3  # the network found the ball but missed its rim
    annotation = np.zeros(truth.shape, np.uint8)
    weight = np.zeros(truth.shape, np.float32)
    refined = refine_with_random_walker(image, too_small, annotation, weight, spacing=(1, 1, 1), inner_mm=2, outer_mm=6)
    assert set(np.unique(refined)) == {0, 3} and refined.dtype == np.uint8
    dice = lambda a, b: 2 * (a & b).sum() / (a.sum() + b.sum())  # noqa: E731
    assert dice(refined == 3, truth) > 0.95 > dice(too_small == 3, truth)


def test_where_the_image_has_no_edge_the_network_places_the_boundary():
    """An image that only ramps up with the distance from the centre: no edge anywhere. Seeds are the
    network ball's core (deeper than 2 mm) and everything 10 mm outside it; the walker alone puts the
    boundary where its probability crosses 0.5, a radius of about 9; weighted with the network's labelmap
    it keeps the network's ball of radius 8. Intensities z-scored (``edges="std"``): the ramp's steps are then
    far below any edge (scaled by the noise, a noise-free ramp would be all edge)."""
    z, y, x = np.indices((48, 48, 48)) - 24
    radius = np.sqrt(z**2 + y**2 + x**2)
    network = (radius <= 8).astype(np.uint8) * 2
    nothing = np.zeros(network.shape, np.uint8)
    kwargs = dict(spacing=(1, 1, 1), inner_mm=2, outer_mm=10, edges="std")
    image = radius.astype(np.float32)
    walker_alone = refine_with_random_walker(
        image, network, nothing, nothing.astype(np.float32), network_weight=0.0, **kwargs
    )
    weighted = refine_with_random_walker(image, network, nothing, nothing.astype(np.float32), **kwargs)
    assert set(np.unique(weighted)) == set(np.unique(walker_alone)) == {0, 2}
    assert (walker_alone == 2).sum() > 1.2 * (network == 2).sum()
    dice = lambda a, b: 2 * (a & b).sum() / (a.sum() + b.sum())  # noqa: E731
    assert dice(weighted == 2, network == 2) > 0.97 > dice(walker_alone == 2, network == 2)


def test_annotated_voxels_are_seeds_of_the_user_label():
    truth = _ball()
    image = (100.0 * truth).astype(np.float32)
    prediction = np.zeros(truth.shape, np.uint8)  # the network found nothing
    annotation = np.zeros(truth.shape, np.uint8)
    annotation[10] = truth[10]
    weight = np.zeros(truth.shape, np.float32)
    weight[10] = 1
    refined = refine_with_random_walker(
        image, prediction, annotation, weight, spacing=(1, 1, 1), inner_mm=2, outer_mm=6
    )
    assert np.array_equal(refined[10] == 1, truth[10])


def test_a_vessel_thinner_than_the_inner_depth_keeps_its_core(data_dir):
    """The aorta (about 10 mm deep at most) of the test CT: its core stays a seed, so the random walker
    only moves its boundary; with seeds only deeper than 15 mm it lost most of the vessel (Dice 0.47)."""
    from scipy import ndimage

    from SegNetsLib.core.annotation import bin_centre_slices
    from SegNetsLib.imageio.volumes import read_volume

    image = read_volume(data_dir / "ts_ct_full" / "image.nii.gz")
    aorta = read_volume(data_dir / "ts_ct_full" / "label.nii.gz").array == 52  # TotalSegmentator v2 aorta
    network = ndimage.binary_dilation(aorta).astype(np.uint8)  # the network found it, one voxel too wide
    slices = bin_centre_slices(aorta, 3)
    annotation = np.zeros(aorta.shape, np.uint8)
    annotation[slices] = aorta[slices]
    weight = np.zeros(aorta.shape, np.float32)
    weight[slices] = 1
    refined = refine_with_random_walker(image.array, network, annotation, weight, image.spacing)
    dice = lambda a, b: 2 * (a & b).sum() / (a.sum() + b.sum())  # noqa: E731
    assert dice(refined == 1, aorta) > max(0.8, dice(network == 1, aorta))


def test_a_result_from_scratch_stays_in_the_annotated_range():
    """A bright rod through the whole volume, painted on 3 slices: the random walker alone follows it
    to the volume's ends; refine_result keeps it within the range the clean-up allows (consecutive painted
    slices: those slices alone)."""
    from SegNetsLib.finetune.refine import refine_result

    z, y, x = np.indices((30, 24, 24))
    rod = (y - 12) ** 2 + (x - 12) ** 2 <= 9
    image = (100.0 * rod + np.random.default_rng(1).normal(0, 5, rod.shape)).astype(np.float32)
    annotation = np.zeros(rod.shape, np.uint8)
    weight = np.zeros(rod.shape, np.float32)
    annotation[13:16] = rod[13:16]
    weight[13:16] = 1
    network = (rod & (z >= 10) & (z <= 18)).astype(np.uint8)
    spread = refine_with_random_walker(
        image, network, annotation, weight, spacing=(1, 1, 1), inner_mm=2, outer_mm=4, network_weight=0.0
    )
    assert spread[:12].any() or spread[17:].any()  # the walker alone leaves the range
    refined = refine_result(image, network, annotation, weight, (1, 1, 1), {0: [13, 14, 15]})
    assert not refined[:13].any() and not refined[16:].any()
    assert np.array_equal(refined[13:16], annotation[13:16])


def test_a_class_painted_only_far_from_the_band_keeps_its_voxels_and_the_others_their_values():
    """The walker sees only the box around the undecided band; a class whose every voxel is a seed outside
    that box (here value 5, painted on slice 2) gets no probability channel there, and must not shift the
    others' (value 3 around the ball)."""
    z, y, x = np.indices((60, 32, 32))
    ball = (z - 42) ** 2 + (y - 16) ** 2 + (x - 16) ** 2 <= 36
    image = (100.0 * ball + np.random.default_rng(3).normal(0, 5, ball.shape)).astype(np.float32)
    network = (ball * 3).astype(np.uint8)
    annotation = np.zeros(ball.shape, np.uint8)
    annotation[2, 10:20, 10:20] = 5
    weight = np.zeros(ball.shape, np.float32)
    weight[2] = 1
    refined = refine_with_random_walker(image, network, annotation, weight, spacing=(1, 1, 1), inner_mm=2, outer_mm=6)
    assert np.array_equal(refined[2], annotation[2])
    assert set(np.unique(refined[20:])) == {0, 3}
    assert 2 * ((refined == 3) & ball).sum() / ((refined == 3).sum() + ball.sum()) > 0.95


def test_a_part_the_network_missed_but_the_walker_alone_finds_is_recovered():
    """A bar along z with a clear edge; the network found only its first half and says nothing about the rest.
    Seeded from the network alone, background lies 6 mm beyond the half it found and the rest stays lost; with
    the walker's own result from the painted slices (it found the whole bar), background is seeded only far
    from both, and the refinement keeps the whole bar."""
    shape = (40, 24, 24)
    truth = np.zeros(shape, bool)
    truth[2:38, 8:16, 8:16] = True
    rng = np.random.default_rng(1)
    image = (100.0 * truth + rng.normal(0, 5, shape)).astype(np.float32)
    network = np.zeros(shape, np.uint8)
    network[2:20, 8:16, 8:16] = 1
    annotation = np.zeros(shape, np.uint8)
    weight = np.zeros(shape, np.float32)
    for index in (10, 30):
        annotation[index] = truth[index]
        weight[index] = 1
    classical = truth.astype(np.uint8)
    kwargs = dict(spacing=(1, 1, 1), inner_mm=2, outer_mm=6)
    alone = refine_with_random_walker(image, network, annotation, weight, **kwargs)
    both = refine_with_random_walker(image, network, annotation, weight, classical=classical, **kwargs)
    dice = lambda a, b: 2 * (a & b).sum() / (a.sum() + b.sum())  # noqa: E731
    assert dice(both == 1, truth) > 0.95
    assert dice(alone == 1, truth) < 0.9


def test_walker_alone_stays_inside_its_box_and_follows_the_painted_slices():
    from SegNetsLib.core.box import Box
    from SegNetsLib.finetune.refine import walker_alone

    truth = _ball()
    image = (100.0 * truth).astype(np.float32)
    painted = np.zeros(truth.shape, np.uint8)
    painted[[7, 13]] = 4 * truth[[7, 13]]
    box = Box(4, 4, 4, 17, 29, 29)
    out = walker_alone(image, painted, {0: [7, 13]}, box, (1.0, 1.0, 1.0))
    assert set(np.unique(out)) == {0, 4}
    outside = np.ones(truth.shape, bool)
    outside[box.slices] = False
    assert not out[outside].any()
    assert np.array_equal(out[10] == 4, truth[10])  # between the painted slices: the ball's own edge


def test_refine_result_keeps_only_the_components_holding_a_painted_voxel():
    """From scratch, a blob the network marked apart from the painted structure does not survive refinement."""
    from SegNetsLib.finetune.refine import refine_result

    truth = _ball()
    image = (100.0 * truth).astype(np.float32)
    image[14:17, 1:4, 1:4] = 100.0  # a bright look-alike in a corner, inside the annotated range
    network = truth.astype(np.uint8)
    network[14:17, 1:4, 1:4] = 1
    annotation = np.zeros(truth.shape, np.uint8)
    weight = np.zeros(truth.shape, np.float32)
    for index in (7, 10, 13):
        annotation[index] = truth[index]
        weight[index] = 1
    refined = refine_result(image, network, annotation, weight, (1, 1, 1), {0: [7, 10, 13]})
    assert not refined[14:17, 1:4, 1:4].any() and refined[10, 16, 16] == 1


def test_a_small_structure_in_a_large_volume_is_refined_as_in_a_volume_just_around_it():
    """The work happens inside the box reaching ``outer_mm`` around the results: the labels of a ball placed in a
    large noisy volume (anisotropic spacing, an annotated slice through it and one far away) equal those of the
    same ball refined in a volume cut tightly around that box, and nothing appears elsewhere."""
    rng = np.random.default_rng(1)
    shape, spacing, outer_mm = (40, 120, 140), (0.8, 0.8, 2.5), 6.0  # spacing (i, j, k) mm
    z, y, x = np.indices(shape)
    truth = ((z - 12) * 2.5) ** 2 + ((y - 50) * 0.8) ** 2 + ((x - 60) * 0.8) ** 2 <= 8.0**2
    image = (100.0 * truth + rng.normal(0, 20, shape)).astype(np.float32)
    network = (((z - 12) * 2.5) ** 2 + ((y - 50) * 0.8) ** 2 + ((x - 60) * 0.8) ** 2 <= 6.0**2).astype(np.uint8)
    annotation, weight = np.zeros(shape, np.uint8), np.zeros(shape, np.float32)
    for index in (12, 35):
        annotation[index], weight[index] = truth[index], 1.0
    kwargs = dict(spacing=spacing, inner_mm=2, outer_mm=outer_mm)
    whole = refine_with_random_walker(image, network, annotation, weight, **kwargs)
    # the ball (8 mm) and more than outer_mm around it: 3 slices of 2.5 mm, 9 voxels of 0.8 mm, and a few more
    reach = (slice(12 - 7, 12 + 8), slice(50 - 22, 50 + 23), slice(60 - 22, 60 + 23))
    part = refine_with_random_walker(image[reach], network[reach], annotation[reach], weight[reach], **kwargs)
    assert np.array_equal(whole[reach], part)
    outside = np.ones(shape, bool)
    outside[reach] = False
    assert not whole[outside].any() and whole[reach].sum() > network.sum()


def test_every_voxel_outside_the_reach_box_lies_farther_than_the_reach():
    rng = np.random.default_rng(2)
    for sampling, reach_mm in (((2.5, 0.8, 0.8), 6.0), ((1.0, 1.0, 1.0), 3.0), ((5.0, 0.57, 0.57), 24.0)):
        mask = np.zeros((30, 90, 90), bool)
        mask[tuple(rng.integers(0, n, 3) for n in mask.shape)] = True
        box = reach_box(mask, sampling, reach_mm)
        distance = ndimage.distance_transform_edt(~mask, sampling=sampling)
        outside = np.ones(mask.shape, bool)
        outside[box.slices] = False
        assert outside.any() and distance[outside].min() > reach_mm  # a box smaller than the volume, far enough


def _noisy_ball_painted(slices=(4, 10, 16)):
    """A bright ball in noise, every voxel of ``slices`` painted (the ball 1, the rest 0)."""
    truth = _ball()
    image = (100.0 * truth + np.random.default_rng(3).normal(0, 20, truth.shape)).astype(np.float32)
    annotation, weight = np.zeros(truth.shape, np.uint8), np.zeros(truth.shape, np.float32)
    for index in slices:
        annotation[index], weight[index] = truth[index], 1.0
    return truth, image, annotation, weight


def test_walker_alone_within_a_part_between_painted_slices_is_the_whole_run_there():
    """Every voxel of a painted slice is a seed, so the part between two of them comes out of a run on that part
    alone as out of the run on the whole box, when the edges are measured over the whole box."""
    from SegNetsLib.core.box import Box
    from SegNetsLib.finetune.refine import walker_alone

    truth, image, painted, _ = _noisy_ball_painted()
    box, within = Box(0, 2, 2, 20, 30, 30), Box(10, 0, 0, 17, 32, 32)  # painted slice 10 to painted slice 16
    whole = walker_alone(image, painted, {0: [4, 10, 16]}, box, (1.0, 1.0, 1.0))
    part = walker_alone(image, painted, {0: [4, 10, 16]}, box, (1.0, 1.0, 1.0), within)
    assert np.array_equal(part[10:17], whole[10:17]) and whole[12].any()
    assert not part[:10].any() and not part[17:].any()


def test_a_band_refined_within_a_part_is_the_whole_refinement_there_and_the_network_elsewhere():
    from SegNetsLib.core.box import Box

    truth, image, annotation, weight = _noisy_ball_painted()
    network = _ball(radius=6.0).astype(np.uint8)  # the network missed the ball's rim
    kwargs = dict(spacing=(1, 1, 1), inner_mm=2, outer_mm=6)
    whole = refine_with_random_walker(image, network, annotation, weight, **kwargs)
    part = refine_with_random_walker(image, network, annotation, weight, within=Box(4, 0, 0, 11, 32, 32), **kwargs)
    assert np.array_equal(part[4:11], whole[4:11]) and not np.array_equal(whole[5:10], network[5:10])
    elsewhere = np.r_[0:4, 11:20]
    assert np.array_equal(part[elsewhere], np.where(weight > 0, annotation, network)[elsewhere])


def test_the_refinement_of_several_channels_does_not_depend_on_their_units():
    """Each channel counts on its own scale, as the network z-scores each: a channel in other units (x 1000,
    shifted) refines as before (it drowned the other channels' edges)."""
    truth, image, annotation, weight = _noisy_ball_painted()
    other = np.random.default_rng(4).normal(0, 20, truth.shape).astype(np.float32) + 40.0 * truth
    network = _ball(radius=6.0).astype(np.uint8)
    kwargs = dict(spacing=(1, 1, 1), inner_mm=2, outer_mm=6)
    same = refine_with_random_walker(np.stack([image, other]), network, annotation, weight, **kwargs)
    scaled = refine_with_random_walker(
        np.stack([image, 1000.0 * other + 5000.0]), network, annotation, weight, **kwargs
    )
    assert np.array_equal(scaled, same) and not np.array_equal(same, network)


def test_the_walkers_standardize_each_channel_of_a_two_channel_image_once():
    """prepare_walkers hands the image to the walkers as it is (no standardized copy of the whole [c, k, j, i]
    volume): the refinement standardizes each channel of what it walks on, so the labels equal those of the image
    standardized beforehand, as the walkers once saw it (a second pass changes nothing but rounding there)."""
    from SegNetsLib.finetune.refine import each_channel_standardized
    from SegNetsLib.finetune.walkers import prepare_walkers

    truth = _ball()
    rng = np.random.default_rng(3)
    image = np.stack([400.0 * truth + rng.normal(0, 40, truth.shape), 0.5 * truth + rng.normal(3, 0.1, truth.shape)])
    image = image.astype(np.float32)  # two channels in units 800 times apart
    annotation = np.full(truth.shape, 255, np.uint8)
    weight = np.zeros(truth.shape, np.float32)
    for index in (5, 10, 15):
        annotation[index], weight[index] = truth[index], 1.0
    slices, box = {0: [5, 10, 15]}, Box(2, 7, 7, 19, 26, 26)
    network = _ball(radius=6.0).astype(np.uint8)
    walkers = prepare_walkers(image, annotation, weight, (1.0, 1.0, 1.0), slices, box, painted_only=True)
    assert walkers.walked.image is image
    standardized = prepare_walkers(each_channel_standardized(image), annotation, weight, (1.0,) * 3, slices, box, True)
    refined = walkers.refine(walkers.on_grid(network))
    assert np.array_equal(refined, standardized.refine(standardized.on_grid(network)))
    assert np.array_equal(walkers.alone(), standardized.alone()) and set(np.unique(refined)) == {0, 1}
