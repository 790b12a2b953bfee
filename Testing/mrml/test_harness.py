"""The real-MRML harness (slicer-core) builds volumes and segmentations and round-trips .seg.nrrd."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")


def _oblique_ijk_to_ras() -> np.ndarray:
    angle = np.deg2rad(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation @ np.diag([-0.8, -0.9, 2.5])  # flipped i and j, anisotropic spacing
    matrix[:3, 3] = [-10.0, 20.0, 30.0]
    return matrix


def test_volume_node_from_array_keeps_non_identity_directions(mrml):
    image = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # [k, j, i]
    ijk_to_ras = _oblique_ijk_to_ras()
    node = slicer.util.addVolumeFromArray(image, ijk_to_ras, name="CT")

    assert node.GetName() == "CT"
    assert np.array_equal(slicer.util.arrayFromVolume(node), image)
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    assert np.allclose(slicer.util.arrayFromVTKMatrix(matrix), ijk_to_ras, atol=1e-6)


def test_named_colored_segment_round_trips_through_seg_nrrd(mrml, tmp_path):
    image = np.zeros((6, 7, 8), dtype=np.int16)
    volume = slicer.util.addVolumeFromArray(image, _oblique_ijk_to_ras(), name="CT")
    mask = np.zeros_like(image, dtype=np.uint8)
    mask[2:4, 3:6, 1:5] = 1

    segmentation = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "AI")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segment_id = segmentation.GetSegmentation().AddEmptySegment("liver", "Liver", [0.87, 0.51, 0.41])
    assert segment_id == "liver"
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentation, "liver", volume)

    path = tmp_path / "ai.seg.nrrd"
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    assert storage.WriteData(segmentation) == 1

    loaded = mrml.segmentations_logic.LoadSegmentationFromFile(str(path), False, "loaded")
    segment = loaded.GetSegmentation().GetSegment("liver")
    assert segment.GetName() == "Liver"
    assert np.allclose(segment.GetColor(), [0.87, 0.51, 0.41], atol=1e-3)
    assert np.array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(loaded, "liver", volume), mask)
