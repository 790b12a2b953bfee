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
