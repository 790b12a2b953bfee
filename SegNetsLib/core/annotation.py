"""Sparse annotations: which slices a user annotated and the per-voxel weight map they give.

An annotation is a labelmap [k, j, i] in the image's geometry: values 1..K are classes, 0 is
background inside an annotated slice, and ``ignore_value`` marks unlabeled voxels inside one.
Every voxel outside the annotated slices is unlabeled (weight 0), as in the 3D U-Net paper.
Axes are array axes: 0 = k (axial for an axial scan), 1 = j, 2 = i.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.strokes import pieces_of, sphere_strokes
from SegNetsLib.core.volume import Volume

Slices = dict[int, list[int]]
"""Annotated slices: array axis (0, 1, 2) -> sorted slice indices along that axis."""

DEFAULT_IGNORE_VALUE = 255
DENSE_FRACTION = 0.9  # weight covering this much of the volume: it is ordinary (dense) training
BLOCK_END_SHARE = 0.5
"""A painted block's end faces hold at least this share of its fullest slice: it was cut flat there. Checked on the
TUNE structures of bench/sparse_sets.py (ts_ct_full, ts_mr_sm): blocks of 2, 3 and 5 axial slices read as painted in
106 of 111 cases, two blocks apart read as painted in all but the 8 of 74 cases the reading missed without a block
rule."""


def labelled(labels: np.ndarray, ignore_value: int | None) -> np.ndarray:
    """Bool like ``labels``: the voxels holding a label (neither 0 nor ``ignore_value``)."""
    mask = labels != 0
    if ignore_value is not None:
        mask &= labels != ignore_value
    return mask


def annotated_slices(
    labels: np.ndarray,
    ignore_value: int | None = DEFAULT_IGNORE_VALUE,
    given: Mapping[int, Sequence[int]] | None = None,
) -> Slices:
    """The slices, along any of the three axes, that hold the nonzero voxels of ``labels`` [k, j, i]:
    ``given`` (slices known to be annotated, for example those of earlier rounds) and a cover of the rest.

    A nonzero voxel lies in one slice along each axis, so the rest is covered greedily: the slice holding
    the most not-yet-covered labelled voxels that are painted as a region in it (a labelled neighbour along
    both of its in-plane axes) is taken first, any labelled voxel once no such voxel is left; of slices holding
    equally many, one along the axis most annotated slices lie along (a painter keeps to an axis: a structure's
    end painted as one row on a sagittal slice is that sagittal slice, not the axial one through it). Three annotated
    axial slices thus give three axial slices, not the few coronal slices that cross a thin vessel painted on
    them; axial, coronal and sagittal slices may be mixed. A block of consecutive slices painted one after another
    is read along the axis the painter stopped at: slices along one axis each written whole (no ``ignore_value``
    voxel in them, nothing else but ``ignore_value``), or else the axis across which the block ends in its
    fullest faces (:func:`_block_slices`), however few slices along another axis would hold its labels. So are
    blocks apart (two pairs of axial slices across a thin structure) that read along one and the same axis. Paint a
    ball-shaped brush (Slicer's Sphere brush) laid on the slices beside the one painted on
    (:func:`~SegNetsLib.core.strokes.sphere_strokes`) is on no annotated slice: only that one is.
    """
    if labels.ndim != 3:
        raise SegNetsError(f"the annotation must be a 3D labelmap; it has shape {labels.shape}.")
    painted = labelled(labels, ignore_value)
    slices = merge_slices(given or {}, _whole_slices(labels, painted, ignore_value))
    uncovered = painted & ~slices_mask(labels.shape, slices)
    pieces = pieces_of(uncovered)
    centres, caps = sphere_strokes(uncovered, pieces)
    if caps.any():  # paint a ball-shaped brush laid beside the slice painted on: on no annotated slice
        painted, uncovered = painted & ~caps, uncovered & ~caps
        slices = merge_slices(slices, centres)
        uncovered &= ~slices_mask(labels.shape, slices)
        pieces = pieces_of(uncovered)
    if uncovered.any():
        slices = merge_slices(slices, _block_slices(uncovered) or _blocks_apart(*pieces))
        uncovered &= ~slices_mask(labels.shape, slices)
    if not uncovered.any():  # ``given`` covers every labelled voxel
        return {axis: sorted(indices) for axis, indices in slices.items()}
    other_axes = {0: (1, 2), 1: (0, 2), 2: (0, 1)}
    near = [_has_neighbour(painted, axis) for axis in range(3)]
    in_region = [painted & near[a] & near[b] for a, b in other_axes.values()]
    picked = []
    while uncovered.any():
        counts = [(uncovered & in_region[axis]).sum(axis=other_axes[axis]) for axis in range(3)]
        if not max(c.max() for c in counts):
            counts = [uncovered.sum(axis=other_axes[axis]) for axis in range(3)]
        most = max(c.max() for c in counts)  # of equals, the axis holding most slices (the first of those)
        axis = max((a for a in range(3) if counts[a].max() == most), key=lambda a: len(slices[a]))
        index = int(np.argmax(counts[axis]))
        slices[axis].append(index)
        picked.append((axis, index))
        uncovered[(slice(None),) * axis + (index,)] = False
    return {axis: sorted(indices) for axis, indices in _without_redundant(painted, slices, picked).items()}


def _without_redundant(painted: np.ndarray, slices: Slices, picked: Sequence[tuple[int, int]]) -> Slices:
    """``slices`` less those of ``picked`` ((axis, index) the cover took) whose ``painted`` voxels [k, j, i] the
    others all hold, the earliest taken first: a slice taken early for the most voxels (a coronal one crossing two
    painted axial neighbours) can be wholly covered by the slices taken after it, and as an annotated slice it
    would teach every unpainted voxel on it as background."""
    kept = {axis: list(indices) for axis, indices in slices.items()}
    for axis, index in picked:
        plane = (slice(None),) * axis + (index,)
        kept[axis].remove(index)
        if not (painted[plane] & ~slices_mask(painted.shape, kept)[plane]).any():
            continue  # every painted voxel of it lies on another annotated slice
        kept[axis].append(index)
    return kept


def _whole_slices(labels: np.ndarray, painted: np.ndarray, ignore_value: int | None) -> Slices:
    """{axis: the slices holding a ``painted`` voxel} when ``labels`` [k, j, i] are slices along that one axis each
    written whole, the rest ``ignore_value`` (some slice of it wholly so); {} otherwise (no ignore value, or none
    such: the outside left 0, slices along several axes, a painted slice holding ``ignore_value``)."""
    if ignore_value is None:
        return {}
    written = labels != ignore_value
    for axis, others in enumerate(((1, 2), (0, 2), (0, 1))):
        holds, full = written.any(axis=others), written.all(axis=others)
        if np.array_equal(holds, full) and not full.all():
            return {axis: [int(i) for i in np.flatnonzero(painted.any(axis=others))]}
    return {}


def _block_slices(painted: np.ndarray) -> Slices:
    """{axis: its slices holding a ``painted`` voxel} for a block painted slice after slice: along every axis the
    slices holding paint are consecutive, along that axis each holds a region (2 x 2 painted voxels in its plane,
    not only lines where slices of other axes cross it), and of the axes where that holds it alone has the block end
    in its fullest faces (its first and last slices hold the largest share of its fullest slice, on average at least
    ``BLOCK_END_SHARE``; a face at the volume's end does not count: painting stops flat across the axis painted
    along, where the painter stopped; across the others the structure's own boundary ends it). {} otherwise (slices
    a gap apart, slices along several axes, a whole structure, or a box, which reads alike along every axis)."""
    others = ((1, 2), (0, 2), (0, 1))
    held = [np.flatnonzero(painted.any(axis=o)) for o in others]  # [k, j, i] indices holding paint
    if any(len(h) != h[-1] - h[0] + 1 for h in held):  # an empty slice between painted ones: not one block
        return {}
    block = painted[tuple(slice(h[0], h[-1] + 1) for h in held)]  # (the painted voxels' box)
    shares: dict[int, float] = {}
    for axis in range(3):
        moved = np.moveaxis(block, axis, 0)
        counts = moved.sum(axis=(1, 2))
        squares = moved[:, :-1, :-1] & moved[:, 1:, :-1] & moved[:, :-1, 1:] & moved[:, 1:, 1:]
        if counts.all() and squares.any(axis=(1, 2)).all():
            ends = (0 < held[axis][0], held[axis][-1] < painted.shape[axis] - 1)  # a face at the volume's end:
            faces = counts[0] * ends[0] + counts[-1] * ends[1]  # no painter stopped there
            shares[axis] = float(faces) / (max(sum(ends), 1) * float(counts.max()))
    best = max(shares, key=shares.get, default=None)
    if best is None or shares[best] < BLOCK_END_SHARE:  # no flat cut: blocks apart, slices along two axes, a whole
        return {}  # structure
    if any(share >= shares[best] for axis, share in shares.items() if axis != best):
        return {}
    return {best: [int(i) for i in held[best]]}


def _blocks_apart(pieces: np.ndarray, count: int) -> Slices:
    """{axis: its slices holding them} for the ``count`` pieces numbered in ``pieces`` [k, j, i] (of the paint not
    yet covered, :func:`~SegNetsLib.core.strokes.pieces_of`: no two touch, even at a corner) that
    :func:`_block_slices` reads each on its own, when it reads all of them along one and the same axis; the pieces it
    reads along none are left to the cover. {} otherwise (one piece, none read, or pieces read along different
    axes). Two pairs of axial slices a gap apart across a thin structure are two blocks, each cut flat across the axis
    painted, though the two or three sagittal slices crossing both would hold all of their voxels."""
    if count < 2:
        return {}
    found: list[Slices] = []
    for number, box in enumerate(ndimage.find_objects(pieces), start=1):
        grown = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)  # a voxel more: the volume's ends stay
        read = _block_slices(pieces[grown] == number)
        found.append({axis: [i + grown[axis].start for i in indices] for axis, indices in read.items()})
    axes = {axis for read in found for axis in read}
    return merge_slices(*found) if len(axes) == 1 else {}


def _has_neighbour(mask: np.ndarray, axis: int) -> np.ndarray:
    """Bool like ``mask`` [k, j, i]: a True neighbour on either side along ``axis``."""
    near = np.zeros(mask.shape, dtype=bool)
    lower, upper = [slice(None)] * 3, [slice(None)] * 3
    lower[axis], upper[axis] = slice(None, -1), slice(1, None)
    near[tuple(lower)] |= mask[tuple(upper)]
    near[tuple(upper)] |= mask[tuple(lower)]
    return near


def parse_slices(text: str) -> Slices:
    """Parse ``"0:10,20;1:5"`` (axis:indices, axes separated by ';' or given in separate strings)."""
    slices: Slices = {0: [], 1: [], 2: []}
    for part in (p for p in text.replace(" ", "").split(";") if p):
        axis_text, _, indices_text = part.partition(":")
        try:
            axis = int(axis_text)
            indices = [int(i) for i in indices_text.split(",") if i]
        except ValueError:
            raise SegNetsError(f"slices {part!r} are not of the form axis:i,j,... (for example 0:12,40).") from None
        if axis not in slices or not indices:
            raise SegNetsError(f"slices {part!r} must name an axis 0, 1 or 2 and at least one index.")
        slices[axis].extend(indices)
    return {axis: sorted(set(indices)) for axis, indices in slices.items()}


def merge_slices(*parts: Mapping[int, Sequence[int]]) -> Slices:
    """Union of several slice sets."""
    merged: Slices = {0: [], 1: [], 2: []}
    for part in parts:
        for axis, indices in part.items():
            merged[int(axis)].extend(int(i) for i in indices)
    return {axis: sorted(set(indices)) for axis, indices in merged.items()}


def count_slices(slices: Mapping[int, Sequence[int]]) -> int:
    return sum(len(indices) for indices in slices.values())


def painting_axis(slices: Mapping[int, Sequence[int]]) -> int:
    """The axis with the most annotated slices (the first of equals; 0 when none is annotated)."""
    counts = {int(axis): len(indices) for axis, indices in slices.items()}
    return max(counts, key=counts.get) if counts and max(counts.values()) else 0


def listed_slices(slices: Mapping[int, Sequence[int]]) -> str:
    """Slices {axis: indices} in words for the user ("axis 0: 3, 7; axis 2: 40"); axes without one left out, ""
    when none."""
    return "; ".join(f"axis {axis}: {', '.join(map(str, indices))}" for axis, indices in slices.items() if indices)


PLANES = ("sagittal", "coronal", "axial")  # slices across the L-R, P-A and I-S axes


def slice_plane(direction: np.ndarray, axis: int) -> str:
    """The anatomical plane of the slices along array ``axis`` (0 = k, 1 = j, 2 = i) of a volume whose 3 x 3
    ``direction`` has the LPS (or RAS) unit vectors of i, j, k as columns: the plane across the patient axis
    nearest that array axis (a tilted-gantry CT's k still gives "axial"; a sagittal MR's k "sagittal")."""
    column = np.asarray(direction, dtype=float)[:, 2 - int(axis)]
    return PLANES[int(np.argmax(np.abs(column)))]


def bin_centre_slices(mask: np.ndarray, k: int, axis: int = 0) -> list[int]:
    """Indices of the centres of ``k`` equal bins through ``mask``'s extent along ``axis`` (the slices a
    simulated user annotates in the demo and the benchmarks; the extreme slices hold too few voxels)."""
    other = tuple(a for a in range(3) if a != axis)
    present = np.nonzero(mask.any(axis=other))[0]
    first, stop = int(present.min()), int(present.max()) + 1
    return [int(first + (stop - first) * (i + 0.5) / k) for i in range(k)]


def slices_mask(shape: Sequence[int], slices: Mapping[int, Sequence[int]]) -> np.ndarray:
    """Boolean mask of ``shape`` (k, j, i) that is True inside the given slices."""
    mask = np.zeros(tuple(shape), dtype=bool)
    for axis, indices in slices.items():
        for index in indices:
            if not 0 <= index < shape[axis]:
                raise SegNetsError(f"slice {index} along axis {axis} is outside the volume (size {shape[axis]}).")
            mask[(slice(None),) * int(axis) + (int(index),)] = True
    return mask


def user_voxels(labels: np.ndarray, weight: np.ndarray, ignore_value: int | None) -> np.ndarray:
    """Bool [k, j, i]: the voxels whose label a result keeps exactly as ``labels`` gives it: every voxel of the
    annotated slices (``weight`` > 0, :func:`weight_map`) and every labelled voxel off them (a Sphere brush's caps)."""
    return (weight > 0) | labelled(labels, ignore_value)


def weight_map(
    labels: np.ndarray, slices: Mapping[int, Sequence[int]], ignore_value: int | None = DEFAULT_IGNORE_VALUE
) -> np.ndarray:
    """Per-voxel weight [k, j, i] float32: 1 inside annotated slices except ignore-valued voxels, 0 elsewhere."""
    mask = slices_mask(labels.shape, slices)
    if ignore_value is not None:
        mask &= labels != ignore_value
    return mask.astype(np.float32)


def embed_in_image_grid(image: Volume, annotation: Volume, tolerance: float = 1e-3) -> Volume:
    """The annotation on the image's grid when it lies on a cropped part of that grid (as 3D Slicer's
    ``.seg.nrrd`` files often do: same spacing and direction, shifted by whole voxels); otherwise as given.

    Voxels outside the annotation's extent become 0 (unlabeled unless inside an annotated slice).
    """
    if annotation.array.ndim != 3 or image.same_geometry(annotation):
        return annotation
    if not (
        np.allclose(image.spacing, annotation.spacing, atol=tolerance)
        and np.allclose(image.direction, annotation.direction, atol=tolerance)
    ):
        return annotation
    offset_ijk = np.linalg.inv(image.ijk_to_lps()) @ np.array([*annotation.origin, 1.0])
    shift = np.round(offset_ijk[:3]).astype(int)
    if not np.allclose(offset_ijk[:3], shift, atol=1e-2):
        return annotation
    start = shift[::-1]  # (k, j, i)
    stop = start + np.array(annotation.shape_kji)
    if np.any(start < 0) or np.any(stop > np.array(image.shape_kji)):
        return annotation
    array = np.zeros(image.shape_kji, dtype=annotation.array.dtype)
    array[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]] = annotation.array
    return Volume(array, image.spacing, image.origin, image.direction)


