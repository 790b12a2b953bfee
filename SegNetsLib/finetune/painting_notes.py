"""Notes on what a painting implies that its painter may not expect: said with the result, nothing changed.

Arrays are [k, j, i]; slices are {array axis: painted slice indices} (:mod:`SegNetsLib.core.annotation`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from SegNetsLib.core.annotation import is_dense, labelled, slices_mask
from SegNetsLib.finetune.cleanup import SINGLE_SLICE_MARGIN, annotated_range, lone_slice_margin

_LISTED = 5  # slices named in a note, at most
_FILLED = " (if Fill between slices filled those between the slices you painted, fine-tune from those slices alone)"
_SCANT = 0.1  # a label on a painted slice with under this share of the painted slices beside it: a leftover


def painting_notes(
    labels: np.ndarray,
    weight: np.ndarray,
    slices: Mapping[int, Sequence[int]],
    ignore_value: int | None,
    names: Mapping[int, str] | None = None,
    from_scratch: bool = False,
    spacing: Sequence[float] | None = None,
) -> list[str]:
    """Notes for painted ``labels`` [k, j, i] on ``slices`` (``weight``: their weight map,
    :func:`~SegNetsLib.core.annotation.weight_map`): a label absent from a painted slice between two that hold it
    (learned as background there) or left there as a few voxels (an erase stroke's leftovers), an outline drawn on a
    painted slice and not filled (its inside background too), paint off the painted slices (a Sphere brush's caps,
    :func:`~SegNetsLib.core.strokes.sphere_strokes`: not learned from), and, for a network learned from the painting
    alone (``from_scratch``), consecutive painted slices or a lone one (the result then stays on or near them:
    :func:`~SegNetsLib.finetune.cleanup.annotated_range`; ``spacing`` (i, j, k) mm: how far from a lone one).
    None for a dense annotation (:func:`~SegNetsLib.core.annotation.is_dense`): every slice is painted, so a label
    absent from one is background there and the structure does end where its painting does."""
    if is_dense(weight):
        return []
    axes = {axis: sorted(set(int(i) for i in indices)) for axis, indices in slices.items() if indices}
    notes = []
    off = labelled(labels, ignore_value) & ~slices_mask(labels.shape, slices)  # a ball-shaped brush's caps
    if off.any():
        notes.append(
            f"{int(off.sum())} painted voxels lie on slices beside those painted on, where a ball-shaped brush (the "
            "Sphere brush) reached: they are kept in the result but not learned from, and the rest of those slices is "
            "not taken as background"
        )
    for axis, indices in axes.items():
        moved = np.moveaxis(labels, axis, 0)
        notes += _absent_between(moved, indices, axis, ignore_value, names or {})
        notes += _scant_between(moved, indices, axis, ignore_value, names or {})
        notes += _enclosed(moved, indices, axis, ignore_value, names or {})
        if from_scratch and len(axes) == 1 and len(indices) >= 2 and _stays(moved, indices, ignore_value):
            notes.append(
                f"slices {indices[0]}-{indices[-1]} along axis {axis} are painted one after another: the structure "
                "is taken to end there, so the result stays on them; if it goes on, paint slices a few apart"
                + _FILLED
                * (len(indices) > 2)
            )
        if from_scratch and len(axes) == 1 and len(indices) == 1:
            notes += _lone(moved, indices[0], axis, ignore_value, spacing)
    return notes


def _lone(
    moved: np.ndarray, index: int, axis: int, ignore_value: int | None, spacing: Sequence[float] | None
) -> list[str]:
    """A note when ``index`` is the one painted slice of ``moved`` (the axis first), holding the structure: a
    network learned from it alone results only within :func:`~SegNetsLib.finetune.cleanup.lone_slice_margin` slices
    of it (:data:`SINGLE_SLICE_MARGIN` without ``spacing``, (i, j, k) mm of the unmoved array)."""
    painted = labelled(moved[index], ignore_value)
    margin = SINGLE_SLICE_MARGIN if spacing is None else lone_slice_margin(painted, spacing, axis)
    kept = annotated_range([index], moved.shape[0], margin)
    if not painted.any() or (kept.start == 0 and kept.stop == moved.shape[0]):
        return []
    return [
        f"only slice {index} along axis {axis} is painted: the result stays on slices {kept.start}-{kept.stop - 1}, "
        f"within {margin} slices of it; if the structure goes on, paint a slice near each of its ends too"
    ]


def _stays(moved: np.ndarray, indices: Sequence[int], ignore_value: int | None) -> bool:
    """Whether the result stays on the painted slices ``indices`` of ``moved`` (the axis first) though the outer
    two hold the structure and the volume goes on: consecutive slices (:func:`annotated_range` adds none)."""
    kept = annotated_range(indices, moved.shape[0])
    ends = all(labelled(moved[s], ignore_value).any() for s in (indices[0], indices[-1]))
    return ends and kept == slice(indices[0], indices[-1] + 1) and (indices[0] > 0 or indices[-1] < moved.shape[0] - 1)


def _absent_between(
    moved: np.ndarray, indices: Sequence[int], axis: int, ignore_value: int | None, names: Mapping[int, str]
) -> list[str]:
    """A note per label missing from painted slices (of ``moved``, the axis first) between two that hold it, where
    those slices are painted background."""
    painted = dict(zip(indices, moved[list(indices)]))
    values = np.unique(np.stack(list(painted.values())))
    notes = []
    for value in (int(v) for v in values if v != 0 and v != ignore_value):
        holding = [s for s in indices if (painted[s] == value).any()]
        missing = [
            s
            for s in indices
            if holding[0] < s < holding[-1] and s not in holding and _painted_background(painted, holding, s, value)
        ]
        if missing:
            listed = ", ".join(map(str, missing[:_LISTED])) + (", ..." if len(missing) > _LISTED else "")
            unknown = f", or mark the parts you did not paint {ignore_value}" if ignore_value is not None else ""
            notes.append(
                f"{names.get(value, f'label {value}')} is absent from painted slice(s) {listed} along axis {axis} "
                f"between slices that hold it: it is learned as background there; paint it there{unknown}"
            )
    return notes


def _scant_between(
    moved: np.ndarray, indices: Sequence[int], axis: int, ignore_value: int | None, names: Mapping[int, str]
) -> list[str]:
    """A note per label holding under :data:`_SCANT` of the voxels of the nearest painted slices on either side that
    hold it on painted slices of ``moved`` (the axis first) between them, where those slices are painted background
    (the rest of the structure there is learned as background)."""
    painted = dict(zip(indices, moved[list(indices)]))
    notes = []
    for value in (int(v) for v in np.unique(np.stack(list(painted.values()))) if v != 0 and v != ignore_value):
        counts = {s: int((plane == value).sum()) for s, plane in painted.items()}
        holding = [s for s in indices if counts[s]]
        scant = [
            s
            for s in holding[1:-1]
            if counts[s]
            < _SCANT * min(counts[max(h for h in holding if h < s)], counts[min(h for h in holding if h > s)])
            and _painted_background(painted, holding, s, value)
        ]
        if scant:
            listed = ", ".join(map(str, scant[:_LISTED])) + (", ..." if len(scant) > _LISTED else "")
            held = ", ".join(str(counts[s]) for s in scant[:_LISTED]) + (", ..." if len(scant) > _LISTED else "")
            notes.append(
                f"{names.get(value, f'label {value}')} holds only {held} voxel(s) on painted slice(s) {listed} along "
                f"axis {axis}, under a tenth of the painted slices beside them: the rest of it is learned as background "
                "there; paint it whole there, or erase what is left"
            )
    return notes


def _enclosed(
    moved: np.ndarray, indices: Sequence[int], axis: int, ignore_value: int | None, names: Mapping[int, str]
) -> list[str]:
    """A note per label whose painting encloses more voxels painted 0 than it holds on painted slices of ``moved``
    (the axis first): an outline drawn and not filled, its inside learned as background. A smaller enclosed part (a
    vertebra's canal, a kidney's sinus: at most 0.46 of the painting on any slice of the benchmark's 66 structures)
    is taken as meant."""
    found: dict[int, list[tuple[int, int, int]]] = {}  # label -> [(slice, enclosed voxels, painted voxels)]
    for s in indices:
        plane = moved[s]
        for value in (int(v) for v in np.unique(plane) if v != 0 and v != ignore_value):
            mask = plane == value
            inside = int((ndimage.binary_fill_holes(mask) & (plane == 0)).sum())
            if inside >= mask.sum():
                found.setdefault(value, []).append((s, inside, int(mask.sum())))
    notes = []
    for value, outlines in sorted(found.items()):
        listed = ", ".join(str(s) for s, _, _ in outlines[:_LISTED]) + (", ..." if len(outlines) > _LISTED else "")
        inside, held = sum(o[1] for o in outlines), sum(o[2] for o in outlines)
        unknown = f" or mark it {ignore_value}" if ignore_value is not None else ""
        notes.append(
            f"{names.get(value, f'label {value}')} is painted as an outline on painted slice(s) {listed} along axis "
            f"{axis} ({inside} unpainted voxels inside, {held} painted): the inside is learned as background; if it "
            f"belongs to it, paint it (the Draw effect, or Scissors' Fill inside, fills an outline){unknown}"
        )
    return notes


def _painted_background(painted: Mapping[int, np.ndarray], holding: Sequence[int], s: int, value: int) -> bool:
    """Whether slice ``s`` is painted background (0) where the nearest slices holding ``value`` on either side
    hold it (not left unknown there)."""
    below, above = max(h for h in holding if h < s), min(h for h in holding if h > s)
    beside = (painted[below] == value) | (painted[above] == value)
    return bool((painted[s][beside] == 0).any())
