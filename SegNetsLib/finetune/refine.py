"""Boundary refinement of a fine-tuned network's labelmap with a seeded random walker (scikit-image).

The network places each structure; the random walker settles the boundary from the image's edges.
Seeds: voxels deeper than ``inner_mm`` inside a predicted structure keep its class (for a structure
thinner than that, such as a vessel, voxels deeper than ``inner_fraction`` of its largest depth, so its
core stays a seed); voxels farther than ``outer_mm`` from every predicted structure are background; every
annotated voxel is a seed of the user's label. Only the band in between is decided, inside the box around it:
each voxel takes the class with the highest ``(1 - network_weight) * random-walker probability +
network_weight * (1 if the network gave it that class else 0)``. With the default weight 0.2 the network's
labelmap moves the threshold on the walker's probability from 0.5 to 0.375 inside its structure and 0.625
outside: the image's edges decide, and where they say little the network does.
Arrays are [k, j, i] (image may be [c, k, j, i]); spacing is (i, j, k) mm.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage
from skimage.segmentation import random_walker

from SegNetsLib.core.progress import CancelToken
from SegNetsLib.finetune.cleanup import limit_to_annotated_range

NETWORK_WEIGHT = 0.2
"""Weight of the network's labelmap against the random walker's probabilities in the band. Chosen on saved
k = 3 network labelmaps of the sparse benchmark's cases (BraTS pretrained folds: mean Dice 0.866 with 0, 0.891
with 0.2, 0.888 with 0.3; the 10 from-scratch structures: 0.900 with 0, 0.897 with 0.2, 0.888 with 0.3; README)."""


def refine_result(
    image: np.ndarray,
    labelmap: np.ndarray,
    annotation: np.ndarray,
    weight: np.ndarray,
    spacing: Sequence[float],
    scratch_slices: Mapping[int, Sequence[int]] | None = None,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """The fine-tuning result's last step: :func:`refine_with_random_walker`, and for a network trained from
    scratch on ``scratch_slices`` (axis -> indices) the annotated range its labelmap was limited to, which the
    random walker must not leave either (it spread a 3-slice lesion over 13 slices once). Annotated voxels
    keep the user's label: they are seeds, and the range holds every annotated structure."""
    out = refine_with_random_walker(image, labelmap, annotation, weight, spacing, cancel=cancel)
    if scratch_slices is not None:
        limit_to_annotated_range(out, scratch_slices, np.where(weight > 0, annotation, 0), spacing)
    return out


def refine_with_random_walker(
    image: np.ndarray,
    labelmap: np.ndarray,
    annotation: np.ndarray,
    weight: np.ndarray,
    spacing: Sequence[float],
    inner_mm: float = 15.0,
    inner_fraction: float = 0.65,
    outer_mm: float = 24.0,
    beta: float = 130.0,
    network_weight: float = NETWORK_WEIGHT,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """The refined labelmap (same values and dtype as ``labelmap``); annotated voxels keep the user's label.
    ``network_weight`` (below 0.5, so that every seed keeps its class) blends the network's labelmap into the band."""
    sampling = tuple(float(s) for s in spacing)[::-1]
    values = [int(v) for v in np.unique(labelmap) if v != 0]
    annotated_values = [int(v) for v in np.unique(annotation[weight > 0]) if v != 0]
    values = sorted(set(values) | set(annotated_values))
    if not values:
        return labelmap.copy()
    seeds = np.zeros(labelmap.shape, dtype=np.int32)
    anything = labelmap > 0
    far = (
        ndimage.distance_transform_edt(~anything, sampling=sampling) > outer_mm
        if anything.any()
        else np.ones_like(anything)
    )
    seeds[far] = 1
    for index, value in enumerate(values, start=2):
        inside = labelmap == value
        if inside.any():
            depth = ndimage.distance_transform_edt(inside, sampling=sampling)  # mm to the structure's boundary
            seeds[depth > min(inner_mm, inner_fraction * float(depth.max()))] = index
    annotated = weight > 0
    seeds[annotated] = 1  # annotated background (and any value not in ``values``)
    for index, value in enumerate(values, start=2):
        seeds[annotated & (annotation == value)] = index
    undecided = seeds == 0
    if not undecided.any():
        return _labels_from_seeds(seeds, values, labelmap.dtype)
    if cancel:
        cancel.raise_if_cancelled()
    box = tuple(slice(max(0, int(c.min()) - 1), int(c.max()) + 2) for c in np.nonzero(undecided))
    data = image[(slice(None), *box)] if image.ndim == 4 else image[box]
    data = data.astype(np.float64)
    data = (data - data.mean()) / max(float(data.std()), 1e-6)
    with warnings.catch_warnings():  # scikit-image warns about solver tolerances; the labels are still right
        warnings.simplefilter("ignore", UserWarning)
        probabilities = random_walker(
            data,
            seeds[box],
            beta=beta,
            mode="cg_j",
            tol=1e-3,
            channel_axis=0 if image.ndim == 4 else None,
            return_full_prob=True,
        )
    present = [int(index) for index in np.unique(seeds[box]) if index > 0]  # the walker's channels, in order
    result = seeds.copy()
    result[box] = _with_network_prior(probabilities, present, labelmap[box], values, network_weight)
    return _labels_from_seeds(result, values, labelmap.dtype)


def _with_network_prior(
    probabilities: np.ndarray, present: list[int], labelmap: np.ndarray, values: list[int], weight: float
) -> np.ndarray:
    """Seed indices (1 = background, 2.. = values) [k, j, i]: the walker's probabilities [len(present), k, j, i]
    (one channel per seed index in ``present``; a seed has probability 1 for its own index) blended with the
    network's labelmap [k, j, i] (background 0, ``values``)."""
    scores = np.zeros((1 + len(values), *labelmap.shape), dtype=np.float32)
    scores[np.array(present) - 1] = (1.0 - weight) * probabilities
    for index, value in enumerate([0, *values]):
        scores[index] += weight * (labelmap == value)
    return (np.argmax(scores, axis=0) + 1).astype(np.int32)


def _labels_from_seeds(indices: np.ndarray, values: list[int], dtype) -> np.ndarray:
    """Random-walker indices (1 = background, 2.. = values) back to label values."""
    out = np.zeros(indices.shape, dtype=dtype)
    for index, value in enumerate(values, start=2):
        out[indices == index] = value
    return out