def check_annotation(image: Volume, annotation: Volume, name: str = "the annotation") -> None:
    """Raise SegNetsError when ``annotation`` cannot annotate ``image`` (geometry, dimensions, values)."""
    if annotation.array.ndim != 3:
        raise SegNetsError(f"{name} must be a single 3D labelmap; it has shape {annotation.array.shape}.")
    if not image.same_geometry(annotation):
        raise SegNetsError(
            f"{name} has a different geometry from the image ({_differences(annotation, image)}); resample it onto "
            "the image first."
        )
    values = annotation.array
    if not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)) or values.min() < 0:
            raise SegNetsError(f"{name} must hold non-negative integer labels.")
    low, high = (values.min(), values.max()) if values.size else (0, 0)
    if low < 0 or high > 255:
        wrong = int(low if low < 0 else high)
        raise SegNetsError(f"{name} holds the label value {wrong}; label values must lie between 0 and 255.")


def _differences(volume: Volume, reference: Volume) -> str:
    """How ``volume``'s grid differs from ``reference``'s, in words (x, y, z order, mm)."""

    def rounded(values) -> tuple:
        return tuple(float(f"{float(v):.4g}") for v in values)

    parts = []
    for what, mine, theirs in (
        ("size", volume.shape_kji[::-1], reference.shape_kji[::-1]),
        ("spacing", rounded(volume.spacing), rounded(reference.spacing)),
        ("origin", rounded(volume.origin), rounded(reference.origin)),
        ("direction", rounded(np.ravel(volume.direction)), rounded(np.ravel(reference.direction))),
    ):
        if tuple(mine) != tuple(theirs):
            parts.append(f"{what} {tuple(mine)} against {tuple(theirs)}")
    return "; ".join(parts) or "origin or direction within rounding"


