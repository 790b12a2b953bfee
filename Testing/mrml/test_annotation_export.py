"""The panel's Fine-tune reads a painting onto the volume's grid with one export onto the painting's own grid:
the annotation and the count of paint outside the volume come from it (SegNetsLib.mrml.annotation, real MRML)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest

from SegNetsLib.core.volume import Volume

mrml_bridge = pytest.importorskip("SegNetsLib.mrml")


@contextlib.contextmanager
def _exports(scene) -> Iterator[list[tuple[int, int, int]]]:
    """The grid (i, j, k voxels) of each export into a labelmap node added to ``scene`` inside the block, in order:
    each of Slicer's exports gives the node new image data (its events then modify it a few times)."""
    import vtk

    grids: list[tuple[int, int, int]] = []
    images, watched = [], []  # the images seen, held so that none is freed and another made at its address

    def exported(node, _event) -> None:
        image = node.GetImageData()
        if not any(image is seen for seen in images):
            images.append(image)
            grids.append(tuple(image.GetDimensions()))

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def added(_scene, _event, node) -> None:
        if node.IsA("vtkMRMLLabelMapVolumeNode"):
            watched.append((node, node.AddObserver(node.ImageDataModifiedEvent, exported)))

    tag = scene.AddObserver(scene.NodeAddedEvent, added)
    try:
        yield grids
    finally:
        scene.RemoveObserver(tag)
        for node, observer in watched:
            node.RemoveObserver(observer)


def _painting(mrml, volume: Volume):
    """``volume``'s node and a segmentation painted on a grid twice as fine (each volume voxel holding 2 x 2 x 2 of
    its voxels) that reaches two volume slices beyond it: the lower fine slice of volume slice 2, which
    nearest-neighbour sampling misses, and volume slice 7, beyond the volume's 6, each 3 x 4 volume voxels."""
    import slicer.util

    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, volume, "CT")
    shift = np.array(volume.spacing) / 4
    fine = Volume(
        np.zeros((16, 16, 16), np.int16),
        tuple(s / 2 for s in volume.spacing),
        tuple(volume.origin - volume.direction @ shift),
        volume.direction,
    )
    fine_node = mrml_bridge.volume_node_from_volume(mrml.scene, fine, "fine grid")
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "annotation")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(fine_node)
    organ = node.GetSegmentation().AddEmptySegment("", "Organ", [0, 1, 0])
    painted = np.zeros(fine.shape_kji, np.uint8)
    painted[5, 2:8, 4:12] = 1
    painted[14:16, 2:8, 4:12] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(painted, node, organ, fine_node)
    return volume_node, node, organ


def test_the_annotation_and_the_paint_outside_come_from_one_export_onto_the_paintings_grid(mrml):
    """The labels and the note on paint outside are those two exports onto the painting's grid gave (one for the
    annotation's missed fine slices, one to count the paint outside): now one serves both."""
    volume = Volume(np.zeros((6, 8, 8), np.int16), (1.0, 1.0, 2.0), (5.0, -3.0, 10.0), np.eye(3))
    volume_node, node, organ = _painting(mrml, volume)
    with _exports(mrml.scene) as grids:
        annotation, label_to_segment, outside = mrml_bridge.annotation.annotation_and_outside(
            node, [organ], volume_node, refuse_covered=True
        )
        notes = mrml_bridge.annotation.outside_notes(node, volume_node, annotation.array, outside)
    assert grids == [(8, 8, 6), (8, 6, 11)]  # onto the volume, then once onto the painting's own grid (its extent)
    expected = np.zeros(volume.shape_kji, np.uint8)
    expected[2, 1:4, 2:6] = 1
    assert np.array_equal(annotation.array, expected) and label_to_segment == {1: organ}
    assert notes == ["96 painted voxels lie outside volume 'CT': they were left out"]  # 2 x 6 x 8 fine voxels
    with _exports(mrml.scene) as grids:
        alone, _ = mrml_bridge.annotation_from_segmentation(node, [organ], volume_node)
    assert np.array_equal(alone.array, expected) and grids == [(8, 8, 6), (8, 6, 11)]
