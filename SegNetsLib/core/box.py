"""RoI geometry shared by 3D RU-Net and the inference engine.

A :class:`Box` is ``(z0, y0, x0, z1, y1, x1)``: half-open voxel indices in array order
([k, j, i] for volumes), so ``array[z0:z1, y0:y1, x0:x1]`` is the box's content.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple, TypeVar

import numpy as np
from scipy import ndimage

from SegNetsLib.core.errors import SegNetsError

EXTENSION_RULES: tuple[str, ...] = ("padding", "scale", "fixed", "official")
OFFICIAL_RUNET_PADDING: tuple[int, int, int] = (1, 2, 2)  # RU-Net widens boxes by [1,2,2] F3 cells

ArrayT = TypeVar("ArrayT")


class Box(NamedTuple):
    """Half-open box ``[z0, z1) x [y0, y1) x [x0, x1)`` in voxel indices (array order)."""

    z0: int
    y0: int
    x0: int
    z1: int
    y1: int
    x1: int

    @property
    def start(self) -> tuple[int, int, int]:
        return (self.z0, self.y0, self.x0)

    @property
    def stop(self) -> tuple[int, int, int]:
        return (self.z1, self.y1, self.x1)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Extent (d, h, w) in voxels."""
        return (self.z1 - self.z0, self.y1 - self.y0, self.x1 - self.x0)

    @property
    def size(self) -> int:
        """Number of voxels inside the box (0 for an empty box)."""
        d, h, w = self.shape
        return max(d, 0) * max(h, 0) * max(w, 0)

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return (slice(self.z0, self.z1), slice(self.y0, self.y1), slice(self.x0, self.x1))

    def scaled(self, factors: Sequence[int]) -> Box:
        """The box on a grid ``factors`` (fz, fy, fx) times finer, e.g. RU-Net's F3 cells -> voxels with (2, 4, 4)."""
        fz, fy, fx = (int(f) for f in factors)
        return Box(self.z0 * fz, self.y0 * fy, self.x0 * fx, self.z1 * fz, self.y1 * fy, self.x1 * fx)

    def intersects(self, other: Box) -> bool:
        """True when the two boxes share at least one voxel."""
        return all(max(a0, b0) < min(a1, b1) for a0, a1, b0, b1 in zip(self.start, self.stop, other.start, other.stop))

    def intersection(self, other: Box) -> Box:
        """The voxels both boxes hold (empty, stop = start along some axis, when they share none)."""
        start = [max(a, b) for a, b in zip(self.start, other.start)]
        stop = [max(low, min(a, b)) for low, a, b in zip(start, self.stop, other.stop)]
        return Box(*start, *stop)

    @classmethod
    def from_slices(cls, slices: Sequence[slice]) -> Box:
        z, y, x = slices
        return cls(int(z.start), int(y.start), int(x.start), int(z.stop), int(y.stop), int(x.stop))


def mask_box(mask: np.ndarray) -> Box | None:
    """The smallest box holding ``mask``'s True voxels ([k, j, i]), None when there are none."""
    start, stop = [], []
    for axis in range(3):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        if not present.size:
            return None
        start.append(int(present[0]))
        stop.append(int(present[-1]) + 1)
    return Box(*start, *stop)


class Component(NamedTuple):
    """One connected component of a mask: its tight bounding box and its area (voxel count)."""

    box: Box
    area: int


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    if len(shape) != 3 or any(int(s) < 1 for s in shape):
        raise SegNetsError(f"RoI volume shape {tuple(shape)} is not three positive sizes (d, h, w).")
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def as_triple(value: int | Sequence[int], name: str) -> tuple[int, int, int]:
    """One number or three (z, y, x) as a tuple of three ints; SegNetsError otherwise."""
    values = (value,) * 3 if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != 3:
        raise SegNetsError(f"{name} {value!r} must be one number or three numbers (z, y, x).")
    return tuple(int(v) for v in values)  # type: ignore[return-value]


