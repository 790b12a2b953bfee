"""Labelmap -> segmentation node (SegNetsLib.mrml.segmentation) with Slicer's real MRML classes (slicer-core)."""

from __future__ import annotations

import numpy as np
import pytest

from SegNetsLib.card.card import LabelInfo
from SegNetsLib.core.volume import Volume

mrml_bridge = pytest.importorskip("SegNetsLib.mrml")

LIVER = [LabelInfo(1, "Liver", (0.87, 0.51, 0.41))]


def _shifted_volume(mrml, shift_mm=(50.0, -20.0, 10.0)):
    import vtk

    volume = Volume(np.zeros((10, 12, 14), np.int16), spacing=(1.0, 1.5, 2.0), origin=(3.0, -4.0, 5.0))
    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, volume, "CT")
    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    matrix = vtk.vtkMatrix4x4()
    for axis, value in enumerate(shift_mm):
        matrix.SetElement(axis, 3, value)
    transform.SetMatrixTransformToParent(matrix)
    volume_node.SetAndObserveTransformNodeID(transform.GetID())
    return volume, volume_node, transform


def test_segmenting_again_into_the_same_output_under_a_transform_stays_on_the_volume(mrml):
    """Under a parent transform a second Segment into the same node lands where the first did."""
    import slicer.util

    volume, volume_node, transform = _shifted_volume(mrml)
    mask = np.zeros(volume.shape_kji, np.uint8)
    mask[2:6, 3:8, 4:11] = 1
    node = None
    for _ in range(3):
        node = mrml_bridge.segmentation_from_labelmap(
            mrml.scene, volume.with_array(mask), LIVER, volume_node, "seg", segmentation_node=node
        )
        assert node.GetTransformNodeID() == transform.GetID()
        segment_id = node.GetSegmentation().GetSegmentIdBySegmentName("Liver")
        result = slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, volume_node)
        assert np.array_equal(np.asarray(result), mask), "the segment moved off the volume's voxels"


def test_no_helper_node_is_left_under_the_transform(mrml):
    volume, volume_node, transform = _shifted_volume(mrml)
    before = mrml.scene.GetNumberOfNodes()
    mrml_bridge.segmentation_from_labelmap(
        mrml.scene, volume.with_array(np.ones(volume.shape_kji, np.uint8)), LIVER, volume_node, "seg"
    )
    labelmaps = mrml.scene.GetNodesByClass("vtkMRMLLabelMapVolumeNode")
    assert labelmaps.GetNumberOfItems() == 0
    assert mrml.scene.GetNumberOfNodes() > before  # the segmentation node (and its display node) only


def test_labels_keep_their_colour_order_and_an_rt_structure_output_node_is_reused(mrml):
    """A grey label (0.5, 0.5, 0.5: "no colour" to Slicer) keeps its grey, empty or not; segments follow the label
    values even where names repeat; an output node holding planar contours takes the labelmap."""
    import slicer
    import vtk

    volume = Volume(np.zeros((8, 9, 10), np.int16))
    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, volume, "CT")
    labels = np.zeros(volume.shape_kji, np.uint8)
    labels[2:4, 2:4, 2:4], labels[5:7, 5:7, 5:7] = 2, 3
    grey = (0.5, 0.5, 0.5)
    card = [
        LabelInfo(1, "X", grey),
        LabelInfo(2, "Y", grey),
        LabelInfo(3, "X", (1.0, 0.0, 0.0)),
        LabelInfo(4, "Z", grey),
    ]
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "RTSTRUCT")
    node.CreateDefaultDisplayNodes()
    segmentation = node.GetSegmentation()
    segmentation.SetSourceRepresentationName("Planar contour")
    contour = slicer.vtkSegment()
    contour.SetName("PTV")
    contour.AddRepresentation("Planar contour", vtk.vtkPolyData())
    segmentation.AddSegment(contour, "PTV")
    out = mrml_bridge.segmentation_from_labelmap(
        mrml.scene, volume.with_array(labels), card, volume_node, "result", segmentation_node=node
    )
    segments = [out.GetSegmentation().GetNthSegment(i) for i in range(out.GetSegmentation().GetNumberOfSegments())]
    assert [(s.GetName(), s.GetLabelValue()) for s in segments] == [("X", 1), ("Y", 2), ("X", 3), ("Z", 4)]
    assert [tuple(round(c, 3) for c in s.GetColor()) for s in segments] == [grey, grey, (1.0, 0.0, 0.0), grey]


