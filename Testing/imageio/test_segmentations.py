"""Segmentation files (.seg.nrrd through slicerio, NIfTI/NRRD labelmaps) and what real Slicer reads."""

from __future__ import annotations

import numpy as np
import pytest
import slicerio

from SegNetsLib.card.card import Code, LabelInfo, Terminology
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume
from SegNetsLib.imageio.segmentations import read_labelmap, read_labelmap_and_names, write_segmentation
from SegNetsLib.imageio.volumes import read_volume

LIVER_TERMINOLOGY = Terminology(
    category=Code("SCT", "123037004", "Anatomical Structure"), type=Code("SCT", "10200004", "Liver")
)
LABELS = [
    LabelInfo(5, "liver", (0.86, 0.55, 0.41), LIVER_TERMINOLOGY),
    LabelInfo(1, "spleen", (0.62, 0.31, 0.64)),
    LabelInfo(7, "absent organ", (0.1, 0.8, 0.1)),
]


def _oblique_labelmap(data_dir) -> Volume:
    """The TotalSegmentator liver and spleen of ts_ct_sm on an oblique, anisotropic grid."""
    reference = read_volume(data_dir / "ts_ct_sm" / "label.nii.gz")
    labels = np.where(np.isin(reference.array, (1, 5)), reference.array, 0).astype(np.uint8)
    angle = np.deg2rad(25.0)
    rotation = np.array([[np.cos(angle), 0.0, np.sin(angle)], [0.0, 1.0, 0.0], [-np.sin(angle), 0.0, np.cos(angle)]])
    return Volume(labels, (0.9, 1.1, 2.5), (-12.0, 30.5, 101.0), rotation @ np.diag([-1.0, 1.0, 1.0]))


def test_seg_nrrd_round_trips_names_colors_terminology_and_voxels(data_dir, tmp_path):
    labelmap = _oblique_labelmap(data_dir)
    path = write_segmentation(labelmap, LABELS, tmp_path / "out.seg.nrrd")

    back = read_labelmap(path)
    assert back.same_geometry(labelmap, tolerance_mm=1e-6)
    assert np.array_equal(back.array, labelmap.array)

    segmentation = slicerio.read_segmentation(str(path))
    by_name = {s["name"]: s for s in segmentation["segments"]}
    assert set(by_name) == {"liver", "spleen", "absent organ"}
    assert np.allclose(by_name["liver"]["color"], (0.86, 0.55, 0.41))
    assert by_name["liver"]["terminology"]["type"] == ["SCT", "10200004", "Liver"]
    # slicerio is [i, j, k]: the liver mask must be the transposed [k, j, i] mask
    assert np.array_equal(slicerio.segment_mask(segmentation, "liver"), (labelmap.array == 5).transpose(2, 1, 0))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_a_seg_nrrd_read_back_keeps_each_segments_terminology(data_dir, tmp_path):
    """``segnets finetune`` takes an annotation's labels from here: its terminology was dropped."""
    from SegNetsLib.imageio.segmentations import read_labelmap_and_labels

    path = write_segmentation(_oblique_labelmap(data_dir), LABELS, tmp_path / "painted.seg.nrrd")
    _, labels = read_labelmap_and_labels(path)
    assert {value: label.terminology for value, label in labels.items()} == {5: LIVER_TERMINOLOGY, 1: None, 7: None}


def test_slicer_core_reader_opens_the_seg_nrrd_with_names_colors_and_voxels(mrml, data_dir, tmp_path):
    slicer = pytest.importorskip("slicer")
    labelmap = _oblique_labelmap(data_dir)
    path = write_segmentation(labelmap, LABELS, tmp_path / "ai.seg.nrrd")
    reference = slicer.util.addVolumeFromArray(labelmap.array.astype(np.int16), labelmap.ijk_to_ras(), name="ref")

    node = mrml.segmentations_logic.LoadSegmentationFromFile(str(path), False, "ai")
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 3
    liver = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("liver"))
    assert np.allclose(liver.GetColor(), (0.86, 0.55, 0.41), atol=1e-3)
    assert "SCT^10200004^Liver" in liver.GetTerminology()
    for value, name in ((5, "liver"), (1, "spleen")):
        segment_id = segmentation.GetSegmentIdBySegmentName(name)
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, reference)
        assert np.array_equal(mask != 0, labelmap.array == value), name


