"""The MRML bridge against Slicer's real MRML classes (slicer-core): volumes, segments, annotations, ROIs."""

from __future__ import annotations

import numpy as np
import pytest

from SegNetsLib.card.card import Code, LabelInfo, Terminology
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume

mrml_bridge = pytest.importorskip("SegNetsLib.mrml")


def _rotation(axis_angle_deg: float) -> np.ndarray:
    """A rotation about an oblique axis composed with a flip: a realistic oblique, left-handed frame."""
    a = np.deg2rad(axis_angle_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(a / 2), -np.sin(a / 2)], [0, np.sin(a / 2), np.cos(a / 2)]])
    return rz @ rx @ np.diag([1.0, -1.0, 1.0])


@pytest.fixture
def oblique_volume() -> Volume:
    rng = np.random.default_rng(0)
    array = rng.integers(-100, 200, size=(6, 7, 8)).astype(np.int16)
    return Volume(array, spacing=(0.8, 0.9, 2.5), origin=(-10.0, 20.0, 30.0), direction=_rotation(25))


LIVER = Terminology(Code("SCT", "123037004", "Anatomical Structure"), Code("SCT", "10200004", "Liver"))
LABELS = [
    LabelInfo(1, "Liver", (0.87, 0.51, 0.41), LIVER),
    LabelInfo(2, "Tumor", (0.9, 0.1, 0.1), None),
    LabelInfo(3, "Spleen", (0.6, 0.2, 0.7), None),
]


def test_oblique_volume_round_trip(mrml, oblique_volume):
    node = mrml_bridge.volume_node_from_volume(mrml.scene, oblique_volume, "CT")
    back = mrml_bridge.volume_from_node(node)
    assert np.array_equal(back.array, oblique_volume.array)
    assert back.same_geometry(oblique_volume, tolerance_mm=1e-6)
    np.testing.assert_allclose(back.direction, oblique_volume.direction, atol=1e-9)
    # Slicer's own RAS geometry: spacing matches and the origin is the LPS origin with x, y negated
    assert node.GetSpacing() == pytest.approx(oblique_volume.spacing)
    assert node.GetOrigin() == pytest.approx((10.0, -20.0, 30.0))


def test_volume_from_empty_node_is_refused(mrml):
    node = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(SegNetsError, match="'empty' has no image data"):
        mrml_bridge.volume_from_node(node)


def test_labelmap_becomes_named_colored_tagged_segments(mrml, oblique_volume):
    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, oblique_volume, "CT")
    labels = np.zeros(oblique_volume.shape_kji, np.uint8)
    labels[1:3, 2:5, 2:6] = 1
    labels[4, 1, 1] = 2  # label 3 (Spleen) absent: still gets an empty segment
    node = mrml_bridge.segmentation_from_labelmap(
        mrml.scene, oblique_volume.with_array(labels), LABELS, volume_node, "CT segmentation"
    )
    segmentation = node.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["Liver", "Tumor", "Spleen"]
    liver_id = segmentation.GetSegmentIdBySegmentName("Liver")
    liver = segmentation.GetSegment(liver_id)
    assert liver.GetColor() == pytest.approx((0.87, 0.51, 0.41))
    assert liver.GetTerminology() == LIVER.as_slicer_string()
    # no helper nodes left behind
    for helper in ("vtkMRMLLabelMapVolumeNode", "vtkMRMLLabelMapVolumeDisplayNode"):
        assert mrml.scene.GetNodesByClass(helper).GetNumberOfItems() == 0, helper
    import slicer.util

    for value, name in ((1, "Liver"), (2, "Tumor"), (3, "Spleen")):
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(
            node, segmentation.GetSegmentIdBySegmentName(name), volume_node
        )
        assert np.array_equal(mask > 0, labels == value), name
    # reference geometry (needed for DICOM SEG export) is the input volume's
    assert node.GetNodeReferenceID(node.GetReferenceImageGeometryReferenceRole()) == volume_node.GetID()


