"""A structure painted on slices along two axes (an axial and a coronal one): the new network's result, the clean-up
and the walkers stay where the painting shows the structure, as for slices along one axis."""

from __future__ import annotations

import dataclasses

import numpy as np
from finetune_helpers import TINY, ellipsoid_phantom

from SegNetsLib.evaluation.metrics import dice
from SegNetsLib.finetune.cleanup import known_box
from SegNetsLib.finetune.run import finetune


def _axial_and_coronal(truth: np.ndarray) -> np.ndarray:
    labels = np.zeros_like(truth)
    labels[12] = truth[12]  # axial slice 12
    labels[:, 20] = truth[:, 20]  # coronal slice 20
    return labels


def test_the_known_box_of_slices_along_two_axes_is_the_painted_structure_widened():
    _, truth = ellipsoid_phantom((24, 40, 40))
    labels = _axial_and_coronal(truth)
    box = known_box(truth.shape, {0: [12], 1: [20], 2: []}, labels, (2.0, 2.0, 2.0))
    assert box is not None  # before: None, and the network's result was kept over the whole volume
    for axis in range(3):
        held = np.flatnonzero(labels.any(axis=tuple(a for a in range(3) if a != axis)))
        assert box.start[axis] <= held[0] - 10 or box.start[axis] == 0  # widened by 20 mm (10 voxels)
        assert box.stop[axis] >= held[-1] + 11 or box.stop[axis] == truth.shape[axis]
    assert known_box(truth.shape, {0: [12], 1: [20], 2: []}) is None  # nothing painted to go by


def test_slices_along_two_axes_segment_the_structure_not_the_volume():
    image, truth = ellipsoid_phantom((24, 40, 40))
    labels = _axial_and_coronal(truth)
    result = finetune(image, image.with_array(labels), "unet3d", TINY)
    assert result.slices == {0: [12], 1: [20], 2: []}
    assert np.array_equal(result.labelmap.array[labels > 0], labels[labels > 0])
    assert dice(result.labelmap.array == 1, truth > 0) > 0.8
    far = np.ones(truth.shape, bool)  # farther than 20 mm (10 voxels) beyond the painted structure's box
    far[:, 2:39, 3:38] = False
    assert not result.network_labelmap[far].any() and not result.labelmap.array[far].any()


def test_slices_along_two_axes_fall_back_on_the_walker_when_the_refinement_is_skipped():
    """With too short a time limit the result is the walker's own from the painted slices, not the barely trained
    network's labels over the whole volume (the test CT's spleen, an axial and a coronal slice, 12 s: Dice 0.03)."""
    image, truth = ellipsoid_phantom((24, 40, 40))
    options = dataclasses.replace(TINY, iterations=None, time_limit_s=0.01)
    result = finetune(image, image.with_array(_axial_and_coronal(truth)), "unet3d", options)
    assert any("the result is the random walker's own" in note for note in result.notes), result.notes
    assert dice(result.labelmap.array == 1, truth > 0) > 0.8
