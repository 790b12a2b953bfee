"""RoI localization: from a coarse whole-volume prediction to extended boxes on the network grid.

The coarse pass itself (the model on a down-sampled volume, 3D RU-Net's Global Image Encoder mask,
or a locator model's labelmap on the input grid) is run by :mod:`SegNetsLib.inference.predictor`; this module
turns its output into boxes: a foreground mask per label (one for all labels of a locator model),
connected components (``SegNetsLib.core.box.find_components``), boxes mapped onto the network grid,
extended by the card's rule (``extend_box``) and merged where they overlap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from SegNetsLib.card.card import RoiSettings
from SegNetsLib.core.box import Box, extend_box, find_components, merge_overlapping
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.inference.preprocess import Preprocessed
from SegNetsLib.nets.runet import ROI_PADDING_VOXELS

log = logging.getLogger(__name__)

MAX_ROIS_PER_LABEL = 10  # 3D RU-Net keeps the 10 largest components per class at test time
MIN_COMPONENT_FRACTION = 0.01  # components smaller than 1 % of a label's largest are noise of the coarse pass
COMPONENT_CONNECTIVITY = 2  # 18-neighbourhood, as 3D RU-Net's localization (skimage connectivity=2)
LOCATORS = ("self", "runet")  # the network locates its own RoIs; any other card value names a locator model


def foreground_masks(logits: torch.Tensor, multi_label: bool) -> list[np.ndarray]:
    """One boolean mask (d, h, w) per label from coarse logits (C, d, h, w).

    Softmax models: voxels whose argmax is label c (channel 0 is background). Multi-label models:
    sigmoid >= 0.5 per channel.
    """
    if multi_label:
        return [(logits[c] >= 0).numpy() for c in range(logits.shape[0])]
    winner = logits.argmax(dim=0)
    return [(winner == c).numpy() for c in range(1, logits.shape[0])]


def boxes_from_masks(
    masks: Sequence[np.ndarray],
    ratio: Sequence[float],
    shape: Sequence[int],
    spacing_kji: Sequence[float],
    settings: RoiSettings,
    name: str = "",
) -> list[Box]:
    """Extended, merged network-grid boxes around the components of coarse ``masks``.

    ratio: network-grid voxels per coarse voxel along (d, h, w); shape: network-grid shape (d, h, w);
    spacing_kji: network-grid spacing in mm along (d, h, w), for ``padding_mm``; name: the volume, for the log.
    """
    return _located_boxes(masks, lambda box: _to_fine(box, ratio, shape), shape, spacing_kji, settings, name)


def boxes_from_labelmap(labels: np.ndarray, pre: Preprocessed, settings: RoiSettings, name: str = "") -> list[Box]:
    """Extended, merged boxes on ``pre``'s network grid around a locator model's labelmap [k, j, i] on the input grid.

    Every nonzero label is foreground: one mask, so touching structures of different labels are one component.
    """
    return _located_boxes([labels != 0], pre.box_from_source, pre.shape, pre.grid.spacing[::-1], settings, name)


def _located_boxes(
    masks: Sequence[np.ndarray],
    to_network: Callable[[Box], Box],
    shape: Sequence[int],
    spacing_kji: Sequence[float],
    settings: RoiSettings,
    name: str = "",
) -> list[Box]:
    """Components of each mask (the largest :data:`MAX_ROIS_PER_LABEL`, none under :data:`MIN_COMPONENT_FRACTION`
    of the largest), their boxes mapped by ``to_network`` onto the network grid of ``shape``, extended and merged.

    Components left out and outside every box (so not segmented) are logged, naming the volume ``name`` (a warning
    when some are beyond the limit): none is skipped silently."""
    boxes, beyond, small = [], [], []
    for mask in masks:
        components = find_components(mask, connectivity=COMPONENT_CONNECTIVITY)
        if not components:
            continue
        smallest = max(1, math.ceil(components[0].area * MIN_COMPONENT_FRACTION))
        kept = [component for component in components if component.area >= smallest]
        small += [to_network(component.box) for component in components if component.area < smallest]
        beyond += [to_network(component.box) for component in kept[MAX_ROIS_PER_LABEL:]]
        for component in kept[:MAX_ROIS_PER_LABEL]:
            boxes.append(extend_roi(to_network(component.box), shape, spacing_kji, settings))
    merged = merge_overlapping(boxes)
    too_many, too_small = (
        sum(not any(b.intersection(m) == b for m in merged) for b in left) for left in (beyond, small)
    )
    if too_many or too_small:
        log.log(
            logging.WARNING if too_many else logging.INFO,
            "%sRoI localization left out %d component(s) the coarse pass found (%d beyond the %d largest of their "
            "label, %d under %g %% of their label's largest); they are not segmented: segment with RoI off to "
            "include them.",
            f"{name}: " if name else "",
            too_many + too_small,
            too_many,
            MAX_ROIS_PER_LABEL,
            too_small,
            100 * MIN_COMPONENT_FRACTION,
        )
    return merged


def _to_fine(box: Box, ratio: Sequence[float], shape: Sequence[int]) -> Box:
    """Coarse-grid box -> the network-grid voxels it covers."""
    starts = [max(0, math.floor(b * r)) for b, r in zip(box.start, ratio)]
    stops = [min(s, math.ceil(b * r)) for b, r, s in zip(box.stop, ratio, shape)]
    return Box(*starts, *stops)


def extend_roi(box: Box, shape: Sequence[int], spacing_kji: Sequence[float], settings: RoiSettings) -> Box:
    """``box`` on a network grid of ``shape`` (d, h, w; spacing ``spacing_kji`` mm) extended by the card's RoI rule."""
    rule = settings.extension
    if rule == "padding":
        padding = tuple(math.ceil(settings.padding_mm / s) for s in spacing_kji)
        return extend_box(box, shape, "padding", padding=padding)
    if rule in ("scale1.5", "scale2"):
        return extend_box(box, shape, "scale", factor=float(rule[len("scale") :]))
    if rule == "fixed":
        if settings.fixed_size is None:
            raise SegNetsError("the model card's RoI extension is 'fixed' but it gives no fixed_size (d, h, w).")
        return extend_box(box, shape, "fixed", size=settings.fixed_size)
    if rule == "official":  # 3D RU-Net's margin of [1, 2, 2] F3 cells, in network voxels (without its off-by-one)
        return extend_box(box, shape, "padding", padding=ROI_PADDING_VOXELS)
    raise SegNetsError(
        f"unknown RoI extension {rule!r} in the model card; choose padding, scale1.5, scale2, fixed or official."
    )
