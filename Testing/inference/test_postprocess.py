"""Card post-processing of a labelmap: largest component and hole filling per label."""

from __future__ import annotations

import numpy as np

from SegNetsLib.card.card import Postprocessing
from SegNetsLib.inference.postprocess import postprocess


def test_keep_largest_component_and_fill_holes_per_label():
    labels = np.zeros((12, 12, 12), np.uint8)
    labels[1:8, 1:8, 1:8] = 3
    labels[3:5, 3:5, 3:5] = 0  # an enclosed cavity
    labels[10, 10, 10] = 3  # a speck
    labels[9:11, 0:2, 0:2] = 4  # another label, untouched
    labels[0, 11, 11] = 4
    out = postprocess(labels.copy(), [3], Postprocessing(keep_largest_component=True, fill_holes=True))
    assert out[10, 10, 10] == 0 and np.all(out[1:8, 1:8, 1:8] == 3)
    assert np.array_equal(out == 4, labels == 4)
    assert np.array_equal(postprocess(labels.copy(), [3, 4], Postprocessing()), labels)
