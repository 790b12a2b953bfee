"""RoI boxes (input voxel indices) <-> markups ROI nodes the user can see, move and resize.

A box is (z0, y0, x0, z1, y1, x1), half-open voxel indices in array order [k, j, i], as
``SegNetsLib.core.box`` defines it. The ROI node is oriented along the volume's voxel axes, in the volume's
frame under its parent transform, so a box on an oblique or transformed volume maps onto an ROI and back without
growing.
"""

from __future__ import annotations

import numpy as np

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.mrml.volumes import ijk_to_ras_of, matrix_to_numpy, numpy_to_matrix

Box = tuple[int, int, int, int, int, int]
_TOLERANCE = 1e-3  # voxels: a corner this close to a voxel edge counts as on it


def _volume_to_world(volume_node) -> np.ndarray:
    """The volume node's IJK-to-world matrix (its IJK-to-RAS and any linear parent transform)."""
    return _node_to_world(volume_node, f"volume {volume_node.GetName()!r}") @ ijk_to_ras_of(volume_node)


def _node_to_world(node, what: str) -> np.ndarray:
    """The 4 x 4 matrix from ``node``'s own coordinates to world: its linear parent transform, or the identity."""
    import slicer
    import vtk

    parent = node.GetParentTransformNode()
    if parent is None:
        return np.eye(4)
    if not parent.IsTransformToWorldLinear():
        raise SegNetsError(f"{what} is under a non-linear transform; harden it first.")
    to_world = vtk.vtkMatrix4x4()
    slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(parent, None, to_world)
    return matrix_to_numpy(to_world)


def roi_node_from_box(volume_node, box: Box, name: str, roi_node=None):
    """A markups ROI node covering ``box`` of ``volume_node``'s voxels (new unless ``roi_node`` is given). It is
    placed in the volume's own frame, under the volume's parent transform, so it follows that transform as the
    volume does, and a sheared transform maps it back onto the same voxels."""
    z0, y0, x0, z1, y1, x1 = (int(value) for value in box)
    if not (z1 > z0 and y1 > y0 and x1 > x0):
        raise SegNetsError(f"RoI box {tuple(box)} is empty; every upper index must exceed its lower one.")
    _node_to_world(volume_node, f"volume {volume_node.GetName()!r}")  # refuses a non-linear parent transform
    ijk_to_world = ijk_to_ras_of(volume_node)  # the ROI's node frame: the volume's own, before its transform
    axes = ijk_to_world[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    directions = axes / spacing
    if np.linalg.det(directions) < 0:  # keep the ROI's frame a rotation; a box is symmetric anyway
        directions[:, 2] = -directions[:, 2]
    center_ijk = np.array([(x0 + x1 - 1) / 2.0, (y0 + y1 - 1) / 2.0, (z0 + z1 - 1) / 2.0, 1.0])
    center = (ijk_to_world @ center_ijk)[:3]
    size = np.array([x1 - x0, y1 - y0, z1 - z0]) * spacing
    object_to_node = np.eye(4)
    object_to_node[:3, :3] = directions
    object_to_node[:3, 3] = center
    if roi_node is None:
        roi_node = volume_node.GetScene().AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
        roi_node.CreateDefaultDisplayNodes()
    roi_node.SetAndObserveObjectToNodeMatrix(numpy_to_matrix(object_to_node))
    roi_node.SetSize(*size.tolist())
    roi_node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    return roi_node


def _roi_corners_world(roi_node) -> np.ndarray:
    """The ROI's 8 corners in world coordinates (through its own parent transform), as a (8, 4) array."""
    size = np.array(roi_node.GetSize())
    object_to_node = matrix_to_numpy(roi_node.GetObjectToNodeMatrix())
    object_to_world = _node_to_world(roi_node, f"RoI {roi_node.GetName()!r}") @ object_to_node
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)
    corners = np.hstack([signs * size / 2.0, np.ones((8, 1))])
    return corners @ object_to_world.T


def box_from_roi_node(roi_node, volume_node) -> Box:
    """The smallest voxel box of ``volume_node`` that contains the ROI, clipped to the volume.

    Raises SegNetsError when the ROI lies outside the volume.
    """
    world_to_ijk = np.linalg.inv(_volume_to_world(volume_node))
    ijk = (_roi_corners_world(roi_node) @ world_to_ijk.T)[:, :3]
    low = np.floor(ijk.min(axis=0) + 0.5 + _TOLERANCE).astype(int)
    high = np.ceil(ijk.max(axis=0) + 0.5 - _TOLERANCE).astype(int)
    dims = volume_node.GetImageData().GetDimensions()  # (i, j, k)
    low = np.maximum(low, 0)
    high = np.minimum(high, dims)
    if np.any(high <= low):
        raise SegNetsError(f"RoI {roi_node.GetName()!r} does not overlap volume {volume_node.GetName()!r}.")
    (x0, y0, z0), (x1, y1, z1) = low.tolist(), high.tolist()
    return (z0, y0, x0, z1, y1, x1)
