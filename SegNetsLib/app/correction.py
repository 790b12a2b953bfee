"""The correction loop in the panel and SegNets Web, without a GUI: where the suggested slice is, what to
tell the user about a round, and the round to step back to.

A round's result (:class:`SegNetsLib.app.logic.FinetuneOutcome`) carries its round number and the slice to
paint next; a second Fine-tune from the model just made continues it warm (:mod:`SegNetsLib.finetune.rounds`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from SegNetsLib.card.versions import split_reference
from SegNetsLib.core.annotation import slice_plane
from SegNetsLib.finetune.rounds import RoundEntry, previous_round
from SegNetsLib.finetune.suggest import SliceSuggestion
from SegNetsLib.models.library import ModelLibrary

AXIS_NAMES = {0: "axial", 1: "coronal", 2: "sagittal"}  # array axes k, j, i of an axially acquired volume


def slice_centre_ijk(shape_kji: Sequence[int], suggestion: SliceSuggestion) -> tuple[float, float, float]:
    """IJK (i, j, k) voxel coordinates of the centre of the suggested slice of a volume of ``shape_kji``."""
    centre = [(n - 1) / 2.0 for n in shape_kji]  # k, j, i
    centre[suggestion.axis] = float(suggestion.index)
    return centre[2], centre[1], centre[0]


def suggestion_ras(ijk_to_ras: np.ndarray, shape_kji: Sequence[int], suggestion: SliceSuggestion) -> np.ndarray:
    """RAS (mm) of the centre of the suggested slice, from the volume's 4 x 4 IJK-to-RAS matrix: the point the
    slice views jump to."""
    i, j, k = slice_centre_ijk(shape_kji, suggestion)
    return (np.asarray(ijk_to_ras, dtype=float) @ np.array([i, j, k, 1.0]))[:3]


def node_ijk_to_ras(volume_node) -> np.ndarray:
    """A volume node's IJK-to-RAS matrix as a 4 x 4 array."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def describe_round(
    number: int,
    suggestion: SliceSuggestion | None,
    seconds: float | None = None,
    ijk_to_ras: np.ndarray | None = None,
) -> str:
    """One line for the user: the round, its time and the slice to paint next, named by its plane in the volume
    whose 4 x 4 ``ijk_to_ras`` is given (without it: the planes of an axially acquired volume)."""
    text = f"Round {number}" if number else "Fine-tuned"
    if seconds is not None:
        text += f" ({seconds:.0f} s)"
    if suggestion is None:
        return text + "; no slice to suggest: the result adds nothing beyond the painted slices."
    if ijk_to_ras is not None:
        where = slice_plane(np.asarray(ijk_to_ras, dtype=float)[:3, :3], suggestion.axis)
    else:
        where = AXIS_NAMES.get(suggestion.axis, f"axis {suggestion.axis}")
    why = f" ({suggestion.reason()})" if suggestion.painted else ""
    return text + f"; paint {where} slice {suggestion.index} next{why}, then Update."


def step_back(library: ModelLibrary, reference: str) -> RoundEntry | None:
    """The round before the model ``reference`` ("id@version"), kept in ``library``; None at round 1. Raises
    SegNetsError, naming it, when that round's version is no longer in ``library``."""
    model_id, version = split_reference(reference)
    return previous_round(library, library.card(model_id, version))
