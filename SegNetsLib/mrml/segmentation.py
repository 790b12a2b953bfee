"""Labelmap -> segmentation node with the card's names, colors and terminology."""

from __future__ import annotations

import numpy as np

from SegNetsLib.card.card import LabelInfo
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume
from SegNetsLib.mrml.hierarchy import place_next_to
from SegNetsLib.mrml.volumes import labelmap_node_from_volume, remove_temporary_node


def _label_segments(segmentation, labels: list[LabelInfo]) -> None:
    """Name, color and tag imported segments by label value; add empty segments for absent labels."""
    by_value = {label.value: label for label in labels}
    present: set[int] = set()
    ids: dict[int, str] = {}  # label value -> segment id
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        label = by_value.get(segment.GetLabelValue())
        if label is None:
            continue
        present.add(label.value)
        ids[label.value] = segmentation.GetNthSegmentID(index)
        segment.SetName(label.name)
        segment.SetColor(*label.color)
        if label.terminology is not None:
            segment.SetTerminology(label.terminology.as_slicer_string())
    for label in labels:
        if label.value in present:
            continue
        segment_id = segmentation.AddEmptySegment("", label.name, list(label.color))
        ids[label.value] = segment_id
        segment = segmentation.GetSegment(segment_id)
        segment.SetColor(*label.color)  # (0.5, 0.5, 0.5) is "no colour" to AddEmptySegment, which picks one
        segment.SetLabelValue(label.value)
        if label.terminology is not None:
            segment.SetTerminology(label.terminology.as_slicer_string())
    for index, value in enumerate(sorted(ids)):  # by label value; names may repeat
        segmentation.SetSegmentIndex(ids[value], index)


def _share_empty_labelmap(segmentation_node, labelmap_node) -> None:
    """Give every segment ``labelmap_node``'s all-background labelmap (one shared layer) on its grid.

    Segments made empty by ``AddEmptySegment`` have no grid at all, and Slicer's storage node then writes a
    1 x 1 x 1 image at the origin in place of the volume's geometry.
    """
    import slicer

    image = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(
        labelmap_node, segmentation_node.GetParentTransformNode()
    )
    name = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    segmentation = segmentation_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segmentation.GetNthSegment(index).AddRepresentation(name, image)


def segmentation_from_labelmap(
    scene,
    labelmap: Volume,
    labels: list[LabelInfo],
    reference_volume_node,
    name: str,
    segmentation_node=None,
):
    """Put ``labelmap`` (integer labels [k, j, i] with its geometry) into a segmentation node.

    One segment per entry of ``labels`` (also when a label is absent from the labelmap, as an empty
    segment), named, colored and tagged with terminology. The reference image geometry is the
    reference volume's (needed for DICOM SEG export) and the node is placed next to that volume in the
    subject hierarchy, under the same parent transform. ``segmentation_node``, when given, is emptied and
    reused; otherwise a new node called ``name`` is created.

    The labelmap and the segmentation are both put under the reference volume's parent transform before
    the import: Slicer resamples an imported labelmap from its own frame into the segmentation's, so a
    labelmap outside the transform would land displaced in a segmentation under it.
    """
    import slicer

    if labelmap.array.ndim != 3:
        raise SegNetsError(f"labelmap for {name!r} must be 3D, got shape {labelmap.array.shape}.")
    values = set(np.unique(labelmap.array).tolist()) - {0}
    unknown = values - {label.value for label in labels}
    if unknown:
        raise SegNetsError(f"labelmap for {name!r} holds values {sorted(unknown)} that the model's labels do not name.")
    array = labelmap.array.astype(np.uint8 if max(values, default=0) < 256 else np.uint16)
    transform_id = reference_volume_node.GetTransformNodeID()
    temporary = labelmap_node_from_volume(scene, labelmap.with_array(array), "__segnets_labelmap__", display=False)
    try:
        temporary.SetAndObserveTransformNodeID(transform_id)
        if segmentation_node is None:
            segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        else:  # emptied, it takes labelmaps whatever it held (planar contours of an RT structure set, say)
            segmentation_node.GetSegmentation().RemoveAllSegments()
            segmentation_node.GetSegmentation().SetSourceRepresentationName(
                slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
            )
        segmentation_node.SetAndObserveTransformNodeID(transform_id)  # overlays the volume
        segmentation_node.CreateDefaultDisplayNodes()
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
        if values and not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
            temporary, segmentation_node, ""
        ):
            raise SegNetsError(f"Slicer could not import the labelmap into segmentation {name!r}.")
        _label_segments(segmentation_node.GetSegmentation(), labels)
        if not values:  # every segment empty: give them the volume's grid, or they have none
            _share_empty_labelmap(segmentation_node, temporary)
    finally:
        remove_temporary_node(temporary)
    place_next_to(segmentation_node, reference_volume_node)
    return segmentation_node