def find_components(mask: np.ndarray, connectivity: int = 3, *, official_order: bool = False) -> list[Component]:
    """Connected components of a 3D binary ``mask`` (d, h, w), largest first.

    ``connectivity`` has scikit-image's meaning: 1 = faces (6-neighbourhood), 2 = faces and edges (18),
    3 = faces, edges and corners (26). Equal areas keep label order (raster order of first voxel);
    ``official_order=True`` instead sorts like 3D RU-Net's code (``np.argsort(areas)`` reversed), whose
    order among equal areas is NumPy's unstable default sort.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise SegNetsError(f"RoI mask has shape {mask.shape}; a 3D (d, h, w) mask is needed.")
    if connectivity not in (1, 2, 3):
        raise SegNetsError(f"connectivity {connectivity!r} is not 1, 2 or 3.")
    structure = ndimage.generate_binary_structure(3, connectivity)
    labels, count = ndimage.label(mask != 0, structure=structure)
    if count == 0:
        return []
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    boxes = [Box.from_slices(s) for s in ndimage.find_objects(labels)]
    if official_order:
        order = np.argsort(areas)[::-1]
    else:
        order = np.lexsort((np.arange(count), -areas))
    return [Component(boxes[i], int(areas[i])) for i in order]


def extend_box(
    box: Box,
    shape: Sequence[int],
    rule: str,
    *,
    padding: int | Sequence[int] = OFFICIAL_RUNET_PADDING,
    factor: float = 1.5,
    size: Sequence[int] = (24, 96, 96),
) -> Box:
    """Extend ``box`` inside a volume of ``shape`` (d, h, w) by one of :data:`EXTENSION_RULES`.

    - "padding": add ``padding`` (pz, py, px) voxels on each side, clipped to the volume.
    - "scale": grow each extent ``factor`` times about the box centre (1.5, 2, ...), clipped to the volume.
    - "fixed": a ``size`` (d, h, w) box centred on ``box``, shifted to stay inside the volume; along an axis
      where the box is larger than ``size`` the box's own extent is kept (an object is never cut), and
      where the volume is smaller than ``size`` the whole axis is used.
    - "official": 3D RU-Net's code: add ``padding`` (default [1, 2, 2] cells), clip starts at 0 and clamp
      ends at ``shape - 1`` (the official off-by-one: the last cell is never covered).
    """
    shape = _check_shape(shape)
    box = Box(*(int(v) for v in box))
    if (
        any(a >= b for a, b in zip(box.start, box.stop))
        or any(a < 0 for a in box.start)
        or any(b > s for b, s in zip(box.stop, shape))
    ):
        raise SegNetsError(f"RoI box {tuple(box)} is empty or outside the volume of shape {shape}.")
    starts, stops = list(box.start), list(box.stop)
    if rule == "padding" or rule == "official":
        pad = as_triple(padding, "RoI padding")
        if any(p < 0 for p in pad):
            raise SegNetsError(f"RoI padding {pad} must not be negative.")
        starts = [max(a - p, 0) for a, p in zip(starts, pad)]
        limit = [s - 1 for s in shape] if rule == "official" else list(shape)
        stops = [min(b + p, m) for b, p, m in zip(stops, pad, limit)]
    elif rule == "scale":
        if not factor >= 1.0:
            raise SegNetsError(f"RoI scale factor {factor!r} must be at least 1.")
        for axis in range(3):
            centre = (starts[axis] + stops[axis]) / 2.0
            half = (stops[axis] - starts[axis]) * factor / 2.0
            starts[axis] = max(math.floor(centre - half + 1e-9), 0)
            stops[axis] = min(math.ceil(centre + half - 1e-9), shape[axis])
    elif rule == "fixed":
        target = as_triple(size, "RoI size")
        if any(t < 1 for t in target):
            raise SegNetsError(f"RoI fixed size {target} must be positive.")
        for axis in range(3):
            extent = min(max(target[axis], stops[axis] - starts[axis]), shape[axis])
            start = (starts[axis] + stops[axis] - extent) // 2
            start = min(max(start, 0), shape[axis] - extent)
            starts[axis], stops[axis] = start, start + extent
    else:
        raise SegNetsError(f"unknown RoI extension rule {rule!r}; choose one of {', '.join(EXTENSION_RULES)}.")
    return Box(*starts, *stops)


def _is_box(value: object) -> bool:
    """True for a Box or six integers; False for an iterable (a list, a generator) of boxes."""
    return isinstance(value, Sequence) and len(value) == 6 and all(isinstance(v, (int, np.integer)) for v in value)


def box_union(*boxes: Box | Iterable[Box]) -> Box:
    """Smallest box containing all given boxes; accepts boxes as arguments or one iterable of boxes."""
    if len(boxes) == 1 and not _is_box(boxes[0]):
        boxes = tuple(boxes[0])  # type: ignore[arg-type]
    if not boxes:
        raise SegNetsError("box_union needs at least one box.")
    items = [Box(*(int(v) for v in b)) for b in boxes]  # type: ignore[union-attr]
    return Box(
        min(b.z0 for b in items),
        min(b.y0 for b in items),
        min(b.x0 for b in items),
        max(b.z1 for b in items),
        max(b.y1 for b in items),
        max(b.x1 for b in items),
    )


def merge_overlapping(boxes: Iterable[Box]) -> list[Box]:
    """Replace every group of (transitively) overlapping boxes by their union; order follows the first box of each group."""
    merged = [Box(*(int(v) for v in b)) for b in boxes]
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                if merged[i].intersects(merged[j]):
                    merged[i] = box_union(merged[i], merged[j])
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return merged


def crop(array: ArrayT, box: Box) -> ArrayT:
    """The box's content of a NumPy array or torch tensor whose last three axes are (d, h, w)."""
    return array[(Ellipsis, *Box(*box).slices)]  # type: ignore[index]


__all__ = [
    "Box",
    "Component",
    "EXTENSION_RULES",
    "OFFICIAL_RUNET_PADDING",
    "box_union",
    "crop",
    "extend_box",
    "find_components",
    "merge_overlapping",
]
