"""A user's annotation segmentation -> an annotation labelmap in the volume's geometry (read-only)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from SegNetsLib.card.card import LabelInfo, Terminology
from SegNetsLib.core.annotation import DEFAULT_IGNORE_VALUE
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume
from SegNetsLib.mrml.volumes import ijk_to_ras_of, matrix_to_numpy, remove_temporary_node


def _checked_ids(segmentation_node, segment_ids: list[str]) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    if not segment_ids:
        raise SegNetsError(f"no segments of {segmentation_node.GetName()!r} were chosen; pick at least one to learn.")
    missing = [segment_id for segment_id in segment_ids if segmentation.GetSegment(segment_id) is None]
    if missing:
        raise SegNetsError(f"segmentation {segmentation_node.GetName()!r} has no segment with id {missing[0]!r}.")
    return list(dict.fromkeys(segment_ids))  # each once: a repeated id would be a class without voxels


def annotation_from_segmentation(
    segmentation_node, segment_ids: list[str], reference_volume_node, refuse_covered: bool = False
):
    """Export the chosen segments as one labelmap in ``reference_volume_node``'s voxel grid.

    Returns ``(annotation, label_to_segment)``: ``annotation`` is a uint8 Volume [k, j, i] where
    segment_ids[n] has label n + 1 (later segments win where they overlap) and 0 is "not painted";
    ``label_to_segment`` maps each label value to its segment id. The segmentation is resampled
    into the volume's geometry by Slicer's Segmentations logic even when its own geometry differs, and a
    volume voxel holding the centre of a painted voxel of a finer segmentation (Slicer's oversampling, or one
    made on a finer volume; through the two nodes' parent transforms) is painted too (:func:`_painted_centres`):
    nearest-neighbour resampling alone would drop every painted slice of the finer grid that misses the volume's
    slice centres. The segmentation node
    itself is never modified. ``refuse_covered``: raise SegNetsError when a painted segment lies wholly under
    later ones (overlapping layers), so that it would not be learned at all.
    """
    annotation, label_to_segment, _ = _annotation(segmentation_node, segment_ids, reference_volume_node, refuse_covered)
    return annotation, label_to_segment


def annotation_and_outside(
    segmentation_node, segment_ids: list[str], reference_volume_node, refuse_covered: bool = False
) -> tuple[Volume, dict[int, str], int]:
    """:func:`annotation_from_segmentation`'s ``(annotation, label_to_segment)`` and how many painted voxels of
    ``segment_ids`` have their centres outside ``reference_volume_node``'s grid (through the two nodes' parent
    transforms): the export onto the volume leaves them out (a segmentation painted on a larger volume, the volume
    cropped since). The segments are exported onto their own grid once, for both."""
    return _annotation(segmentation_node, segment_ids, reference_volume_node, refuse_covered, count_outside=True)


def _annotation(
    segmentation_node, segment_ids: list[str], reference_volume_node, refuse_covered: bool, count_outside: bool = False
) -> tuple[Volume, dict[int, str], int | None]:
    """(annotation, label_to_segment, painted voxels outside the volume or None unless ``count_outside``)."""
    segment_ids = _checked_ids(segmentation_node, segment_ids)
    if len(segment_ids) >= DEFAULT_IGNORE_VALUE:  # that value marks unlabeled voxels
        raise SegNetsError(
            f"{len(segment_ids)} segments were chosen; at most {DEFAULT_IGNORE_VALUE - 1} can be learned at once."
        )
    with _work_node(segmentation_node, "__segnets_annotation__") as temporary:
        array, ijk_to_ras, outside = _exported(
            segmentation_node, segment_ids, reference_volume_node, temporary, count_outside
        )
        annotation = Volume.from_ijk_to_ras(array, ijk_to_ras)
        if refuse_covered:
            _refuse_covered(segmentation_node, segment_ids, array, reference_volume_node, temporary)
    return annotation, {index + 1: segment_id for index, segment_id in enumerate(segment_ids)}, outside


@contextlib.contextmanager
def _work_node(segmentation_node, name: str) -> Iterator[Any]:
    """A temporary labelmap node to export ``segmentation_node``'s segments into; removed afterwards, with the
    binary labelmaps an export made from closed surfaces (the segmentation node is left as it was)."""
    import slicer

    segmentation = segmentation_node.GetSegmentation()
    labelmap = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    had_labelmaps = segmentation.ContainsRepresentation(labelmap)
    node = segmentation_node.GetScene().AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
    try:
        yield node
    finally:
        remove_temporary_node(node)
        if not had_labelmaps and segmentation.ContainsRepresentation(labelmap):
            segmentation.RemoveRepresentation(labelmap)


def _id_array(segment_ids: list[str]):
    """``segment_ids`` as the vtkStringArray Slicer's export takes."""
    import vtk

    ids = vtk.vtkStringArray()
    for segment_id in segment_ids:
        ids.InsertNextValue(segment_id)
    return ids


