"""The fine-tuning budget covers segmentation and refinement (SegNetsLib.finetune.budget)."""

import numpy as np
import pytest
import torch

from SegNetsLib import nets
from SegNetsLib.card.card import RoiSettings
from SegNetsLib.core.box import Box
from SegNetsLib.finetune.budget import (
    MINIMUM_TRAINING_S,
    refinement_seconds,
    refinement_skipped_note,
    segmentation_seconds,
    segmented_regions,
    stand_in_result,
    training_budget_s,
    window_seconds,
)
from SegNetsLib.finetune.cleanup import lone_slice_margin


def test_training_gets_what_the_run_has_not_used_or_kept():
    assert training_budget_s(120.0, 5.0, 10.0) == pytest.approx(120.0 - 1.2 - 5.0 - 10.0)  # 1 % of the limit kept free
    assert training_budget_s(20.0, 15.0, 30.0) == MINIMUM_TRAINING_S  # never nothing to train on


def test_timing_a_window_leaves_the_network_training_and_unchanged():
    net = nets.build("unet3d", 1, 2, "default", base_channels=4, levels=2, norm="batch").train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    seconds = window_seconds(net, 1, (8, 16, 16), torch.device("cpu"))
    assert seconds > 0 and net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # batch-norm statistics untouched
    one_window = segmentation_seconds(net, 1, (8, 16, 16), [(8, 16, 16)], torch.device("cpu"), 0.0)
    assert one_window > 0
    assert (
        segmentation_seconds(net, 1, (8, 16, 16), [(8, 16, 16)], torch.device("cpu"), 5.0) > 5.0
    )  # preprocessing counts


def test_with_roi_localization_the_estimate_covers_the_coarse_pass_and_the_painted_structures_box():
    grid, spacing = (155, 240, 240), (1.0, 1.0, 1.0)
    painted = Box(40, 100, 90, 90, 160, 150)  # (d, h, w) starts, then stops
    regions = segmented_regions(RoiSettings(), grid, painted, spacing)
    assert regions == [(78, 120, 120), (70, 80, 80)]  # half the grid; the box and 10 mm on each side
    assert sum(map(np.prod, regions)) < 0.2 * np.prod(grid)  # where the whole grid was counted before
    fixed = RoiSettings(extension="fixed", fixed_size=(64, 96, 96))
    assert segmented_regions(fixed, grid, painted, spacing)[1] == (64, 96, 96)


def test_the_whole_grid_is_estimated_where_the_regions_cannot_be_foreseen():
    grid, painted = (155, 240, 240), Box(40, 100, 90, 90, 160, 150)
    assert segmented_regions(RoiSettings(mode="off"), grid, painted, (1.0, 1.0, 1.0)) == [grid]
    assert segmented_regions(RoiSettings(locator="runet"), grid, painted, (1.0, 1.0, 1.0)) == [grid]
    assert segmented_regions(RoiSettings(locator="liver-locator"), grid, painted, (1.0, 1.0, 1.0)) == [grid]
    assert segmented_regions(RoiSettings(), grid, None, (1.0, 1.0, 1.0)) == [grid]  # painted along several axes


def test_stand_in_result_copies_the_nearest_painted_slice_through_the_annotated_range():
    painted = np.zeros((20, 6, 7), dtype=np.uint8)
    painted[6, 1:3, 1:3] = 1
    painted[10, 3:5, 4:6] = 2
    out = stand_in_result(painted, {0: [6, 10]})  # largest gap 4: slices 3 to 13
    assert np.array_equal(out[7], painted[6]) and np.array_equal(out[9], painted[10])
    assert np.array_equal(out[3], painted[6]) and np.array_equal(out[13], painted[10])
    assert not out[:3].any() and not out[14:].any()
    assert painted[7].sum() == 0  # the caller's array is untouched


def test_stand_in_result_of_a_lone_slice_reaches_as_far_as_the_clean_up_lets_the_result():
    """A lone painted slice: the clean-up keeps the result within the painting's equivalent diameter (here a 20 x 20
    mm square at 1 mm: 22.6 mm, 11 slices of 2 mm), so the refinement is estimated on that much, not 3 slices."""
    painted = np.zeros((40, 30, 30), dtype=np.uint8)
    painted[20, 5:25, 5:25] = 1
    spacing = (1.0, 1.0, 2.0)
    margin = lone_slice_margin(painted, spacing, 0)
    assert margin == 11
    out = stand_in_result(painted, {0: [20]}, spacing)
    assert np.array_equal(np.flatnonzero(out.any(axis=(1, 2))), np.arange(20 - margin, 20 + margin + 1))