def test_nifti_labelmap_round_trip(data_dir, tmp_path):
    labelmap = _oblique_labelmap(data_dir)
    back = read_labelmap(write_segmentation(labelmap, LABELS, tmp_path / "out.nii.gz"))
    assert np.array_equal(back.array, labelmap.array)
    assert back.same_geometry(labelmap, tolerance_mm=1e-4)


def test_overlapping_layers_flatten_by_label_value(tmp_path):
    segmentation = slicerio.create_segmentation((6, 5, 4), np.eye(4))
    first = np.zeros((6, 5, 4), bool)
    first[1:4, 1:3, 0:2] = True
    second = np.zeros((6, 5, 4), bool)
    second[3:6, 2:5, 1:4] = True  # overlaps the first: slicerio puts it in a second layer
    slicerio.add_segment(segmentation, first, {"id": "a", "name": "a"})
    slicerio.add_segment(segmentation, second, {"id": "b", "name": "b"})
    assert segmentation["voxels"].ndim == 4
    path = tmp_path / "layers.seg.nrrd"
    slicerio.write_segmentation(str(path), segmentation)

    labelmap = read_labelmap(path).array  # [k, j, i]
    # both segments have label value 1 in their own layer: they get their positions 1 and 2, the later on top
    assert np.array_equal(labelmap == 2, second.transpose(2, 1, 0))
    assert np.array_equal(labelmap == 1, first.transpose(2, 1, 0) & ~second.transpose(2, 1, 0))


def test_a_segment_wholly_under_a_later_one_is_refused_with_its_name(tmp_path):
    segmentation = slicerio.create_segmentation((6, 5, 4), np.eye(4))
    inner = np.zeros((6, 5, 4), bool)
    inner[2:4, 2:4, 1:3] = True
    outer = np.zeros((6, 5, 4), bool)
    outer[1:5, 1:5, 0:4] = True  # covers the first wholly: drawn over it, nothing of "Liver" would be left
    slicerio.add_segment(segmentation, inner, {"id": "liver", "name": "Liver"})
    slicerio.add_segment(segmentation, outer, {"id": "abdomen", "name": "Upper abdomen"})
    path = tmp_path / "covered.seg.nrrd"
    slicerio.write_segmentation(str(path), segmentation)
    with pytest.raises(SegNetsError, match=r"covered\.seg\.nrrd: segment 'Liver' lies wholly under later segments"):
        read_labelmap(path)


def test_unknown_label_value_and_suffix_are_refused_without_a_file(tmp_path):
    labelmap = Volume(np.full((3, 4, 5), 9, dtype=np.uint8))
    with pytest.raises(SegNetsError, match=r"label value\(s\) \[9\]"):
        write_segmentation(labelmap, LABELS, tmp_path / "x.seg.nrrd")
    with pytest.raises(SegNetsError, match="unknown segmentation file type"):
        write_segmentation(labelmap.with_array(np.zeros((3, 4, 5), np.uint8)), LABELS, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_unreadable_labelmap_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.seg.nrrd"
    broken.write_bytes(b"not a nrrd")
    with pytest.raises(SegNetsError, match="broken.seg.nrrd"):
        read_labelmap(broken)


def test_non_ascii_segment_names_round_trip_through_slicer_as_utf8(mrml, tmp_path):
    """Slicer writes and reads segment names as UTF-8 header bytes; pynrrd writes ASCII only and drops the rest."""
    slicer = pytest.importorskip("slicer")
    labelmap = Volume(np.zeros((4, 5, 6), np.uint8), (1.0, 1.0, 2.0), (3.0, -4.0, 5.0))
    labelmap.array[1:3, 1:3, 1:3] = 1
    labelmap.array[0, 0, 0] = 2
    names = ["Hüfte rechts", "腎臓"]
    labels = [LabelInfo(1, names[0], (1.0, 0.0, 0.0)), LabelInfo(2, names[1], (0.0, 1.0, 0.0), LIVER_TERMINOLOGY)]
    path = write_segmentation(labelmap, labels, tmp_path / "unicode.seg.nrrd")
    assert list(tmp_path.iterdir()) == [path]

    node = mrml.segmentations_logic.LoadSegmentationFromFile(str(path), False, "read")
    segmentation = node.GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(2)] == names
    assert "SCT^10200004^Liver" in segmentation.GetNthSegment(1).GetTerminology()
    back, read_names = read_labelmap_and_names(path)
    assert read_names == {1: names[0], 2: names[1]}
    assert np.array_equal(back.array, labelmap.array)

    written = tmp_path / "slicer.seg.nrrd"  # Slicer's own writer: SegNets reads its names whole
    node.GetSegmentation().GetNthSegment(0).SetName("Lebersegment ä")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(written))
    assert storage.WriteData(node)
    assert set(read_labelmap_and_names(written)[1].values()) == {"Lebersegment ä", names[1]}


