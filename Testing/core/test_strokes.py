"""Strokes of a ball-shaped brush (SegNetsLib.core.strokes) and how the annotated slices read them."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from SegNetsLib.core import annotation as ann
from SegNetsLib.core.strokes import sphere_strokes


def _blob(shape=(30, 24, 28)) -> np.ndarray:
    z, y, x = np.indices(shape)
    return ((z - 15) / 12) ** 2 + ((y - 12) / 8) ** 2 + ((x - 14) / 9) ** 2 <= 1


def sphere_brush(truth: np.ndarray, slices: list[int], radius: int, value: int = 1) -> np.ndarray:
    """uint8 [k, j, i]: ``truth`` (bool [k, j, i]) painted whole on ``slices`` along axis 0 with a ball of ``radius``
    voxels centred on the slice, as 3D Slicer's Sphere brush paints: balls centred where the structure lies at least
    ``radius`` inside, so the paint also reaches ``radius`` slices either side."""
    ball = np.linalg.norm(np.indices((2 * radius + 1,) * 3) - radius, axis=0) <= radius
    centres = np.zeros(truth.shape, dtype=bool)
    for s in slices:
        inside = ndimage.distance_transform_edt(truth[s])
        centres[s] = inside >= min(radius, inside.max())
    painted = ndimage.binary_dilation(centres, ball)
    for s in slices:
        painted[s] |= truth[s]
    return (painted * value).astype(np.uint8)


def test_sphere_brush_strokes_on_three_slices_read_as_those_three_slices():
    labels = sphere_brush(_blob(), [7, 15, 23], radius=3)
    assert (labels[[4, 10, 18, 26]] != 0).any()  # the balls reach 3 slices either side
    assert ann.annotated_slices(labels) == {0: [7, 15, 23], 1: [], 2: []}


def test_sphere_brush_caps_are_the_paint_off_the_painted_slices():
    labels = sphere_brush(_blob(), [7, 15, 23], radius=2)
    centres, caps = sphere_strokes(labels != 0)
    assert centres == {0: [7, 15, 23], 1: [], 2: []}
    off = np.ones(labels.shape[0], dtype=bool)
    off[[7, 15, 23]] = False
    assert np.array_equal(caps, (labels != 0) & off[:, None, None])


def test_a_structure_cut_off_by_the_volume_end_painted_on_slices_across_it_is_no_stroke():
    # it shrinks away from the volume's end as a ball's cap does: the test MR's spleen, painted on 5 sagittal slices
    # where its top is cut off, was read as the volume's last axial slice
    top = _blob()[:15]  # the blob's widest slice last
    labels = np.zeros(top.shape, dtype=np.uint8)
    labels[:, :, 12:17] = top[:, :, 12:17]
    assert ann.annotated_slices(labels) == {0: [], 1: [], 2: [12, 13, 14, 15, 16]}


def test_a_structure_painted_whole_on_slices_one_after_another_is_no_stroke():
    blob = _blob()
    labels = np.zeros(blob.shape, dtype=np.uint8)
    labels[12:19] = blob[12:19]  # its widest part: shrinking either side, yet no cap within the slice beside
    centres, caps = sphere_strokes(labels != 0)
    assert not caps.any() and centres == {0: [], 1: [], 2: []}
    assert ann.annotated_slices(labels)[0] == list(range(12, 19))


def test_two_touching_segments_painted_with_the_sphere_brush_read_as_the_slices_painted_on():
    blob = _blob()
    left = blob.copy()
    left[:, :, 14:] = False
    first = sphere_brush(left, [7, 15, 23], radius=2, value=1)
    second = sphere_brush(blob & ~left, [7, 15, 23], radius=2, value=2)  # painted after: it overwrites the first
    labels = np.where(second != 0, second, first).astype(np.uint8)
    assert ann.annotated_slices(labels) == {0: [7, 15, 23], 1: [], 2: []}
