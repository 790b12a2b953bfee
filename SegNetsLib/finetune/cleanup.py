"""Clean-up of a network trained from scratch on one volume's annotated slices.

Such a network has seen only the annotated slices, so its output is limited to where it can know
something (near the annotated slices and the painted structure) and to the components the user painted.
Arrays are [k, j, i]; spacing is (i, j, k) mm.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from SegNetsLib.card.card import ModelCard, Postprocessing
from SegNetsLib.core.box import Box, mask_box
from SegNetsLib.inference.postprocess import postprocess

SINGLE_SLICE_MARGIN = 3  # slices kept on each side of a lone annotated slice, at least
# beyond a lone painted slice the structure is taken to reach this many times the painting's equivalent diameter
# (that of a disc of its area, mm): on the 42 TUNE structure-axes whose bin-centre slice holds the structure, its
# shorter reach from that slice over that diameter had median 0.78 (quartiles 0.44 and 1.38); a lone slice then
# painted at the bin centre, round 2 at the suggested slice (16 TUNE structure-axes): mean Dice 0.533 -> 0.778
SINGLE_SLICE_REACH = 1.0


def clean_scratch_prediction(
    labelmap: np.ndarray,
    slices: Mapping[int, Sequence[int]],
    labels: np.ndarray,
    weight: np.ndarray,
    spacing: Sequence[float],
    values: Sequence[int],
) -> None:
    """In place, the clean-up of a from-scratch network's labelmap: :func:`limit_to_annotated_range`,
    :func:`keep_annotated_components`, then holes filled (``values``: the card's label values)."""
    limit_to_annotated_range(labelmap, slices, np.where(weight > 0, labels, 0), spacing)
    keep_annotated_components(labelmap, labels, weight)
    postprocess(labelmap, list(values), Postprocessing(fill_holes=True))


def annotated_range(indices: Sequence[int], length: int, lone_margin: int = SINGLE_SLICE_MARGIN) -> slice:
    """The slices along one axis of ``length`` where the structure painted on annotated slices ``indices`` can lie:
    the annotated ones and, on each side, g - 1 more, g being the largest gap between consecutive ones (a lone
    slice: ``lone_margin`` more, :func:`lone_slice_margin`). A user who paints every g-th slice would have painted
    the slice g beyond the outer one had the structure reached it; one who paints consecutive slices has painted it
    all."""
    ordered = sorted(set(int(i) for i in indices))
    margin = max((b - a - 1 for a, b in zip(ordered, ordered[1:])), default=lone_margin)
    return slice(max(0, ordered[0] - margin), min(length, ordered[-1] + margin + 1))


def lone_slice_margin(painted: np.ndarray, spacing: Sequence[float], axis: int) -> int:
    """Slices kept on each side of a lone painted slice along array ``axis`` (spacing (i, j, k) mm of the [k, j, i]
    volume): :data:`SINGLE_SLICE_REACH` times the equivalent diameter (mm) of the painted foreground, the nonzero
    voxels of ``painted`` (the volume's painted labels, or the painted slice's alone), in slices of that axis, at
    least :data:`SINGLE_SLICE_MARGIN`."""
    spacing_kji = tuple(float(s) for s in spacing)[::-1]
    pixel_mm2 = float(np.prod([spacing_kji[a] for a in range(3) if a != axis]))
    diameter_mm = 2.0 * np.sqrt(np.count_nonzero(painted) * pixel_mm2 / np.pi)
    return max(SINGLE_SLICE_MARGIN, int(round(SINGLE_SLICE_REACH * diameter_mm / spacing_kji[axis])))


def painted_range(
    indices: Sequence[int], length: int, labels: np.ndarray | None, spacing: Sequence[float], axis: int
) -> slice:
    """:func:`annotated_range` of the annotated slices ``indices`` along array ``axis`` (of ``length``), a lone one's
    margin set by :func:`lone_slice_margin` from the painted ``labels`` [k, j, i] (0 elsewhere; spacing (i, j, k)
    mm) where there are some."""
    lone = len(set(indices)) == 1 and labels is not None and labels.any()
    margin = lone_slice_margin(labels, spacing, axis) if lone else SINGLE_SLICE_MARGIN
    return annotated_range(indices, length, margin)


def without_postprocessing(card: ModelCard) -> ModelCard:
    """A copy of ``card`` whose prediction is not post-processed (clean-up comes first)."""
    plain = copy.deepcopy(card)
    plain.postprocessing = Postprocessing()
    return plain


def known_box(
    shape: Sequence[int],
    slices: Mapping[int, Sequence[int]],
    labels: np.ndarray | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> Box | None:
    """The box of a [k, j, i] volume of ``shape`` where a network trained on these slices alone knows something.

    Along the slice axis: :func:`annotated_range` (beyond the outer annotated slices by one slice less than the
    largest gap between consecutive ones; beyond a lone one by :func:`lone_slice_margin` with ``labels``). In-plane (with ``labels``, the painted
    labels): the bounding box of the annotated foreground widened by a quarter of its size and at least 20 mm
    (spacing (i, j, k) mm). Slices along several axes (an axial and a coronal one, say) each show the structure's
    extent across their own axis: the painted foreground's box widened so along every axis (None without ``labels``
    holding any).
    """
    axes = [axis for axis, indices in slices.items() if indices]
    several = len(axes) > 1
    if not axes or (several and (labels is None or not labels.any())):
        return None
    axis = axes[0]
    keep = [slice(0, int(n)) for n in shape]
    keep[axis] = painted_range(slices[axis], int(shape[axis]), labels, spacing, axis)
    if labels is not None and labels.any():
        spacing_kji = tuple(spacing)[::-1]
        for other in (a for a in range(3) if several or a != axis):
            present = np.nonzero(labels.any(axis=tuple(a for a in range(3) if a != other)))[0]
            low, high = int(present.min()), int(present.max()) + 1
            widen = max(int(round(20.0 / spacing_kji[other])), (high - low) // 4)
            keep[other] = slice(max(0, low - widen), min(int(shape[other]), high + widen))
    return Box.from_slices(keep)


def limit_to_annotated_range(
    labelmap: np.ndarray,
    slices: Mapping[int, Sequence[int]],
    labels: np.ndarray | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> None:
    """Clear ``labelmap`` [k, j, i] in place outside :func:`known_box` (nothing when it has none)."""
    box = known_box(labelmap.shape, slices, labels, spacing)
    if box is None:
        return
    mask = np.ones(labelmap.shape, dtype=bool)
    mask[box.slices] = False
    labelmap[mask] = 0


def keep_annotated_components(labelmap: np.ndarray, labels: np.ndarray, weight: np.ndarray) -> None:
    """In place: keep only the 26-connected components of each label that hold an annotated voxel of that
    label (a network trained on one volume's slices marks look-alikes elsewhere; the user's structure is the
    one they painted). A label none of whose components touches its annotation is left as it is."""
    for value in np.unique(labels[weight > 0]):
        if value == 0:
            continue
        box = mask_box(labelmap == value)  # its components lie inside: label only there
        if box is None:
            continue
        around = box.slices
        part = labelmap[around]  # a view: cleared in place
        mask = part == value
        components, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
        touched = np.unique(components[(weight[around] > 0) & (labels[around] == value) & mask])
        touched = touched[touched > 0]
        if count > 1 and touched.size:
            part[mask & ~np.isin(components, touched)] = 0
