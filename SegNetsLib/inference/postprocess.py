"""Optional clean-up of a predicted labelmap, as a model card asks (``card.postprocessing``)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from SegNetsLib.card.card import Postprocessing
from SegNetsLib.core.box import mask_box

_FULL_CONNECTIVITY = ndimage.generate_binary_structure(3, 3)  # 26-neighbourhood


def keep_largest_component(labelmap: np.ndarray, value: int) -> None:
    """In place: voxels of label ``value`` outside its largest 26-connected component become background."""
    mask = labelmap == value
    components, count = ndimage.label(mask, structure=_FULL_CONNECTIVITY)
    if count <= 1:
        return
    largest = int(np.argmax(np.bincount(components.ravel())[1:])) + 1
    labelmap[mask & (components != largest)] = 0


def fill_holes(labelmap: np.ndarray, value: int) -> None:
    """In place: background cavities fully enclosed by label ``value`` (in 3D) get that label."""
    mask = labelmap == value
    if not mask.any():
        return
    filled = ndimage.binary_fill_holes(mask)
    labelmap[filled & (labelmap == 0)] = value


def postprocess(labelmap: np.ndarray, values: list[int], settings: Postprocessing) -> np.ndarray:
    """Apply the card's post-processing to a labelmap [k, j, i] in place, label by label; returns it.

    Each label is cropped to its bounding box first, so the cost follows the structures, not the volume.
    """
    if not (settings.keep_largest_component or settings.fill_holes):
        return labelmap
    for value in values:
        box = mask_box(labelmap == value)
        if box is None:
            continue
        region = labelmap[box.slices]  # a view: edits land in labelmap
        if settings.keep_largest_component:
            keep_largest_component(region, value)
        if settings.fill_holes:
            fill_holes(region, value)
    return labelmap
