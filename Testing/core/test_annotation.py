"""Annotated-slice detection, weight maps and annotation checks (SegNetsLib.core.annotation)."""

from __future__ import annotations

import numpy as np
import pytest

from SegNetsLib.core import annotation as ann
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume


def _blob(shape=(20, 24, 28)) -> np.ndarray:
    z, y, x = np.indices(shape)
    return (((z - 10) / 7) ** 2 + ((y - 12) / 8) ** 2 + ((x - 14) / 9) ** 2 <= 1).astype(np.uint8)


def test_axial_slices_are_detected_not_the_crossing_coronal_ones():
    dense = _blob()
    labels = np.zeros_like(dense)
    labels[[5, 10, 14]] = dense[[5, 10, 14]]
    assert ann.annotated_slices(labels) == {0: [5, 10, 14], 1: [], 2: []}


def _thin_tube(shape=(20, 91, 117)) -> np.ndarray:
    """A vessel along axis 0, 4 voxels across j and 7 across i (the MR vena cava it stands for: 24 voxels a slice)."""
    tube = np.zeros(shape, dtype=np.uint8)
    tube[:, 45:49, 60:67] = 1
    tube[:, 45, 60] = tube[:, 48, 66] = 0
    return tube


def test_a_thin_vessel_painted_on_four_axial_slices_gives_those_slices():
    # its few coronal rows hold more labelled voxels than any painted slice: a plain greedy cover took them
    labels = np.zeros((20, 91, 117), dtype=np.uint8)
    labels[[0, 5, 10, 15]] = _thin_tube()[[0, 5, 10, 15]]
    assert ann.annotated_slices(labels) == {0: [0, 5, 10, 15], 1: [], 2: []}


def test_a_thin_vessel_painted_whole_on_ten_axial_slices_one_after_another_stays_axial():
    """Slices 5-14 written whole (no unlabeled voxel: vessel or background), the rest unlabeled (255): the axial slices
    the editor wrote, though eight coronal rows and two end slices would hold every labelled voxel too."""
    labels = np.full((20, 91, 117), 255, dtype=np.uint8)
    labels[5:15] = _thin_tube()[5:15]
    slices = ann.annotated_slices(labels)
    assert slices == {0: list(range(5, 15)), 1: [], 2: []}
    assert ann.weight_map(labels, slices).sum() == 10 * 91 * 117  # every written voxel is learned, nothing else
    coronal = np.full((20, 91, 117), 255, dtype=np.uint8)  # the same vessel written whole on coronal rows instead
    coronal[:, 45:49] = _thin_tube()[:, 45:49]
    assert ann.annotated_slices(coronal) == {0: [], 1: [45, 46, 47, 48], 2: []}
    panel = np.where(labels == 255, 0, labels)  # as the panel exports it: 0 outside, no unlabeled value
    assert ann.annotated_slices(panel, None) == ann.annotated_slices(panel) == {0: list(range(5, 15)), 1: [], 2: []}
    assert ann.annotated_slices(np.where(coronal == 255, 0, coronal), None) == {0: [], 1: [45, 46, 47, 48], 2: []}


def test_two_pairs_of_axial_slices_apart_and_an_axial_with_a_coronal_pair_are_read_as_painted():
    """Not one block: two pairs of consecutive axial slices with unpainted slices between them, and an axial pair
    crossing a coronal pair, as the panel exports them (0 outside). Read as 15 or 23 coronal slices instead, the
    unpainted part of the structure between the pairs would be learned as background."""
    z, y, x = np.indices((40, 60, 60))
    ellipsoid = (((z - 20) / 15) ** 2 + ((y - 30) / 8) ** 2 + ((x - 30) / 10) ** 2 <= 1).astype(np.uint8)
    labels = np.zeros_like(ellipsoid)
    labels[[12, 13, 26, 27]] = ellipsoid[[12, 13, 26, 27]]
    slices = ann.annotated_slices(labels, None)
    assert slices == {0: [12, 13, 26, 27], 1: [], 2: []}
    assert not (ann.weight_map(labels, slices) * ellipsoid)[14:26].any()  # none of it between the pairs is learned
    ball = ((z - 20) ** 2 + (y - 30) ** 2 + (x - 30) ** 2 <= 12**2).astype(np.uint8)
    labels = np.zeros_like(ball)
    labels[[18, 19]] = ball[[18, 19]]
    labels[:, [30, 31]] = ball[:, [30, 31]]
    assert ann.annotated_slices(labels, None) == {0: [18, 19], 1: [30, 31], 2: []}


def test_given_slices_are_kept_and_only_the_rest_is_covered():
    labels = np.zeros((20, 91, 117), dtype=np.uint8)
    labels[[0, 5, 10]] = _thin_tube()[[0, 5, 10]]
    labels[17, 46, 62] = 1  # a single voxel: no region in any plane
    assert ann.annotated_slices(labels, given={0: [0, 5, 10, 12]}) == {0: [0, 5, 10, 12, 17], 1: [], 2: []}


