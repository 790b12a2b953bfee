"""A prediction on the network grid brought back to the input volume's own grid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from SegNetsLib.core.box import Box
from SegNetsLib.core.volume import Volume
from SegNetsLib.inference.preprocess import Preprocessed, to_source_grid


def labelmap_on_source(labelmap: np.ndarray, pre: Preprocessed, source_boxes: Sequence[Box]) -> Volume:
    """Network-grid labelmap (d, h, w) -> uint8 labelmap (k, j, i) on the input grid, resampled only inside
    ``source_boxes``."""
    out = np.zeros(pre.source.shape_kji, dtype=np.uint8)
    for box in source_boxes:
        region = to_source_grid(labelmap, pre, labels=True, box=box)
        np.copyto(out[box.slices], region, where=region != 0)
    return pre.source.with_array(out)


def probabilities_on_source(probs: np.ndarray, pre: Preprocessed) -> Volume:
    """Network-grid probabilities (C, d, h, w) -> float32 (C, k, j, i) on the input grid, resampled into the
    output channel by channel (one channel's copy at a time, never a second set of all channels)."""
    out = np.empty((len(probs), *pre.source.shape_kji), np.float32)
    for target, channel in zip(out, probs):
        target[...] = to_source_grid(channel, pre, labels=False)
    return pre.source.with_array(out)