def test_a_volume_of_64_bit_or_boolean_voxels_becomes_a_node_and_too_wide_values_leave_nothing(mrml):
    from SegNetsLib.core.errors import SegNetsError

    before = mrml.scene.GetNumberOfNodes()
    for dtype in (np.int64, np.bool_, np.float16):
        node = mrml_bridge.volume_node_from_volume(mrml.scene, Volume(np.ones((3, 4, 5), dtype)), "v")
        assert mrml_bridge.volume_from_node(node).array.sum() == 60
    count = mrml.scene.GetNumberOfNodes()
    assert count > before
    with pytest.raises(SegNetsError, match="beyond 32-bit integers"):
        mrml_bridge.volume_node_from_volume(mrml.scene, Volume(np.full((3, 4, 5), 2**40, np.int64)), "wide")
    assert mrml.scene.GetNumberOfNodes() == count


def test_a_terminology_with_every_field_survives_slicers_tag_and_the_card():
    """ "Mass in the right lung": the anatomic region's modifier ("Right") is kept through the segment's tag, the
    card's JSON and back."""
    import json
    from dataclasses import replace

    from inference_helpers import LIVER_CARD

    from SegNetsLib.card.card import Code, ModelCard, Terminology
    from SegNetsLib.card.schema import validate_card

    term = Terminology(
        Code("SCT", "49755003", "Morphologically Altered Structure"),
        Code("SCT", "4147007", "Mass"),
        None,
        Code("SCT", "39607008", "Lung"),
        Code("SCT", "24028007", "Right"),
    )
    tag = term.as_slicer_string()
    assert tag.endswith("~SCT^39607008^Lung~SCT^24028007^Right")
    assert Terminology.from_slicer_string(tag) == term
    card = replace(LIVER_CARD, labels=[LabelInfo(1, "Mass", (1.0, 0.0, 0.0), term)])
    again = ModelCard.from_dict(json.loads(json.dumps(validate_card(card.to_dict()))))
    assert again.labels[0].terminology == term


def test_a_result_with_no_foreground_is_saved_on_the_volumes_grid(mrml, tmp_path):
    """A model that finds nothing: every segment is empty, and the .seg.nrrd the batch script, the panel and SegNets
    Web save was a 1 x 1 x 1 image at the origin (``segnets segment`` writes the volume's grid)."""
    from SegNetsLib.imageio.segmentations import read_labelmap_and_labels

    direction = np.array([[0.0, -1.0, 0.0], [0.8, 0.0, 0.6], [-0.6, 0.0, 0.8]])  # oblique
    volume = Volume(
        np.zeros((6, 7, 9), np.int16), spacing=(0.7, 0.8, 2.5), origin=(-10.0, 20.0, 30.0), direction=direction
    )
    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, volume, "CT")
    card = [LabelInfo(1, "Liver", (0.87, 0.51, 0.41)), LabelInfo(4, "Kidney", (0.2, 0.3, 0.9))]
    empty = volume.with_array(np.zeros(volume.shape_kji, np.uint8))
    node = mrml_bridge.segmentation_from_labelmap(mrml.scene, empty, card, volume_node, "nothing found")
    path = mrml_bridge.save_segmentation_node(node, tmp_path / "nothing.seg.nrrd")

    back, labels = read_labelmap_and_labels(path)
    assert back.same_geometry(volume, tolerance_mm=1e-4), (back.shape_kji, back.origin, back.spacing)
    assert not back.array.any()
    assert [(value, label.name) for value, label in labels.items()] == [(1, "Liver"), (4, "Kidney")]
    again = mrml.segmentations_logic.LoadSegmentationFromFile(str(path), False, "again")
    assert again.GetSegmentation().GetNumberOfSegments() == 2
