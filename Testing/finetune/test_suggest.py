"""Which slice to paint next (SegNetsLib.finetune.suggest): candidates, scores, measures."""

from __future__ import annotations

import numpy as np
import pytest

from SegNetsLib.finetune.suggest import (
    DEFAULT_MEASURE,
    candidate_slices,
    entropy,
    painted_trend,
    reach,
    suggest_slice,
    uncertainty_map,
)


def test_the_gap_middle_that_brings_the_disagreement_closest_to_a_painting_is_suggested():
    network = np.zeros((12, 10, 10), np.uint8)
    network[2:10, 3:7, 3:7] = 1
    refined = network.copy()
    refined[6, 2:8, 2:8] = 1  # 20 voxels differ on slice 6
    refined[4, 3, 3] = 0  # 1 voxel on slice 4
    refined[9, 3, 3:7] = 0  # 4 voxels on slice 9, next to the painted slice 8
    suggestion = suggest_slice(network, refined, {0: [3, 8]}, "disagreement")
    assert suggestion is not None and (suggestion.axis, suggestion.index) == (0, 6)
    # 4 to 7 lie between 3 and 8, so both middles 5 and 6 are candidates: 6 brings slice 6 two slices closer
    # (20 x 2), 5 one (20 x 1); slice 9 (beyond 8) brings slice 9 one slice closer (4 x 1); slice 2 (before 3)
    # reaches nothing that differs
    assert suggestion.score == 40
    assert suggestion.measure == "disagreement"
    assert suggestion.describe() == "slice 6 along axis 0, halfway between the painted slices 3 and 8"


def test_candidates_are_the_middles_of_the_gaps_and_of_the_stretches_beyond_the_painting():
    network = np.zeros((20, 6, 6), np.uint8)
    network[5:9, 2:4, 2:4] = 1
    # no gap between 6 and 7; the result reaches 5 before them and 8 after them
    assert candidate_slices([network], [7, 6], 0) == [5, 8]
    wider = network.copy()
    wider[14:18, 2, 2] = 1
    assert candidate_slices([network, wider], [2, 10], 0) == [6, 14]  # nothing of the result before 2
    assert candidate_slices([network], [], 0) == []
    assert candidate_slices([network], [2, 9], 0) == [5, 6]  # 3 to 8 lie between: two middles
    moved = np.moveaxis(network, 0, 2)
    assert candidate_slices([moved], [6, 7], 2) == [5, 8]


def test_reach_counts_the_slices_a_candidate_brings_closer():
    # one painted slice at 0: painting 6 brings slice 4 two slices closer (4 -> 2), 5 four, 6 to 9 six each
    assert reach(np.ones(10), [0], 6) == 2 + 4 + 6 * 4
    assert reach(np.ones(10), [0, 6], 6) == 0  # already painted: brings nothing closer


def test_the_wide_gap_wins_unless_the_result_lies_beyond_the_painting():
    network = np.zeros((20, 8, 8), np.uint8)
    network[:, 2:4, 2:4] = 1  # 4 voxels on every slice 0..19, painted 5 and 15
    # middles 10, 2 and 17 bring the result 13, 10 and 6 slice-steps closer (x 4 voxels)
    suggestion = suggest_slice(network, network, {0: [5, 15]})
    assert (suggestion.index, suggestion.measure, suggestion.score) == (10, DEFAULT_MEASURE, 13 * 4)
    network[0:5, 4:8, 4:8] = 1  # 16 more voxels on each slice before the painting: 10 x 20 beats 13 x 4
    beyond = suggest_slice(network, network, {0: [5, 15]})
    assert beyond.index == 2 and beyond.reason() == "beyond the painted slice 5"


def test_painted_area_weighs_a_gap_the_result_misses_by_its_paintings():
    network = np.zeros((20, 8, 8), np.uint8)
    network[[5, 15], 2:6, 2:6] = 1  # painted slices 5 and 15: 16 voxels each; the result misses 6..14
    network[0:5, 2:4, 2:4] = 1  # and holds 4 voxels on each slice before 5
    # area: the gap holds nothing, so the stretch before 5 wins (its middle 2: 10 slice-steps x 4)
    assert suggest_slice(network, network, {0: [5, 15]}, "area").index == 2
    # painted-area: each slice of the gap counts 16 (the paintings interpolated): its middle brings 13 x 16
    suggestion = suggest_slice(network, network, {0: [5, 15]}, "painted-area")
    assert (suggestion.index, suggestion.score) == (10, 13 * 16)
    moved = np.moveaxis(network, 0, 2)  # the same along the last axis, painted slices given unsorted
    assert suggest_slice(moved, moved, {2: [15, 5]}, "painted-area").index == 10
    trend = painted_trend(np.array([0.0, 2, 0, 0, 8, 0]), [1, 4])
    assert trend.tolist() == [0, 2, 4, 6, 8, 0]


def test_without_disagreement_the_area_decides():
    network = np.zeros((8, 6, 6), np.uint8)
    network[2:6, 2:4, 2:4] = 1
    # candidates 2 (before 3) and 4 (after it): 4 brings slices 4 and 5 closer (4 + 4 voxels), 2 only slice 2
    suggestion = suggest_slice(network, network.copy(), {0: [3]}, "disagreement")
    assert suggestion is not None and suggestion.measure == "area" and suggestion.index == 4
    empty = np.zeros_like(network)
    assert suggest_slice(empty, empty, {0: [3]}) is None


def test_entropy_is_highest_where_the_network_hesitates():
    probabilities = np.zeros((2, 1, 1, 3), np.float32)
    probabilities[:, 0, 0, 0] = (1.0, 0.0)
    probabilities[:, 0, 0, 1] = (0.5, 0.5)
    probabilities[:, 0, 0, 2] = (0.9, 0.1)
    value = entropy(probabilities)[0, 0]
    assert value[0] < 1e-3 and value[1] == pytest.approx(np.log(2), rel=1e-4) and value[0] < value[2] < value[1]


def test_unknown_measure_and_missing_inputs_are_refused():
    network = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="unknown uncertainty measure"):
        uncertainty_map("guess", network, network)
    with pytest.raises(ValueError, match="probabilities"):
        uncertainty_map("entropy", network, network)
    with pytest.raises(ValueError, match="network"):
        suggest_slice(network, network, {0: [1]}, "tta")
    with pytest.raises(ValueError, match="mirrored"):
        uncertainty_map("tta", network, network)