def test_mixed_orientations_are_detected_per_axis():
    dense = _blob()
    labels = np.zeros_like(dense)
    labels[10] = dense[10]
    labels[:, :, 14] = np.maximum(labels[:, :, 14], 2 * dense[:, :, 14])
    labels[:, 12, :] = np.maximum(labels[:, 12, :], dense[:, 12, :])
    assert ann.annotated_slices(labels) == {0: [10], 1: [12], 2: [14]}


def test_ignore_value_is_not_an_annotation_and_weighs_zero():
    labels = np.zeros((6, 8, 8), dtype=np.uint8)
    labels[2, 2:5, 2:5] = 1
    labels[2, 0, 0] = 255
    labels[4, 1, 1] = 255  # only ignore voxels: no annotated slice
    slices = ann.annotated_slices(labels)
    assert slices == {0: [2], 1: [], 2: []}
    weight = ann.weight_map(labels, slices)
    assert weight.dtype == np.float32
    assert weight[2].sum() == 63 and weight[2, 0, 0] == 0
    assert weight[[0, 1, 3, 4, 5]].sum() == 0


def test_explicit_background_slices_join_the_weight_map():
    labels = np.zeros((6, 8, 8), dtype=np.uint8)
    labels[1, 3, 3] = 1
    slices = ann.merge_slices(ann.annotated_slices(labels), ann.parse_slices("0:4;2:7"))
    assert slices == {0: [1, 4], 1: [], 2: [7]}
    weight = ann.weight_map(labels, slices)
    assert weight[4].all() and weight[:, :, 7].all() and not weight[0, :, :7].any()


@pytest.mark.parametrize("text", ["x:1", "0:", "3:1", "0:a"])
def test_bad_slice_lists_are_refused(text):
    with pytest.raises(SegNetsError, match="slices"):
        ann.parse_slices(text)


def test_slice_outside_the_volume_is_refused():
    with pytest.raises(SegNetsError, match="outside the volume"):
        ann.weight_map(np.zeros((4, 4, 4), np.uint8), {0: [4]})


def test_no_annotated_slice_is_refused():
    with pytest.raises(SegNetsError, match="no annotated slice"):
        ann.require_annotated(ann.annotated_slices(np.zeros((4, 5, 6), np.uint8)))


def test_geometry_mismatch_is_refused():
    image = Volume(np.zeros((4, 5, 6), np.float32), spacing=(1, 1, 2))
    with pytest.raises(SegNetsError, match="different geometry"):
        ann.check_annotation(image, Volume(np.zeros((4, 5, 6), np.uint8), spacing=(1, 1, 3)))
    with pytest.raises(SegNetsError, match="different geometry"):
        ann.check_annotation(image, Volume(np.zeros((4, 5, 7), np.uint8), spacing=(1, 1, 2)))
    ann.check_annotation(image, Volume(np.zeros((4, 5, 6), np.uint8), spacing=(1, 1, 2)))


def test_dense_annotation_is_recognised():
    labels = _blob((8, 8, 8))
    slices = {0: list(range(8)), 1: [], 2: []}
    assert ann.is_dense(ann.weight_map(labels, slices))
    assert not ann.is_dense(ann.weight_map(labels, {0: [3]}))


def test_classes_skip_background_and_ignore():
    labels = np.array([[[0, 1, 3, 255]]], dtype=np.uint8)
    assert ann.annotation_classes(labels) == [1, 3]


def test_validation_split_keeps_the_extremes_for_training():
    from SegNetsLib.finetune.sampling import split_validation

    train, validation = split_validation({0: [3, 5, 8, 10, 12], 1: [], 2: []})
    assert validation == [(0, 8)] and (0, 3) in train and (0, 12) in train
    assert split_validation({0: [1, 2, 3]}, min_train=4) == ([(0, 1), (0, 2), (0, 3)], [])
    train, validation = split_validation({0: list(range(0, 40, 4)), 2: [5, 9]})
    assert len(validation) == 3 and len(train) == 9


def test_a_cropped_annotation_on_the_image_grid_is_embedded():
    image = Volume(np.zeros((10, 12, 14), np.float32), spacing=(2, 2, 3), origin=(5, 6, 7))
    crop = np.ones((2, 3, 4), np.uint8)
    # voxel (i, j, k) = (4, 5, 6) of the image is the crop's first voxel
    cropped = Volume(crop, spacing=(2, 2, 3), origin=(5 + 8, 6 + 10, 7 + 18))
    embedded = ann.embed_in_image_grid(image, cropped)
    assert embedded.same_geometry(image)
    assert embedded.array[6:8, 5:8, 4:8].all() and embedded.array.sum() == crop.sum()
    off_grid = Volume(crop, spacing=(2, 2, 3), origin=(5.5, 6, 7))
    assert ann.embed_in_image_grid(image, off_grid) is off_grid