def test_segmentation_sits_next_to_its_volume(mrml, oblique_volume):
    import slicer

    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, oblique_volume, "CT")
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml.scene)
    study = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), "Study")
    hierarchy.CreateItem(study, volume_node)  # the Slicer app does this itself on NodeAdded
    labels = oblique_volume.with_array(np.ones(oblique_volume.shape_kji, np.uint8))
    node = mrml_bridge.segmentation_from_labelmap(mrml.scene, labels, LABELS[:1], volume_node, "seg")
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == study


def test_segmentation_follows_the_volume_transform(mrml, oblique_volume):
    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, oblique_volume, "CT")
    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    volume_node.SetAndObserveTransformNodeID(transform.GetID())
    labels = oblique_volume.with_array(np.ones(oblique_volume.shape_kji, np.uint8))
    node = mrml_bridge.segmentation_from_labelmap(mrml.scene, labels, LABELS[:1], volume_node, "seg")
    assert node.GetTransformNodeID() == transform.GetID()


def test_unknown_label_values_are_refused(mrml, oblique_volume):
    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, oblique_volume, "CT")
    labels = oblique_volume.with_array(np.full(oblique_volume.shape_kji, 7, np.uint8))
    with pytest.raises(SegNetsError, match=r"values \[7\]"):
        mrml_bridge.segmentation_from_labelmap(mrml.scene, labels, LABELS, volume_node, "seg")


def _annotation_segmentation(mrml, reference_node):
    """A user-painted segmentation whose own geometry is ``reference_node``'s."""
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "annotation")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    segmentation = node.GetSegmentation()
    ids = [
        segmentation.AddEmptySegment("", name, color) for name, color in (("Organ", [0, 1, 0]), ("Lesion", [1, 0, 0]))
    ]
    return node, ids


def _finer_grid(mrml, volume: Volume):
    """(Volume, its node) of a grid with half ``volume``'s spacing in every axis, in the same oblique frame, each
    voxel of ``volume`` holding 2 x 2 x 2 of its voxels (the first at ``volume``'s voxel (0, 0, 0))."""
    fine = Volume(
        np.zeros(tuple(2 * s for s in volume.shape_kji), np.int16),
        spacing=tuple(s / 2 for s in volume.spacing),
        origin=tuple(volume.origin - volume.direction @ (np.array(volume.spacing) / 4)),
        direction=volume.direction,
    )
    return fine, mrml_bridge.volume_node_from_volume(mrml.scene, fine, "fine grid")


def test_annotation_in_volume_geometry_when_segmentation_geometry_differs(mrml, oblique_volume):
    """Segments painted on a finer, shifted grid are exported into the volume's own voxel grid."""
    import slicer.util

    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, oblique_volume, "CT")
    fine, fine_node = _finer_grid(mrml, oblique_volume)  # the annotation's own grid
    node, (organ, lesion) = _annotation_segmentation(mrml, fine_node)
    organ_mask = np.zeros(fine.shape_kji, np.uint8)
    organ_mask[2:6, 4:10, 4:12] = 1  # coarse voxels k 1..2, j 2..4, i 2..5
    lesion_mask = np.zeros(fine.shape_kji, np.uint8)
    lesion_mask[8:10, 2:4, 2:4] = 1  # coarse voxel k 4, j 1, i 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(organ_mask, node, organ, fine_node)
    slicer.util.updateSegmentBinaryLabelmapFromArray(lesion_mask, node, lesion, fine_node)
    before = {sid: slicer.util.arrayFromSegmentBinaryLabelmap(node, sid, fine_node).copy() for sid in (organ, lesion)}
    mtime = node.GetSegmentation().GetSegment(organ).GetMTime()
    nodes_before = mrml.scene.GetNumberOfNodes()

    annotation, mapping = mrml_bridge.annotation_from_segmentation(node, [lesion, organ], volume_node)
    assert mrml.scene.GetNumberOfNodes() == nodes_before, "helper nodes (labelmap, display, color table) removed"

    assert mapping == {1: lesion, 2: organ}
    assert annotation.same_geometry(mrml_bridge.volume_from_node(volume_node), tolerance_mm=1e-6)
    expected = np.zeros(oblique_volume.shape_kji, np.uint8)
    expected[1:3, 2:5, 2:6] = 2
    expected[4, 1, 1] = 1
    assert np.array_equal(annotation.array, expected)
    # the user's annotation is untouched
    for sid, mask in before.items():
        assert np.array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(node, sid, fine_node), mask)
    assert node.GetSegmentation().GetSegment(organ).GetMTime() == mtime
    assert node.GetSegmentation().GetNumberOfSegments() == 2


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_slice_painted_on_a_finer_grid_keeps_its_place_whichever_fine_slice_holds_it(mrml, oblique_volume, axis):
    """A segmentation twice as fine as the volume (Slicer's oversampling) painted on the one fine slice of a volume
    slice that nearest-neighbour sampling misses: the painting is the volume's slice, not lost."""
    import slicer.util

    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, oblique_volume, "CT")
    fine, fine_node = _finer_grid(mrml, oblique_volume)
    node, (organ, lesion) = _annotation_segmentation(mrml, fine_node)
    painted = np.zeros(fine.shape_kji, np.uint8)
    index = [slice(2, 10), slice(2, 12), slice(2, 14)]
    index[axis] = 6  # the lower fine slice of volume slice 3 along ``axis``
    painted[tuple(index)] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(painted, node, organ, fine_node)

    annotation, _ = mrml_bridge.annotation_from_segmentation(node, [organ], volume_node)
    expected = np.zeros(oblique_volume.shape_kji, np.uint8)
    coarse = [slice(1, 5), slice(1, 6), slice(1, 7)]
    coarse[axis] = 3
    expected[tuple(coarse)] = 1
    assert np.array_equal(annotation.array, expected)


