"""Fine-tuning from slices painted with a ball-shaped brush (3D Slicer's Sphere brush), whose paint reaches the
slices either side of the one painted on."""

from __future__ import annotations

import numpy as np
from finetune_helpers import TINY, ellipsoid_phantom
from scipy import ndimage

from SegNetsLib.evaluation.metrics import dice
from SegNetsLib.finetune.run import finetune


def _sphere_brush(truth: np.ndarray, slices: list[int], radius: int) -> np.ndarray:
    """``truth`` (uint8 [k, j, i]) painted on ``slices`` along axis 0 with balls of ``radius`` voxels centred on the
    slice where the structure lies at least ``radius`` inside: the paint reaches ``radius`` slices either side."""
    ball = np.linalg.norm(np.indices((2 * radius + 1,) * 3) - radius, axis=0) <= radius
    centres = np.zeros(truth.shape, dtype=bool)
    for s in slices:
        centres[s] = ndimage.distance_transform_edt(truth[s]) >= radius
    painted = ndimage.binary_dilation(centres, ball)
    painted[slices] |= truth[slices] > 0
    return painted.astype(np.uint8)


def test_sphere_brush_strokes_train_on_the_slices_painted_on_and_keep_all_their_paint():
    image, truth = ellipsoid_phantom((24, 24, 24))
    labels = _sphere_brush(truth, [8, 16], radius=2)
    assert labels[[6, 7, 9, 10, 14, 15, 17, 18]].any(axis=(1, 2)).all()  # the balls' caps, 2 slices either side
    result = finetune(image, image.with_array(labels), "unet3d", TINY)
    # before, the caps' slices were annotated too (10 slices): the structure unpainted on them learned as background
    assert result.slices == {0: [8, 16], 1: [], 2: []}
    assert (result.labelmap.array[labels == 1] == 1).all()  # the caps' paint is kept
    assert any("Sphere brush" in note and "kept in the result" in note for note in result.notes)
    clean = np.zeros_like(truth)
    clean[[8, 16]] = truth[[8, 16]]
    painted_clean = finetune(image, image.with_array(clean), "unet3d", TINY)
    assert dice(result.labelmap.array == 1, painted_clean.labelmap.array == 1) > 0.9