def test_stand_in_result_follows_the_axis_with_the_most_annotated_slices():
    painted = np.zeros((5, 6, 30), dtype=np.uint8)
    for index in (10, 12, 20):
        painted[1:4, 2:4, index] = 1
    out = stand_in_result(painted, {2: [10, 12, 20], 0: [0]})
    assert out[..., 3].any() and out[..., 27].any()  # first - 7 and last + 7 along axis 2 (largest gap 8)
    assert not out[..., 2].any() and not out[..., 28].any()
    assert np.array_equal(out[..., 16], painted[..., 20]) and np.array_equal(out[..., 15], painted[..., 12])


def test_refinement_is_estimated_from_a_timed_half_resolution_run():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 24, 32, 32)).astype(np.float32)  # two channels [c, k, j, i]
    labels = np.zeros((24, 32, 32), dtype=np.uint8)
    labels[8, 10:20, 10:20] = 1
    labels[14, 12:22, 10:20] = 1
    image[:, 6:17, 10:22, 10:20] += 3.0
    weight = np.zeros(labels.shape, dtype=np.float32)
    weight[[8, 14]] = 1.0
    seconds = refinement_seconds(image, labels, weight, (1.0, 1.0, 2.0), slices={0: [8, 14]})
    assert 0.0 < seconds < 60.0
    assert labels.sum() == 200 and weight.sum() == 2 * 32 * 32  # inputs untouched


def test_the_refinement_reserve_is_twice_the_estimate_and_at_least_a_tenth_of_the_limit():
    from SegNetsLib.finetune.budget import refinement_reserve

    assert refinement_reserve(4.0, 60.0) == 8.0
    assert refinement_reserve(0.5, 60.0) == 6.0


@pytest.mark.parametrize(
    ("needed_s", "left_s", "limit_s", "said"),
    [
        (0.43, 0.01, 20.0, "about 0.4 s, and only 0.01 s of the 20 s time limit were left"),
        (0.84, 0.81, 60.0, "about 0.84 s, and only 0.81 s of the 60 s time limit were left"),  # 0.8 twice would not do
        (12.6, 3.2, 120.0, "about 13 s, and only 3.2 s of the 120 s time limit were left"),
        (12.4, 12.2, 120.0, "about 12.4 s, and only 12.2 s of the 120 s time limit were left"),
        (0.8, 0.002, 0.5, "about 0.8 s, and none of the 0.5 s time limit was left"),  # 2 ms: nothing to act on
        (0.004, 0.001, 30.0, "less than 0.01 s, and none of the 30 s time limit was left"),
        (0.8, -2.1, 0.01, "about 0.8 s, and none of the 0.01 s time limit was left"),
        (0.8, 0.0, 90.5, "about 0.8 s, and none of the 90.5 s time limit was left"),
    ],
)
def test_a_skipped_refinement_is_said_with_numbers_a_user_can_act_on(needed_s, left_s, limit_s, said):
    note = refinement_skipped_note(needed_s, left_s, limit_s)
    assert note == f"boundary refinement skipped: it would take {said}"


@pytest.mark.parametrize(
    ("architecture", "options", "region"),
    [
        ("conresnet", {"width_divisor": 4, "shape": (8, 16, 16)}, (6, 10, 14)),
        ("runet", {"base_channels": 2}, (7, 30, 30)),
    ],
)
def test_paper_presets_are_timed_on_the_windows_the_predictor_gives_them(architecture, options, region):
    """A paper-preset ConResNet takes one input size and a 3D RU-Net multiples of (2, 4, 4): the estimate times the
    windows the predictor runs (enlarged, MONAI padding the region), not the region-sized ones they refuse."""
    net = nets.build(architecture, 1, 2, "paper", **options)
    assert segmentation_seconds(net, 1, (8, 32, 32), [region], torch.device("cpu"), 0.0) > 0