def annotation_classes(labels: np.ndarray, ignore_value: int | None = DEFAULT_IGNORE_VALUE) -> list[int]:
    """The class values (nonzero, not ignore) present in ``labels``, ascending."""
    values = np.unique(labels)
    return [int(v) for v in values if v != 0 and (ignore_value is None or v != ignore_value)]


def is_dense(weight: np.ndarray) -> bool:
    """True when the labelled voxels cover (almost) the whole volume: this is ordinary training."""
    return float(weight.mean()) >= DENSE_FRACTION


def require_annotated(
    slices: Mapping[int, Sequence[int]],
    name: str = "the annotation",
    labels: np.ndarray | None = None,
    ignore_value: int | None = DEFAULT_IGNORE_VALUE,
) -> None:
    """Raise unless some slice is annotated; ``labels`` (the annotation's values) tell a painting made wholly of
    ``ignore_value`` apart from an empty one."""
    if count_slices(slices) == 0 and labels is not None and ignore_value is not None and (labels == ignore_value).any():
        raise SegNetsError(
            f"{name} marks every painted voxel with {ignore_value}, the value of unlabeled voxels; paint the "
            "structure with another value or choose another ignore value."
        )
    if count_slices(slices) == 0:
        raise SegNetsError(
            f"{name} has no annotated slice: paint at least one slice (nonzero labels) or list "
            "all-background slices with --slices axis:i,j."
        )
