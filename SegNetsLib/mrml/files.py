"""Reading volumes into and writing segmentations out of a scene with Slicer's own storage nodes.

``slicer.util.loadVolume``/``saveNode`` need the Slicer application; these work with slicer-core too.
"""

from __future__ import annotations

import os
from pathlib import Path

from SegNetsLib.core.atomic import atomic_file
from SegNetsLib.core.errors import SegNetsError


def load_volume_node(volumes_logic, path: str | os.PathLike, name: str | None = None):
    """A scalar volume node read from ``path`` (NRRD, NIfTI, MHA...) by Slicer's Volumes logic; a DICOM file (its
    whole series) through :func:`~SegNetsLib.imageio.volumes.read_volume`, as everywhere else."""
    from SegNetsLib.imageio.volumes import input_stem, is_dicom_input, read_volume

    path = Path(path)
    if not path.is_file():
        raise SegNetsError(f"{path}: no such volume file.")
    if is_dicom_input(path):
        from SegNetsLib.mrml.volumes import volume_node_from_volume

        return volume_node_from_volume(volumes_logic.GetMRMLScene(), read_volume(path), name or input_stem(path))
    _check_header(path)
    node = volumes_logic.AddArchetypeVolume(str(path), name or path.name.split(".")[0], 0, None)
    if node is None or node.GetImageData() is None:
        raise SegNetsError(f"{path}: Slicer could not read this file as a volume.")
    return node


def _check_header(path: Path) -> None:
    """Read the header with SimpleITK first: Slicer's archetype reader can crash on a corrupt file."""
    from SegNetsLib.imageio.volumes import read_header

    reader = read_header(path)
    if reader.GetDimension() != 3:
        raise SegNetsError(f"{path}: holds a {reader.GetDimension()}D image; SegNets segments 3D volumes.")


def save_segmentation_node(node, path: str | os.PathLike) -> Path:
    """Write a segmentation node as ``.seg.nrrd`` (atomically) with Slicer's segmentation storage node.

    A node whose source representation is not a binary labelmap (closed surfaces, planar contours) is written
    from a copy converted to one: Slicer's storage node would write such a node as VTK multiblock XML under the
    .seg.nrrd name, with its surfaces in a folder beside it. The node itself is left as it is.
    """
    import slicer

    path = Path(path)
    if not path.name.lower().endswith(".seg.nrrd"):
        raise SegNetsError(f"{path}: segmentations are written as .seg.nrrd; change the file name.")
    node = _with_labelmap_source(node, path)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    with atomic_file(path) as partial:
        storage.SetFileName(str(partial))
        if not storage.WriteData(node):
            raise SegNetsError(f"{path}: Slicer could not write segmentation {node.GetName()!r}.")
    return path


def _with_labelmap_source(node, path: Path):
    """``node``, or an unattached copy of it whose source representation is the binary labelmap."""
    import slicer

    labelmap = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    if node.GetSegmentation().GetSourceRepresentationName() == labelmap:
        return node
    segmentation = slicer.vtkSegmentation()
    segmentation.DeepCopy(node.GetSegmentation())
    if not segmentation.CreateRepresentation(labelmap):
        raise SegNetsError(
            f"{path}: segmentation {node.GetName()!r} holds {segmentation.GetSourceRepresentationName()} segments "
            "that Slicer could not turn into a labelmap; a .seg.nrrd holds labelmaps."
        )
    segmentation.SetSourceRepresentationName(labelmap)
    copy = slicer.vtkMRMLSegmentationNode()
    copy.SetName(node.GetName())
    copy.SetAndObserveSegmentation(segmentation)
    return copy