def test_an_unpainted_annotation_is_all_background(mrml, oblique_volume):
    """Segments named but not painted yet (SegNets Web's annotation before the first stroke) export as zeros."""
    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, oblique_volume, "CT")
    node, ids = _annotation_segmentation(mrml, volume_node)
    for refuse_covered in (False, True):  # an unpainted segment is not one that later segments cover
        annotation, label_to_segment = mrml_bridge.annotation_from_segmentation(
            node, ids, volume_node, refuse_covered=refuse_covered
        )
        assert annotation.shape_kji == oblique_volume.shape_kji and not annotation.array.any()
        assert label_to_segment == {1: ids[0], 2: ids[1]}


def test_annotation_refuses_unknown_or_no_segments(mrml, oblique_volume):
    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, oblique_volume, "CT")
    node, _ = _annotation_segmentation(mrml, volume_node)
    with pytest.raises(SegNetsError, match="no segment with id 'nope'"):
        mrml_bridge.annotation_from_segmentation(node, ["nope"], volume_node)
    with pytest.raises(SegNetsError, match="pick at least one"):
        mrml_bridge.annotation_from_segmentation(node, [], volume_node)


def test_a_closed_surface_annotation_is_read_without_changing_it_and_a_repeated_id_counts_once(mrml):
    import slicer
    import vtk

    volume = Volume(np.zeros((20, 22, 24), np.int16), spacing=(1.0, 1.2, 2.0), origin=(-10.0, 20.0, 30.0))
    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, volume, "CT")
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segmentation = node.GetSegmentation()
    segmentation.SetSourceRepresentationName("Closed surface")
    sphere = vtk.vtkSphereSource()
    sphere.SetCenter(*(volume.ijk_to_ras() @ [12, 11, 10, 1])[:3])
    sphere.SetRadius(8)
    sphere.Update()
    ball = slicer.vtkSegment()
    ball.SetName("ball")
    ball.AddRepresentation("Closed surface", sphere.GetOutput())
    segmentation.AddSegment(ball, "ball")
    annotation, mapping = mrml_bridge.annotation_from_segmentation(node, ["ball", "ball"], volume_node)
    assert mapping == {1: "ball"} and annotation.array.max() == 1 and annotation.array.sum() > 500
    assert segmentation.GetSegment("ball").GetRepresentation("Binary labelmap") is None  # the user's node as it was


def test_segment_labels_carry_names_colors_terminology(mrml, oblique_volume):
    from SegNetsLib.mrml.annotation import labels_from_segments

    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, oblique_volume, "CT")
    node, (organ, lesion) = _annotation_segmentation(mrml, volume_node)
    node.GetSegmentation().GetSegment(organ).SetTerminology(LIVER.as_slicer_string())
    labels = labels_from_segments(node, {1: organ, 2: lesion})
    assert [(label.value, label.name) for label in labels] == [(1, "Organ"), (2, "Lesion")]
    assert labels[0].terminology == LIVER
    assert labels[1].terminology.type.meaning == "Tissue"  # Slicer's default tag for a new segment
    assert labels[1].color == pytest.approx((1.0, 0.0, 0.0))


