"""Which slices of the result on screen a correction round changes (SegNetsLib.finetune.update)."""

import numpy as np
import pytest

from SegNetsLib.finetune.update import CONFIRMED_DICE, changing_box, gap_slices, local_update, slice_agreement


def test_a_local_update_changes_the_result_only_where_the_added_slice_is_the_nearest_painting():
    previous = np.zeros((20, 4, 4), np.uint8)
    new = np.ones_like(previous)
    out = local_update(previous, new, painted=[3, 10, 16], added=[12], axis=0)  # 11 and 14: as near 10 and 16
    assert np.nonzero(out.any(axis=(1, 2)))[0].tolist() == [12, 13]
    out = local_update(previous, new, painted=[3, 10], added=[1, 18], axis=0)  # beyond the ends: to the volume's
    assert np.nonzero(out.any(axis=(1, 2)))[0].tolist() == [0, 1, 15, 16, 17, 18, 19]
    out = local_update(previous, new, painted=[3, 10], added=[6], axis=0)  # an odd gap: 4 and 8 nearer the painted
    assert np.nonzero(out.any(axis=(1, 2)))[0].tolist() == [5, 6, 7]
    out = np.moveaxis(local_update(np.moveaxis(previous, 0, 2), np.moveaxis(new, 0, 2), [3, 10], [6], axis=2), 2, 0)
    assert np.nonzero(out.any(axis=(1, 2)))[0].tolist() == [5, 6, 7]  # the same along another axis
    assert not previous.any()  # the previous result is not modified


def test_a_correction_that_confirms_the_result_changes_only_its_own_slice():
    previous = np.zeros((20, 4, 4), np.uint8)
    previous[:, 1:3, 1:3] = 1
    new = np.full_like(previous, 2)
    painting = np.full(previous.shape, 255, np.uint8)  # unpainted everywhere ...
    painting[12] = previous[12]  # ... but slice 12, painted as the result already had it
    out = local_update(previous, new, [3, 10, 16], [12], 0, painting=painting)
    assert np.nonzero((out != previous).any(axis=(1, 2)))[0].tolist() == [12]
    painting[12, 0, :] = 1  # 4 + 4 more voxels: Dice 2 * 4 / 12 = 0.67 against the result, below CONFIRMED_DICE
    out = local_update(previous, new, [3, 10, 16], [12], 0, painting=painting)
    assert np.nonzero((out != previous).any(axis=(1, 2)))[0].tolist() == [12, 13]  # the slices it is nearest
    painting[8] = previous[8]  # two slices added in one round: 8 confirms the result, 12 corrects it
    out = local_update(previous, new, [3, 16], [8, 12], 0, painting=painting)
    # 12 changes the slices nearer it than 3, 16 and the confirmed 8: 11 to 13 (10 is as near 8)
    assert np.nonzero((out != previous).any(axis=(1, 2)))[0].tolist() == [8, 11, 12, 13]


def test_a_correction_painted_empty_between_painted_structure_changes_only_its_own_slice():
    previous = np.zeros((20, 4, 4), np.uint8)
    previous[:, 1:3, 1:3] = 1  # the result bridges the gap at 10 that the painting reveals
    new = np.zeros_like(previous)
    painting = np.full(previous.shape, 255, np.uint8)
    painting[[5, 15]] = previous[[5, 15]]  # the structure painted on both sides ...
    painting[10] = 0  # ... and nothing of it on the added slice
    out = local_update(previous, new, [5, 15], [10], 0, painting=painting)
    assert np.nonzero((out != previous).any(axis=(1, 2)))[0].tolist() == [10]
    painting[15] = 0  # nothing painted beyond: the structure may end at 10, whose nearer slices change
    out = local_update(previous, new, [5, 15], [10], 0, painting=painting)
    assert np.nonzero((out != previous).any(axis=(1, 2)))[0].tolist() == [8, 9, 10, 11, 12]


def test_an_empty_correction_between_two_different_labels_is_where_each_ends_not_a_gap():
    previous = np.zeros((20, 4, 4), np.uint8)
    previous[:10, 1:3, 1:3], previous[10:, 1:3, 1:3] = 1, 2
    new = np.zeros_like(previous)
    painting = np.full(previous.shape, 255, np.uint8)
    painting[[5, 15]] = previous[[5, 15]]  # label 1 below, label 2 above ...
    painting[10] = 0  # ... and nothing between: each may end there, as a single label painted on one side only
    out = local_update(previous, new, [5, 15], [10], 0, painting=painting)
    assert np.nonzero((out != previous).any(axis=(1, 2)))[0].tolist() == [8, 9, 10, 11, 12]
    assert gap_slices(painting, [5, 15], [10], 0, 255) == []
    painting[15, 0, 0] = 1  # label 1 painted above too: a gap in label 1
    assert gap_slices(painting, [5, 15], [10], 0, 255) == [10]
    across = np.moveaxis(painting, 0, 2)  # the same along another axis
    assert gap_slices(across, [5, 15], [10], 2, 255) == [10]
    painting[15] = previous[15]
    assert gap_slices(np.moveaxis(painting, 0, 2), [5, 15], [10], 2, 255) == []


def test_slice_agreement_counts_painted_voxels_with_the_same_label():
    painting = np.array([[1, 1, 0, 255], [2, 2, 0, 255]], np.uint8)
    result = np.array([[1, 1, 0, 1], [2, 1, 0, 2]], np.uint8)  # 3 of 4 painted labels; the unpainted column ignored
    # label 1: 2 of the result's 3 against 2 painted; label 2: 1 of 1 against 2 painted: the lower counts
    assert slice_agreement(result, painting, 255) == pytest.approx(min(2 * 2 / (3 + 2), 2 * 1 / (1 + 2)))
    assert slice_agreement(result, painting, None) == 0.0  # 255 counted as a label the result never gives
    large = np.zeros((40, 40), np.uint8)
    large[5:35, 5:35] = 1
    missed = large.copy()
    missed[15:20, 15:20] = 2  # a small second label painted where the result has the first: not confirmed
    assert slice_agreement(large, missed, 255) == 0.0
    assert slice_agreement(np.zeros((3, 3)), np.zeros((3, 3)), 255) == 1.0  # both empty: nothing to disagree on
    assert CONFIRMED_DICE == pytest.approx(0.90)


def test_the_changing_box_runs_from_the_painted_slice_below_the_added_one_to_the_one_above():
    painted = {0: [3, 8, 15]}
    assert changing_box((28, 20, 20), painted, {0: [5]}) == (3, 0, 0, 9, 20, 20)
    assert changing_box((28, 20, 20), painted, {0: [20]}) == (15, 0, 0, 28, 20, 20)  # beyond: to the end
    assert changing_box((28, 20, 20), painted, {0: [1, 10]}) == (0, 0, 0, 16, 20, 20)
    assert changing_box((28, 20, 20), painted, {1: [4]}) == (0, 0, 0, 28, 20, 20)  # across: nothing painted on it
