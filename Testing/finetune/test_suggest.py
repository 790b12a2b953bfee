"""Which slice to paint next (SegNetsLib.finetune.suggest): candidates, scores, measures."""

from __future__ import annotations

import numpy as np
import pytest

from SegNetsLib.finetune.suggest import (
    candidate_slices,
    entropy,
    pick_slice,
    suggest_slice,
    uncertainty_map,
)


def test_the_slice_where_network_and_refinement_disagree_most_far_from_the_painting_is_suggested():
    network = np.zeros((12, 10, 10), np.uint8)
    network[2:10, 3:7, 3:7] = 1
    refined = network.copy()
    refined[6, 2:8, 2:8] = 1  # 20 voxels differ on slice 6
    refined[4, 3, 3] = 0  # 1 voxel on slice 4
    refined[9, 3, 3:7] = 0  # 4 voxels on slice 9, next to the painted slice 8
    suggestion = suggest_slice(network, refined, {0: [3, 8]})
    assert suggestion is not None and (suggestion.axis, suggestion.index) == (0, 6)
    # score: uncertain voxels times the distance to the nearest painted slice (slice 6: 20 x 2)
    assert suggestion.score == 40 and suggestion.share == pytest.approx(40 / (40 + 1 + 4))
    assert suggestion.measure == "disagreement"
    assert "slice 6 along axis 0" in suggestion.describe()


def test_painted_slices_are_never_suggested_and_candidates_follow_the_result():
    network = np.zeros((20, 6, 6), np.uint8)
    network[5:9, 2:4, 2:4] = 1
    candidates = candidate_slices([network], {0: [6, 7]}, 0, 20)
    # the result's extent 5..8 one slice wider, and the clean-up's range 5..8 around the painted slices
    assert np.nonzero(candidates)[0].tolist() == [4, 5, 8, 9]
    uncertainty = np.zeros(network.shape, np.float32)
    uncertainty[6] = 100.0  # a painted slice: left out
    uncertainty[15] = 50.0  # outside every candidate
    uncertainty[9, 0, 0] = 1.0
    assert pick_slice(uncertainty, candidates, 0, "disagreement", [6, 7]).index == 9


def test_without_disagreement_the_result_farthest_from_the_painting_is_suggested():
    network = np.zeros((8, 6, 6), np.uint8)
    network[2:6, 2:4, 2:4] = 1
    suggestion = suggest_slice(network, network.copy(), {0: [3]})
    assert suggestion is not None and suggestion.measure == "area" and suggestion.index == 5
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