def test_a_label_value_above_255_keeps_its_voxels_in_a_seg_nrrd(mrml, tmp_path):
    """The voxels were cast to uint8: value 1000 became 232, and its segment came back empty."""
    slicer = pytest.importorskip("slicer")
    labelmap = Volume(np.zeros((4, 5, 6), np.int32), (1.0, 1.0, 2.0), (3.0, -4.0, 5.0))
    labelmap.array[1:3, 1:3, 1:3] = 1000
    labelmap.array[0, 0, 0] = 3
    labels = [LabelInfo(1000, "big", (1.0, 0.0, 0.0)), LabelInfo(3, "small", (0.0, 1.0, 0.0))]
    path = write_segmentation(labelmap, labels, tmp_path / "big.seg.nrrd")

    assert np.array_equal(read_labelmap(path).array, labelmap.array)
    node = mrml.segmentations_logic.LoadSegmentationFromFile(str(path), False, "big")
    reference = slicer.util.addVolumeFromArray(labelmap.array.astype(np.int16), labelmap.ijk_to_ras(), name="ref")
    for value, name in ((1000, "big"), (3, "small")):
        segment_id = node.GetSegmentation().GetSegmentIdBySegmentName(name)
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, reference)
        assert np.array_equal(mask != 0, labelmap.array == value), name


def test_a_segment_name_with_a_line_break_is_written_on_one_line(tmp_path):
    """A name with a line break wrote a header no reader could read back."""
    labelmap = Volume(np.zeros((4, 5, 6), np.uint8))
    labelmap.array[1:3, 1:3, 1:3] = 1
    path = write_segmentation(labelmap, [LabelInfo(1, "zwei\nZeilen ü", (1.0, 0.0, 0.0))], tmp_path / "x.seg.nrrd")
    back, names = read_labelmap_and_names(path)
    assert names == {1: "zwei Zeilen ü"} and np.array_equal(back.array, labelmap.array)


@pytest.mark.parametrize("color", ["2.5 nan -1", "0.5 0.5", "1e400 0 0", "0.1 0.2 0.3 0.4", "-0.5 1.5 0.25"])
def test_a_seg_nrrd_segment_color_that_is_no_rgb_becomes_one(tmp_path, color):
    """A color a model card would refuse (NaN, infinite, two numbers) after a whole fine-tune is read as the palette's;
    one out of [0, 1] is clipped, extra numbers are left out."""
    import math
    import re

    from SegNetsLib.imageio.segmentations import read_labelmap_and_labels

    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1:3, 1:4, 2:5] = 1
    path = write_segmentation(Volume(labels), [LabelInfo(1, "Liver", (0.8, 0.3, 0.1))], tmp_path / "a.seg.nrrd")
    path.write_bytes(re.sub(rb"(Segment0_Color:=)[^\n]*", rb"\g<1>" + color.encode(), path.read_bytes()))
    _, read = read_labelmap_and_labels(path)
    rgb = read[1].color
    assert len(rgb) == 3 and all(math.isfinite(c) and 0.0 <= c <= 1.0 for c in rgb), rgb
    if color == "0.1 0.2 0.3 0.4":
        assert rgb == pytest.approx((0.1, 0.2, 0.3))
    if color == "-0.5 1.5 0.25":
        assert rgb == pytest.approx((0.0, 1.0, 0.25))
