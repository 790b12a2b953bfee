"""Writing a segmentation node with Slicer's own storage node (SegNetsLib.mrml.files) with slicer-core."""

from __future__ import annotations

import numpy as np
import pytest
import slicerio

from SegNetsLib.core.volume import Volume

mrml_bridge = pytest.importorskip("SegNetsLib.mrml")


def test_a_node_of_closed_surfaces_is_written_as_a_labelmap_seg_nrrd_and_nothing_else(mrml, tmp_path):
    """Its storage node wrote VTK multiblock XML under the .seg.nrrd name and left a folder of .vtp files."""
    import slicer

    volume = Volume(np.zeros((8, 9, 10), np.int16), (1.0, 1.5, 2.0), (3.0, -4.0, 5.0))
    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, volume, "CT")
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "surfaces")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    mask = np.zeros(volume.shape_kji, np.uint8)
    mask[2:6, 3:7, 3:8] = 1
    segment_id = node.GetSegmentation().AddEmptySegment("kidney", "Kidney ü", (0.2, 0.4, 0.6))
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, node, segment_id, volume_node)
    node.CreateClosedSurfaceRepresentation()
    node.GetSegmentation().SetSourceRepresentationName("Closed surface")

    path = mrml_bridge.save_segmentation_node(node, tmp_path / "surfaces.seg.nrrd")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["surfaces.seg.nrrd"]
    assert path.read_bytes().startswith(b"NRRD")
    segmentation = slicerio.read_segmentation(str(path))
    assert [s["id"] for s in segmentation["segments"]] == ["kidney"]
    assert np.allclose(segmentation["segments"][0]["color"], (0.2, 0.4, 0.6))
    assert slicerio.segment_mask(segmentation, "kidney").any()
    assert node.GetSegmentation().GetSourceRepresentationName() == "Closed surface"  # the node is left as it is