def test_the_painting_axis_is_the_one_with_most_slices():
    assert ann.painting_axis({0: [1], 1: [2, 5, 9], 2: []}) == 1
    assert ann.painting_axis({0: [4, 8], 2: [1, 6]}) == 0
    assert ann.painting_axis({}) == 0
    assert ann.painting_axis({1: [], 2: []}) == 0


def test_slices_are_listed_by_axis_leaving_out_axes_without_one():
    assert ann.listed_slices({0: [3, 7], 1: [], 2: [40]}) == "axis 0: 3, 7; axis 2: 40"
    assert ann.listed_slices({0: [], 1: [], 2: []}) == ""


@pytest.mark.parametrize(
    ("value", "axis", "painted"),
    [(10, 0, [102, 103, 110]), (30, 1, [24, 25, 44]), (9, 2, [40, 41, 45])],
    ids=["lung-lobe-axial", "vertebra-coronal", "adrenal-sagittal"],
)
def test_two_neighbouring_slices_and_one_apart_are_read_without_a_crossing_slice(data_dir, value, axis, painted):
    """The test CT's left upper lung lobe, vertebra L2 and left adrenal gland (TUNE structures) painted on two
    neighbouring slices and one apart: a slice of another axis crossing the neighbours was taken first for their two
    rows, then every painted slice too; it held no voxel of its own, yet all of it was learned as background (and a
    painting along two axes was segmented over the whole volume: Dice 0.00, 0.00 and 0.66 in 12 s runs)."""
    _assert_read_as_painted(data_dir / "ts_ct_full", value, axis, painted)


@pytest.mark.parametrize(
    ("folder", "value", "axis", "painted"),
    [
        ("ts_mr_sm", 9, 0, [5, 6, 12, 13]),
        ("ts_mr_sm", 8, 0, [12, 13, 18, 19]),
        ("ts_ct_full", 11, 1, [24, 55, 56]),
        ("ts_ct_full", 101, 1, [25, 44, 45]),
    ],
    ids=["mr-adrenal-left-axial", "mr-adrenal-right-axial", "ct-lung-lobe-coronal", "ct-rib-coronal"],
)
def test_blocks_of_slices_apart_are_read_along_the_axis_painted(data_dir, folder, value, axis, painted):
    """TUNE structures painted on blocks of neighbouring slices a gap apart: the MR left adrenal gland on axial 5, 6,
    12 and 13 was read as sagittal 67-69 (which cross both pairs of the thin gland), its right one with two sagittal
    slices, the CT left lower lung lobe and left 10th rib with slices of other axes crossing the coronal pair; each
    block on its own ends flat across the axis painted."""
    _assert_read_as_painted(data_dir / folder, value, axis, painted)


def test_a_slice_the_others_cover_is_dropped_but_a_given_one_is_kept():
    """Redundant slices of the cover go; slices given (--slices, earlier rounds) stay whatever they hold."""
    dense = _blob()
    labels = np.zeros_like(dense)
    labels[[5, 10, 14]] = dense[[5, 10, 14]]
    assert ann.annotated_slices(labels, given={2: [14]}) == {0: [5, 10, 14], 1: [], 2: [14]}


@pytest.mark.parametrize(
    ("folder", "value", "axis", "painted"),
    [
        ("ts_mr_sm", 8, 2, [44, 46, 48]),
        ("ts_ct_full", 101, 2, [10, 18, 19]),
        ("ts_ct_full", 8, 2, [66, 67, 72, 73]),
    ],
    ids=["mr-adrenal-sagittal", "ct-rib-sagittal", "ct-adrenal-sagittal-pairs"],
)
def test_a_painted_slice_holding_one_row_stays_along_the_axis_painted(data_dir, folder, value, axis, painted):
    """TUNE structures (the MR and CT right adrenal glands, the CT left 10th rib) painted on sagittal slices: once
    the cover had taken some, a slice of another axis held as many of the voxels left as the next painted one (a
    structure's end painted as one row lies in one axial slice too) and, the first axis of equals, was taken instead:
    1 to 3 axial or coronal slices read as annotated, all of them but the painted rows learned as background."""
    _assert_read_as_painted(data_dir / folder, value, axis, painted)


def _assert_read_as_painted(folder, value: int, axis: int, painted: list[int]) -> None:
    """Label ``value`` of ``folder``'s label.nii.gz painted whole on slices ``painted`` along ``axis`` is read as
    exactly those slices."""
    from SegNetsLib.imageio.volumes import read_volume

    structure = read_volume(folder / "label.nii.gz").array == value
    labels = np.zeros(structure.shape, dtype=np.uint8)
    index = [slice(None)] * 3
    for s in painted:
        index[axis] = s
        labels[tuple(index)] = structure[tuple(index)]
    assert ann.annotated_slices(labels) == {a: painted if a == axis else [] for a in range(3)}