@pytest.mark.parametrize("direction", [np.eye(3), _rotation(25)], ids=["axis-aligned", "oblique"])
def test_roi_box_round_trip(mrml, direction):
    volume = Volume(np.zeros((20, 30, 40), np.int16), spacing=(0.7, 0.8, 2.0), origin=(5, -3, 12), direction=direction)
    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, volume, "CT")
    box = (3, 4, 5, 11, 20, 33)
    roi = mrml_bridge.roi_node_from_box(volume_node, box, "RoI")
    assert roi.GetSize() == pytest.approx(((33 - 5) * 0.7, (20 - 4) * 0.8, (11 - 3) * 2.0))
    assert mrml_bridge.box_from_roi_node(roi, volume_node) == box


def test_moved_roi_gives_the_moved_box_clipped_to_the_volume(mrml):
    volume = Volume(np.zeros((20, 30, 40), np.int16), spacing=(1.0, 1.0, 2.0), direction=_rotation(40))
    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, volume, "CT")
    roi = mrml_bridge.roi_node_from_box(volume_node, (3, 4, 5, 11, 20, 33), "RoI")
    # the user drags the ROI by 10 voxels along i (world direction of the i axis) and past the edge
    i_axis_world = volume.ijk_to_ras()[:3, 0]
    center = np.array(roi.GetCenter())
    roi.SetCenter(*(center + 10 * i_axis_world))
    assert mrml_bridge.box_from_roi_node(roi, volume_node) == (3, 4, 15, 11, 20, 40)
    roi.SetCenter(*(center + 1000 * i_axis_world))
    with pytest.raises(SegNetsError, match="does not overlap"):
        mrml_bridge.box_from_roi_node(roi, volume_node)


def test_roi_of_a_transformed_volume_sits_on_the_transformed_voxels(mrml):
    import vtk

    volume = Volume(np.zeros((10, 12, 14), np.int16), spacing=(1.0, 1.0, 2.0))
    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, volume, "CT")
    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    shift = vtk.vtkMatrix4x4()
    shift.SetElement(0, 3, 50.0)  # 50 mm to the right
    transform.SetMatrixTransformToParent(shift)
    volume_node.SetAndObserveTransformNodeID(transform.GetID())
    box = (0, 0, 0, 2, 3, 4)
    roi = mrml_bridge.roi_node_from_box(volume_node, box, "RoI")
    center_ijk = np.array([1.5, 1.0, 0.5, 1.0])  # (i, j, k) centre of the box
    expected = (volume.ijk_to_ras() @ center_ijk)[:3] + [50.0, 0.0, 0.0]
    np.testing.assert_allclose(roi.GetCenterWorld(), expected, atol=1e-6)
    assert mrml_bridge.box_from_roi_node(roi, volume_node) == box
    assert roi.GetTransformNodeID() == transform.GetID()  # moving the volume moves its RoI


def test_roi_of_a_volume_under_a_sheared_transform_comes_back_on_the_same_voxels(mrml):
    """A sheared voxel box is no rectangle: an ROI made in world coordinates grew on the way back."""
    import vtk

    volume = Volume(np.zeros((10, 12, 14), np.int16), spacing=(1.0, 1.5, 2.0))
    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, volume, "CT")
    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "affine registration")
    shear = vtk.vtkMatrix4x4()
    shear.SetElement(0, 1, 0.4)
    shear.SetElement(1, 2, -0.3)
    shear.SetElement(2, 3, 12.0)
    transform.SetMatrixTransformToParent(shear)
    volume_node.SetAndObserveTransformNodeID(transform.GetID())
    box = (2, 3, 4, 7, 9, 11)
    roi = mrml_bridge.roi_node_from_box(volume_node, box, "RoI")
    assert mrml_bridge.box_from_roi_node(roi, volume_node) == box


