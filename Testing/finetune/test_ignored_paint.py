"""Voxels painted with the ignore value (a stroke, the rest of the structure left unlabeled): no walker takes them
for background."""

from __future__ import annotations

import dataclasses

import numpy as np
from finetune_helpers import TINY, ellipsoid_phantom

from SegNetsLib.evaluation.metrics import dice
from SegNetsLib.finetune.run import finetune


def _strokes(truth: np.ndarray, slices=(4, 8, 12), ignore_value: int = 255) -> np.ndarray:
    """The structure painted on ``slices`` over its half i < 12 only, its other half marked ``ignore_value``."""
    labels = np.zeros_like(truth)
    for s in slices:
        labels[s] = np.where(truth[s] > 0, ignore_value, 0)
        labels[s, :, :12][truth[s, :, :12] > 0] = 1
    return labels


def test_a_stroke_with_the_rest_marked_unlabeled_gives_the_whole_structure():
    image, truth = ellipsoid_phantom()
    labels = _strokes(truth)
    result = finetune(image, image.with_array(labels), "unet3d", TINY)
    assert np.array_equal(result.labelmap.array[labels == 1], labels[labels == 1])
    # the walkers decide the unlabeled half from the image; before, they seeded it as background (Dice about 0.6)
    assert dice(result.labelmap.array == 1, truth > 0) > 0.85
    whole = np.where(np.isin(labels, (1, 255)), 1, 0).astype(np.uint8)  # the same slices painted whole
    painted_whole = finetune(image, image.with_array(whole), "unet3d", TINY)
    assert dice(result.labelmap.array == 1, painted_whole.labelmap.array == 1) > 0.9


def test_the_walker_alone_leaves_unlabeled_voxels_to_the_image():
    """The walker's own result from the painted slices (the result when the refinement is skipped) with half of
    each painted cross-section unlabeled finds the whole ellipsoid, as when it is painted whole."""
    image, truth = ellipsoid_phantom()
    labels = _strokes(truth)
    options = dataclasses.replace(TINY, iterations=None, time_limit_s=0.01)  # refinement skipped: the walker alone
    result = finetune(image, image.with_array(labels), "unet3d", options)
    assert any(note.startswith("boundary refinement skipped") for note in result.notes)
    assert dice(result.labelmap.array == 1, truth > 0) > 0.85