def _frame_map(segmentation_node, reference_volume_node) -> Callable[[np.ndarray], np.ndarray] | None:
    """RAS points of the segmentation's frame to the volume's (:func:`_between`); None when both hang under the
    same parent transform (one frame)."""
    if segmentation_node.GetTransformNodeID() == reference_volume_node.GetTransformNodeID():
        return None
    return _between(segmentation_node, reference_volume_node)


def _exported(
    segmentation_node, segment_ids: list[str], reference_volume_node, work_node, count_outside: bool = False
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(uint8 labels [k, j, i] on ``reference_volume_node``'s grid, that grid's 4 x 4 IJK-to-RAS, and with
    ``count_outside`` the painted voxels whose centres lie outside that grid, else None) of ``segment_ids``
    (segment_ids[n] has label n + 1, later ones winning): Slicer's nearest-neighbour export, and each voxel holding
    the centre of a painted voxel of the segmentation's own grid that it missed; the export onto the segmentation's
    own grid, made when either needs it, serves both. ``work_node``: a labelmap node to export into."""
    import slicer
    import slicer.util

    ids = _id_array(segment_ids)
    if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
        segmentation_node, ids, work_node, reference_volume_node
    ):
        raise SegNetsError(
            f"Slicer could not export segmentation {segmentation_node.GetName()!r} "
            f"into the geometry of volume {reference_volume_node.GetName()!r}."
        )
    array = np.array(slicer.util.arrayFromVolume(work_node), dtype=np.uint8, copy=True)
    ijk_to_ras = ijk_to_ras_of(work_node)
    move = _frame_map(segmentation_node, reference_volume_node)
    on_grid = move is None and _on_grid(segmentation_node, segment_ids, ijk_to_ras)
    if on_grid and not count_outside:
        return array, ijk_to_ras, None  # each painted voxel is a voxel of the grid: the export missed none
    if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentation_node, ids, work_node):
        if count_outside:  # as before: nothing known outside when Slicer cannot export the segments on their own
            return array, ijk_to_ras, 0
        raise SegNetsError(f"Slicer could not export segmentation {segmentation_node.GetName()!r}.")
    own = _voxels(work_node)
    if own is None:
        return array, ijk_to_ras, 0 if count_outside else None
    kji, inside, target = _centres_inside(own, ijk_to_ras_of(work_node), array.shape, ijk_to_ras, move)
    if not on_grid:
        centres = _painted_centres(own, kji, inside, target, array.shape)
        array[array == 0] = centres[array == 0]  # Slicer's nearest labels first; what they missed added
    return array, ijk_to_ras, int((~inside).sum()) if count_outside else None


def _on_grid(segmentation_node, segment_ids: list[str], ijk_to_ras: np.ndarray) -> bool:
    """True when the binary labelmap of each of ``segment_ids`` lies on the grid of the 4 x 4 ``ijk_to_ras`` (the
    same axes and spacing, its first voxel a whole number of voxels away: a segmentation painted on the volume,
    cropped or not), so that a nearest-neighbour export keeps every painted voxel."""
    import slicer
    import vtk

    name = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    inverse, matrix = np.linalg.inv(ijk_to_ras), vtk.vtkMatrix4x4()
    for segment_id in segment_ids:
        image = segmentation_node.GetSegmentation().GetSegment(segment_id).GetRepresentation(name)
        if image is None:
            return False
        image.GetImageToWorldMatrix(matrix)
        relative = inverse @ matrix_to_numpy(matrix)  # segment voxel -> volume voxel
        offset = relative[:3, 3]
        if not (
            np.allclose(relative[:3, :3], np.eye(3), atol=1e-6) and np.allclose(offset, np.rint(offset), atol=1e-6)
        ):
            return False
    return True


def _between(source_node, target_node) -> Callable[[np.ndarray], np.ndarray]:
    """A map of RAS points (3, N) in ``source_node``'s own frame to ``target_node``'s, through their parent
    transforms (linear or not), as Slicer's export resamples across them."""
    import slicer
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk, vtk_to_numpy

    transform = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(
        source_node.GetParentTransformNode(), target_node.GetParentTransformNode(), transform
    )

    def move(points: np.ndarray) -> np.ndarray:
        given, moved = vtk.vtkPoints(), vtk.vtkPoints()
        given.SetData(numpy_to_vtk(np.ascontiguousarray(points.T, dtype=np.float64), deep=True))
        moved.SetDataTypeToDouble()
        transform.TransformPoints(given, moved)
        return vtk_to_numpy(moved.GetData()).T.copy()

    return move


def _voxels(labelmap_node) -> np.ndarray | None:
    """The voxels [k, j, i] of a labelmap node an export filled; None when it holds none (nothing painted)."""
    import slicer.util

    if labelmap_node.GetImageData() is None or labelmap_node.GetImageData().GetPointData().GetScalars() is None:
        return None
    return slicer.util.arrayFromVolume(labelmap_node)


def _refuse_covered(
    segmentation_node, segment_ids: list[str], exported: np.ndarray, reference_volume_node, work_node
) -> None:
    """Raise SegNetsError when a segment absent from the ``exported`` labelmap (segment_ids[n] has label n + 1)
    holds painted voxels in ``reference_volume_node``'s grid when exported alone: later segments cover it wholly
    (one painted only outside the volume is not refused here). ``work_node``: a labelmap node to export into."""
    present = set(np.unique(exported).tolist())
    covered = [
        segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
        for index, segment_id in enumerate(segment_ids)
        if index + 1 not in present
        and _exported(segmentation_node, [segment_id], reference_volume_node, work_node)[0].any()
    ]
    if covered:
        raise SegNetsError(
            f"segment {', '.join(repr(name) for name in covered)} of {segmentation_node.GetName()!r} lies wholly under "
            "later segments (overlapping layers), and a labelmap holds one label per voxel; make the segments not "
            "overlap or fine-tune on them apart."
        )


def outside_notes(segmentation_node, reference_volume_node, exported: np.ndarray, outside: int) -> list[str]:
    """A note when ``outside`` painted voxels of the segmentation lie outside ``reference_volume_node`` (left out of
    ``exported``, their labelmap on its grid; :func:`annotation_and_outside` gives both); SegNetsError when all of
    the painting does (not an unpainted segmentation)."""
    volume = reference_volume_node.GetName()
    if outside and not exported.any():
        raise SegNetsError(
            f"the segmentation {segmentation_node.GetName()!r} is painted only outside volume {volume!r} ({outside} "
            "voxels beyond its extent); paint the volume's own slices, or fine-tune on the volume it was painted on."
        )
    return [f"{outside} painted voxels lie outside volume {volume!r}: they were left out"] if outside else []


def labels_from_segments(segmentation_node, label_to_segment: dict[int, str]) -> list[LabelInfo]:
    """The label list (value, name, color, terminology) of the chosen segments, for a new model card."""
    segmentation = segmentation_node.GetSegmentation()
    labels = []
    for value, segment_id in sorted(label_to_segment.items()):
        segment = segmentation.GetSegment(segment_id)
        terminology = Terminology.from_slicer_string(segment.GetTerminology()) if segment.HasTerminology() else None
        labels.append(LabelInfo(value, segment.GetName(), tuple(segment.GetColor()), terminology))
    return labels


def _painted_centres(
    labels: np.ndarray,
    kji: tuple[np.ndarray, ...],
    inside: np.ndarray,
    target: np.ndarray,
    shape_kji: tuple[int, ...],
) -> np.ndarray:
    """uint8 labels on a reference grid of ``shape_kji``: each voxel holding the centre of a labelled voxel of
    ``labels`` [k, j, i], that voxel's label (the last one where several fall in it); ``kji``, ``inside``,
    ``target``: :func:`_centres_inside` of ``labels`` on that grid."""
    out = np.zeros(shape_kji, dtype=np.uint8)
    out[target[2][inside], target[1][inside], target[0][inside]] = labels[kji][inside]
    return out


def _centres_inside(
    labels: np.ndarray,
    ijk_to_ras: np.ndarray,
    shape_kji: tuple[int, ...],
    reference_ijk_to_ras: np.ndarray,
    move: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """(the labelled voxels' indices (k, j, i) in ``labels``, bool (N,): whether each one's centre lies in a voxel of
    the reference grid (``shape_kji``, 4 x 4 ``reference_ijk_to_ras``), int (3, N): that voxel's (i, j, k));
    ``labels`` lie on a grid with the 4 x 4 ``ijk_to_ras``; ``move``: RAS points (3, N) of that grid's frame to the
    reference's (None: one frame)."""
    kji = np.nonzero(labels)
    ijk1 = np.stack([kji[2], kji[1], kji[0], np.ones_like(kji[0])]).astype(float)
    to_reference = np.linalg.inv(np.asarray(reference_ijk_to_ras, float))
    if move is None:
        ijk = to_reference @ np.asarray(ijk_to_ras, float) @ ijk1
    else:
        ras = np.asarray(ijk_to_ras, float) @ ijk1
        ras[:3] = move(ras[:3])
        ijk = to_reference @ ras
    target = np.rint(ijk[:3]).astype(int)
    inside = np.all((target >= 0) & (target < np.array(shape_kji[::-1])[:, None]), axis=0)
    return kji, inside, target