def test_a_segment_painted_only_outside_the_volume_is_not_called_covered(mrml, oblique_volume):
    """A segment whose paint lies beyond the volume's slices holds no voxel of the volume, yet no later segment
    covers it: refusing it as overlapping layers would send the user looking for an overlap that is not there."""
    import slicer.util

    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, oblique_volume, "CT")
    taller = Volume(
        np.zeros((12, 7, 8), np.int16), oblique_volume.spacing, oblique_volume.origin, oblique_volume.direction
    )
    taller_node = mrml_bridge.volume_node_from_volume(mrml.scene, taller, "taller grid")
    node, (organ, lesion) = _annotation_segmentation(mrml, taller_node)
    painted = np.zeros(taller.shape_kji, np.uint8)
    painted[9, 2:5, 2:6] = 1  # slice 9: beyond the volume's 6 slices
    slicer.util.updateSegmentBinaryLabelmapFromArray(painted, node, organ, taller_node)

    annotation, _ = mrml_bridge.annotation_from_segmentation(node, [organ, lesion], volume_node, refuse_covered=True)
    assert not annotation.array.any()


@pytest.mark.parametrize(("under", "shift"), [("volume", 0), ("segmentation", 0), ("segmentation", 1)])
def test_a_slice_painted_on_a_finer_grid_is_kept_under_another_transform(mrml, oblique_volume, under, shift):
    """The painted fine slice that nearest-neighbour sampling misses is kept when the segmentation and the volume
    sit under different transforms (one moved by registration, say): through them, ``shift`` volume slices on."""
    import slicer.util
    import vtk

    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, oblique_volume, "CT")
    fine, fine_node = _finer_grid(mrml, oblique_volume)
    node, (organ, _lesion) = _annotation_segmentation(mrml, fine_node)
    painted = np.zeros(fine.shape_kji, np.uint8)
    painted[6, 2:10, 2:12] = 1  # the lower fine slice of volume slice 3
    slicer.util.updateSegmentBinaryLabelmapFromArray(painted, node, organ, fine_node)
    ijk_to_ras, matrix = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(ijk_to_ras)
    for row in range(3):  # ``shift`` volume slices along k
        matrix.SetElement(row, 3, ijk_to_ras.GetElement(row, 2) * shift)
    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(matrix)
    (volume_node if under == "volume" else node).SetAndObserveTransformNodeID(transform.GetID())

    annotation, _ = mrml_bridge.annotation_from_segmentation(node, [organ], volume_node, refuse_covered=True)
    expected = np.zeros(oblique_volume.shape_kji, np.uint8)
    expected[3 + shift, 1:5, 1:6] = 1
    assert np.array_equal(annotation.array, expected)


def test_a_segmentation_on_the_volumes_voxels_from_a_larger_grid_is_exported_voxel_for_voxel(mrml, oblique_volume):
    """A segmentation whose own grid holds the volume's voxels and more (its first voxel two slices before the
    volume's, as a cropped or padded one has): each painted voxel is the volume voxel it covers."""
    import slicer.util

    volume_node = mrml_bridge.volume_node_from_volume(mrml.scene, oblique_volume, "CT")
    larger = Volume(
        np.zeros((10, 7, 8), np.int16),
        oblique_volume.spacing,
        oblique_volume.origin - oblique_volume.direction @ np.array([0.0, 0.0, 2 * oblique_volume.spacing[2]]),
        oblique_volume.direction,
    )
    larger_node = mrml_bridge.volume_node_from_volume(mrml.scene, larger, "larger grid")
    node, (organ, lesion) = _annotation_segmentation(mrml, larger_node)
    for segment, (k, rows) in ((organ, (5, slice(2, 5))), (lesion, (7, slice(1, 3)))):
        painted = np.zeros(larger.shape_kji, np.uint8)
        painted[k, rows, 2:6] = 1
        slicer.util.updateSegmentBinaryLabelmapFromArray(painted, node, segment, larger_node)

    annotation, _ = mrml_bridge.annotation_from_segmentation(node, [organ, lesion], volume_node, refuse_covered=True)
    expected = np.zeros(oblique_volume.shape_kji, np.uint8)
    expected[3, 2:5, 2:6] = 1
    expected[5, 1:3, 2:6] = 2
    assert np.array_equal(annotation.array, expected)
