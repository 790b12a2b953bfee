"""RoI geometry: components, box extension rules, merging, cropping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.measure import label, regionprops

from SegNetsLib.core.box import Box, box_union, crop, extend_box, find_components, mask_box, merge_overlapping
from SegNetsLib.core.errors import SegNetsError


def test_components_sorted_by_area_with_tight_half_open_boxes():
    mask = np.zeros((6, 10, 10), bool)
    mask[1:3, 2:5, 2:4] = True  # 12 voxels
    mask[4, 7, 7] = True  # 1 voxel
    mask[0:6, 8:10, 0:2] = True  # 24 voxels
    comps = find_components(mask)
    assert [c.area for c in comps] == [24, 12, 1]
    assert comps[0].box == Box(0, 8, 0, 6, 10, 2)
    assert comps[1].box == Box(1, 2, 2, 3, 5, 4)
    assert comps[2].box == Box(4, 7, 7, 5, 8, 8)
    assert find_components(np.zeros((3, 3, 3))) == []


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_connectivity_matches_skimage(connectivity):
    rng = np.random.default_rng(3)
    mask = rng.random((7, 9, 8)) > 0.72
    ours = find_components(mask, connectivity)
    labels = label(mask, connectivity=connectivity)
    theirs = sorted(((int(p.area), tuple(int(v) for v in p.bbox)) for p in regionprops(labels)), reverse=True)
    assert sorted(((c.area, tuple(c.box)) for c in ours), reverse=True) == theirs
    areas = [c.area for c in ours]
    assert areas == sorted(areas, reverse=True)


def test_diagonal_neighbours_depend_on_connectivity():
    mask = np.zeros((3, 3, 3), bool)
    mask[0, 0, 0] = mask[1, 1, 0] = mask[2, 2, 1] = True  # edge neighbours, then a corner neighbour
    assert len(find_components(mask, 1)) == 3
    assert len(find_components(mask, 2)) == 2
    assert len(find_components(mask, 3)) == 1


def test_official_order_sorts_largest_first():
    mask = np.zeros((5, 5, 5), bool)
    mask[0, 0, 0:3] = True
    mask[4, 4, 0:2] = True
    mask[2, 2, 4] = True
    comps = find_components(mask, 2, official_order=True)
    assert [c.area for c in comps] == [3, 2, 1]


def test_bad_mask_and_connectivity_raise():
    with pytest.raises(SegNetsError, match="3D"):
        find_components(np.zeros((4, 4)))
    with pytest.raises(SegNetsError, match="connectivity"):
        find_components(np.zeros((4, 4, 4)), connectivity=4)


def test_extend_padding_clips_to_volume():
    assert extend_box(Box(1, 2, 3, 4, 5, 6), (10, 10, 10), "padding", padding=(2, 3, 1)) == Box(0, 0, 2, 6, 8, 7)
    assert extend_box(Box(5, 5, 5, 9, 9, 9), (10, 10, 10), "padding", padding=3) == Box(2, 2, 2, 10, 10, 10)


def test_extend_official_clamps_end_at_shape_minus_one():
    # RU-Net golden RF112: raw bbox [0,0,0,4,16,16] on a (4,16,16) grid becomes [0,0,0,3,15,15]
    assert extend_box(Box(0, 0, 0, 4, 16, 16), (4, 16, 16), "official") == Box(0, 0, 0, 3, 15, 15)
    assert extend_box(Box(2, 3, 4, 3, 5, 6), (4, 16, 16), "official") == Box(1, 1, 2, 3, 7, 8)
    assert extend_box(Box(1, 3, 4, 2, 5, 6), (8, 16, 16), "official") == Box(0, 1, 2, 3, 7, 8)


def test_extend_scale_about_centre():
    assert extend_box(Box(4, 4, 4, 8, 8, 8), (20, 20, 20), "scale", factor=2) == Box(2, 2, 2, 10, 10, 10)
    assert extend_box(Box(4, 4, 4, 8, 8, 8), (20, 20, 20), "scale", factor=1.5) == Box(3, 3, 3, 9, 9, 9)
    assert extend_box(Box(0, 0, 0, 4, 4, 4), (5, 20, 20), "scale", factor=2) == Box(0, 0, 0, 5, 6, 6)
    with pytest.raises(SegNetsError, match="factor"):
        extend_box(Box(0, 0, 0, 4, 4, 4), (5, 5, 5), "scale", factor=0.5)


def test_extend_fixed_is_centred_shifted_inside_and_never_cuts():
    assert extend_box(Box(10, 40, 40, 14, 60, 60), (64, 128, 128), "fixed", size=(24, 96, 96)) == Box(
        0, 2, 2, 24, 98, 98
    )
    assert extend_box(Box(30, 100, 0, 32, 120, 10), (40, 128, 128), "fixed", size=(24, 96, 96)) == Box(
        16, 32, 0, 40, 128, 96
    )
    # box larger than size along x keeps its extent; volume smaller than size along z uses the whole axis
    assert extend_box(Box(0, 0, 0, 2, 10, 50), (8, 100, 100), "fixed", size=(24, 20, 20)) == Box(0, 0, 0, 8, 20, 50)


def test_extend_rejects_bad_rule_and_box():
    with pytest.raises(SegNetsError, match="rule"):
        extend_box(Box(0, 0, 0, 1, 1, 1), (4, 4, 4), "grow")
    with pytest.raises(SegNetsError, match="outside"):
        extend_box(Box(0, 0, 0, 5, 1, 1), (4, 4, 4), "padding")


def test_union_merge_and_crop():
    a, b, c = Box(0, 0, 0, 2, 2, 2), Box(1, 1, 1, 3, 3, 3), Box(5, 5, 5, 6, 6, 6)
    assert box_union(a, b) == Box(0, 0, 0, 3, 3, 3) == box_union([a, b])
    assert merge_overlapping([a, c, b]) == [Box(0, 0, 0, 3, 3, 3), c]
    # touching (not overlapping) boxes stay apart; chains merge transitively
    assert merge_overlapping([a, Box(2, 0, 0, 3, 2, 2)]) == [a, Box(2, 0, 0, 3, 2, 2)]
    assert merge_overlapping([a, Box(4, 4, 4, 5, 5, 5), Box(1, 1, 1, 5, 5, 5)]) == [Box(0, 0, 0, 5, 5, 5)]
    arr = np.arange(2 * 4 * 5 * 6).reshape(2, 4, 5, 6)
    assert crop(arr, Box(1, 2, 3, 3, 4, 6)).shape == (2, 2, 2, 3)
    assert crop(torch.from_numpy(arr), Box(1, 2, 3, 3, 4, 6))[0, 0, 0, 0].item() == arr[0, 1, 2, 3]
    assert Box(1, 2, 3, 3, 4, 6).scaled((2, 4, 4)) == Box(2, 8, 12, 6, 16, 24)
    assert Box(1, 2, 3, 3, 4, 6).size == 2 * 2 * 3


def test_the_intersection_of_two_boxes_holds_the_voxels_both_hold():
    a, b = Box(0, 2, 4, 10, 8, 9), Box(5, 0, 6, 20, 4, 7)
    common = a.intersection(b)
    assert common == Box(5, 2, 6, 10, 4, 7) == b.intersection(a)
    inside = np.zeros((20, 10, 10), bool)
    inside[a.slices] = True
    assert inside[common.slices].all() and inside[b.slices].sum() == common.size
    apart = a.intersection(Box(12, 0, 0, 15, 3, 3))
    assert apart.size == 0 and not a.intersects(Box(12, 0, 0, 15, 3, 3))


def test_mask_box_is_the_tightest_box_around_a_mask_and_none_for_an_empty_one():
    mask = np.zeros((6, 7, 8), bool)
    assert mask_box(mask) is None
    mask[1, 2, 3] = mask[4, 5, 3] = True
    assert mask_box(mask) == Box(1, 2, 3, 5, 6, 4)


def test_box_union_takes_any_iterable_of_boxes():
    boxes = [Box(0, 0, 0, 2, 2, 2), Box(1, 1, 1, 4, 4, 4)]
    assert box_union(b for b in boxes) == box_union(iter(boxes)) == box_union(boxes) == Box(0, 0, 0, 4, 4, 4)
    assert box_union((0, 0, 0, 2, 2, 2)) == Box(0, 0, 0, 2, 2, 2)
