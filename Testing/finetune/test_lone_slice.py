"""One painted slice (a clinician's first try): how far the result of a new network reaches from it, in mm."""

from __future__ import annotations

import dataclasses

import numpy as np
from finetune_helpers import TINY

from SegNetsLib.core.annotation import weight_map
from SegNetsLib.core.volume import Volume
from SegNetsLib.finetune.cleanup import known_box
from SegNetsLib.finetune.painting_notes import painting_notes
from SegNetsLib.finetune.run import finetune


def _disc(shape, axis: int, index: int, radius_mm: float, in_plane_mm: float) -> np.ndarray:
    """[k, j, i] labels: a disc of ``radius_mm`` painted 1 on slice ``index`` along ``axis``, 0 elsewhere."""
    plane_shape = [n for a, n in enumerate(shape) if a != axis]
    rows, cols = np.indices(plane_shape)
    disc = ((rows - plane_shape[0] / 2) ** 2 + (cols - plane_shape[1] / 2) ** 2) * in_plane_mm**2 <= radius_mm**2
    labels = np.zeros(shape, np.uint8)
    np.moveaxis(labels, axis, 0)[index] = disc
    return labels


def _reach_mm(shape, axis: int, index: int, spacing_kji) -> tuple[float, float]:
    """Millimetres the known box reaches below and above a painted disc of radius 20 mm on slice ``index``."""
    labels = _disc(shape, axis, index, 20.0, spacing_kji[(axis + 1) % 3])
    box = known_box(shape, {axis: [index]}, labels, spacing_kji[::-1])
    return (index - box.start[axis]) * spacing_kji[axis], (box.stop[axis] - 1 - index) * spacing_kji[axis]


def test_a_lone_painted_slice_keeps_the_result_within_the_paintings_size_in_mm_whatever_the_slice_spacing():
    """The same 40 mm disc painted on a thin slice (0.78 mm) and on a thick one (6.5 mm): the result may reach
    about its diameter (40 mm) from it either way, not 3 slices (2.3 mm against 19.5 mm, pyr_brain1's lesion
    painted on one coronal slice: Dice 0.365, on one axial slice 0.545)."""
    thin = _reach_mm((160, 64, 64), 0, 80, (0.78, 1.25, 1.25))
    thick = _reach_mm((40, 64, 64), 0, 20, (6.5, 1.25, 1.25))
    for below, above in (thin, thick):
        assert 36.0 <= below <= 43.0 and 36.0 <= above <= 43.0
    coronal = _reach_mm((64, 160, 64), 1, 80, (1.25, 0.78, 1.25))  # the axis need not be the first
    assert 36.0 <= min(coronal) and max(coronal) <= 43.0


def test_a_small_lone_painting_still_keeps_three_slices_and_the_volume_bounds_it():
    from SegNetsLib.finetune.cleanup import lone_slice_margin

    labels = _disc((30, 64, 64), 0, 15, 2.0, 1.0)  # 4 mm across on 3 mm slices: under the floor
    assert lone_slice_margin(labels, (1.0, 1.0, 3.0), 0) == 3
    assert known_box(labels.shape, {0: [15]}, labels, (1.0, 1.0, 3.0)).slices[0] == slice(12, 19)
    big = _disc((30, 64, 64), 0, 15, 30.0, 1.0)  # 60 mm across on 1 mm slices: the whole axis
    assert known_box(big.shape, {0: [15]}, big, (1.0, 1.0, 1.0)).slices[0] == slice(0, 30)


def test_two_painted_slices_keep_the_gap_margin_whatever_their_size():
    labels = _disc((60, 64, 64), 0, 20, 30.0, 1.0) | _disc((60, 64, 64), 0, 30, 30.0, 1.0)
    assert known_box(labels.shape, {0: [20, 30]}, labels, (1.0, 1.0, 1.0)).slices[0] == slice(11, 40)


def test_the_lone_slice_note_names_the_reach_in_slices_of_the_volume():
    """The note says how far the result reaches (40 mm disc on 2 mm slices: 20 slices), not a fixed 3."""
    labels = _disc((60, 64, 64), 0, 30, 20.0, 1.0)
    slices = {0: [30]}
    notes = painting_notes(labels, weight_map(labels, slices, 255), slices, 255, None, True, (1.0, 1.0, 2.0))
    assert notes == [
        "only slice 30 along axis 0 is painted: the result stays on slices 10-50, within 20 slices of it; if the "
        "structure goes on, paint a slice near each of its ends too"
    ]


def test_a_new_network_from_one_painted_slice_segments_beyond_three_slices_of_it():
    """A bar 16 mm across through a 40-slice volume (2 mm), painted on slice 20 alone: the result reaches 9 slices
    (18 mm, the painting's equivalent diameter) either side, where before it stopped at 3 (17..23)."""
    rng = np.random.default_rng(0)
    truth = np.zeros((40, 24, 24), np.uint8)
    truth[:, 8:16, 8:16] = 1
    image = Volume((100.0 * truth + rng.normal(0, 10, truth.shape)).astype(np.float32), spacing=(2.0, 2.0, 2.0))
    labels = np.zeros_like(truth)
    labels[20] = truth[20]
    options = dataclasses.replace(TINY, iterations=20)
    result = finetune(image, image.with_array(labels), "unet3d", options)
    reached = np.nonzero(result.labelmap.array.any(axis=(1, 2)))[0]
    assert reached.min() < 17 and reached.max() > 23 and 11 <= reached.min() and reached.max() <= 29
