"""Volume nodes <-> :class:`SegNetsLib.core.volume.Volume` (array [k, j, i] plus LPS geometry).

Slicer stores geometry as an IJK-to-RAS matrix; ``Volume`` is LPS. The conversion goes through
``Volume.ijk_to_ras`` / ``Volume.from_ijk_to_ras`` only, so oblique and flipped axes survive.
"""

from __future__ import annotations

import numpy as np

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume


def matrix_to_numpy(vtk_matrix) -> np.ndarray:
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def numpy_to_matrix(array: np.ndarray):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def ijk_to_ras_of(node) -> np.ndarray:
    """The node's 4x4 IJK-to-RAS matrix as a numpy array."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix_to_numpy(matrix)


def volume_from_node(node) -> Volume:
    """A copy of a scalar (or labelmap) volume node's voxels [k, j, i] and geometry.

    Parent transforms are not applied: the geometry is the node's own IJK-to-RAS.
    """
    import slicer.util

    if node is None or node.GetImageData() is None:
        name = node.GetName() if node is not None else "None"
        raise SegNetsError(f"volume {name!r} has no image data; load or select a volume first.")
    if node.GetImageData().GetNumberOfScalarComponents() != 1:
        raise SegNetsError(f"volume {node.GetName()!r} has several components per voxel; choose a scalar volume.")
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    return Volume.from_ijk_to_ras(array, ijk_to_ras_of(node))


def remove_temporary_node(node) -> None:
    """Remove a helper node with the display, storage and (non-default) color nodes made for it."""
    scene = node.GetScene()
    extras = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    colors = [display.GetColorNode() for display in extras if display is not None and hasattr(display, "GetColorNode")]
    extras += [color for color in colors if color is not None and not color.GetSingletonTag()]
    extras.append(node.GetStorageNode())
    scene.RemoveNode(node)
    for extra in extras:
        if extra is not None and scene.IsNodePresent(extra):
            scene.RemoveNode(extra)


def _new_volume_node(scene, class_name: str, volume: Volume, name: str, display: bool = True):
    import slicer.util

    if volume.array.ndim != 3:
        raise SegNetsError(f"volume {name!r} has {volume.array.ndim} dimensions; a volume node holds one 3D array.")
    array = _vtk_array(volume.array, name)  # before the node exists: a refusal leaves nothing in the scene
    node = scene.AddNewNodeByClass(class_name, name)
    node.SetIJKToRASMatrix(numpy_to_matrix(volume.ijk_to_ras()))
    slicer.util.updateVolumeFromArray(node, array)
    if display:
        node.CreateDefaultDisplayNodes()
    return node


def _vtk_array(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` in a type VTK image data holds: bool as uint8, float16 as float32, 64-bit integers as 32-bit
    ones when their values fit (refused otherwise)."""
    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    elif array.dtype.kind in "iu" and array.dtype.itemsize == 8:
        narrower = np.int32 if array.dtype.kind == "i" else np.uint32
        if array.size and (array.min() < np.iinfo(narrower).min or array.max() > np.iinfo(narrower).max):
            raise SegNetsError(f"volume {name!r} holds values beyond 32-bit integers, which a volume node cannot.")
        array = array.astype(narrower)
    return np.ascontiguousarray(array)


def volume_node_from_volume(scene, volume: Volume, name: str):
    """A new ``vtkMRMLScalarVolumeNode`` in ``scene`` holding ``volume`` (array copied, RAS geometry)."""
    return _new_volume_node(scene, "vtkMRMLScalarVolumeNode", volume, name)


def labelmap_node_from_volume(scene, labelmap: Volume, name: str, display: bool = True):
    """A new ``vtkMRMLLabelMapVolumeNode`` holding integer labels [k, j, i] in ``labelmap``'s geometry.

    display: create its display nodes (False for a helper node removed right after use).
    """
    if not np.issubdtype(labelmap.array.dtype, np.integer):
        raise SegNetsError(f"labelmap {name!r} holds {labelmap.array.dtype} values; labels must be integers.")
    return _new_volume_node(scene, "vtkMRMLLabelMapVolumeNode", labelmap, name, display)


def first_input_volume(scene):
    """The first volume the panel's input selector lists, or None: a node of class exactly
    vtkMRMLScalarVolumeNode (the selector shows no child classes: label maps, vector and tensor volumes) that
    is not hidden from editors. ``scene.GetFirstNodeByClass`` would also return a label map added first."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
        if node.GetClassName() == "vtkMRMLScalarVolumeNode" and not node.GetHideFromEditors():
            return node
    return None
