"""Voxels painted with the ignore value (a stroke, the rest of the structure left unlabeled): no walker takes them
for background."""

from __future__ import annotations

import dataclasses

import numpy as np

from SegNetsLib.core.volume import Volume
from SegNetsLib.evaluation.metrics import dice
from SegNetsLib.finetune.options import FinetuneOptions
from SegNetsLib.finetune.run import finetune

TINY = FinetuneOptions(
    iterations=3,
    device="cpu",
    patch_size=(8, 16, 16),
    batch_size=1,
    scratch_downsample=1,
    scratch_build_args={"base_channels": 2, "levels": 2},
    threads=1,
)


def _phantom(shape=(16, 24, 24)) -> tuple[Volume, np.ndarray]:
    """A bright ellipsoid (class 1) in noise, 2 mm voxels; the image and the full truth [k, j, i]."""
    rng = np.random.default_rng(0)
    z, y, x = np.indices(shape)
    truth = (((z - 8) / 6) ** 2 + ((y - 12) / 8) ** 2 + ((x - 12) / 7) ** 2 <= 1).astype(np.uint8)
    image = (100.0 * truth + rng.normal(0, 10, shape)).astype(np.float32)
    return Volume(image, spacing=(2.0, 2.0, 2.0)), truth


def _strokes(truth: np.ndarray, slices=(4, 8, 12), ignore_value: int = 255) -> np.ndarray:
    """The structure painted on ``slices`` over its half i < 12 only, its other half marked ``ignore_value``."""
    labels = np.zeros_like(truth)
    for s in slices:
        labels[s] = np.where(truth[s] > 0, ignore_value, 0)
        labels[s, :, :12][truth[s, :, :12] > 0] = 1
    return labels


def test_a_stroke_with_the_rest_marked_unlabeled_gives_the_whole_structure():
    image, truth = _phantom()
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
    image, truth = _phantom()
    labels = _strokes(truth)
    options = dataclasses.replace(TINY, iterations=None, time_limit_s=0.01)  # refinement skipped: the walker alone
    result = finetune(image, image.with_array(labels), "unet3d", options)
    assert any(note.startswith("boundary refinement skipped") for note in result.notes)
    assert dice(result.labelmap.array == 1, truth > 0) > 0.85
