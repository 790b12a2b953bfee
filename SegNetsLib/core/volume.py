"""A volume: a voxel array plus its geometry, the one representation passed between components.

Conventions (see README, "Developer notes"):
- ``array`` is indexed [k, j, i] = (z, y, x), as ``SimpleITK.GetArrayFromImage`` and
  ``slicer.util.arrayFromVolume`` return it; a multi-channel volume is [c, k, j, i].
- ``spacing`` is (i, j, k) in mm, ``origin`` the LPS position in mm of voxel (0, 0, 0), and
  ``direction`` a 3x3 matrix whose columns are the LPS unit vectors of the i, j, k axes
  (the ITK/DICOM convention). Slicer works in RAS; the MRML bridge converts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Volume:
    """A 3D (or multi-channel 3D) image with its physical geometry.

    array: [k, j, i] or [c, k, j, i]; spacing (i, j, k) mm; origin LPS mm; direction 3x3 (columns i, j, k).
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", np.asarray(self.direction, dtype=np.float64).reshape(3, 3))

    @property
    def num_channels(self) -> int:
        """1 for a [k, j, i] array, c for a [c, k, j, i] array."""
        return 1 if self.array.ndim == 3 else int(self.array.shape[0])

    @property
    def shape_kji(self) -> tuple[int, int, int]:
        """The spatial shape in array order (k, j, i)."""
        return tuple(int(s) for s in self.array.shape[-3:])  # type: ignore[return-value]

    def ijk_to_lps(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) voxel indices to LPS millimetres."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction @ np.diag(self.spacing)
        matrix[:3, 3] = self.origin
        return matrix

    def ijk_to_ras(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) voxel indices to RAS millimetres (Slicer's frame)."""
        return LPS_TO_RAS @ self.ijk_to_lps()

    @classmethod
    def from_ijk_to_lps(cls, array: np.ndarray, ijk_to_lps: np.ndarray) -> Volume:
        """Build a volume from an array and a 4x4 voxel-to-LPS matrix."""
        matrix = np.asarray(ijk_to_lps, dtype=np.float64)
        axes = matrix[:3, :3]
        spacing = np.linalg.norm(axes, axis=0)
        return cls(array, tuple(spacing), tuple(matrix[:3, 3]), axes / spacing)

    @classmethod
    def from_ijk_to_ras(cls, array: np.ndarray, ijk_to_ras: np.ndarray) -> Volume:
        """Build a volume from an array and a 4x4 voxel-to-RAS matrix (Slicer's IJKToRAS)."""
        return cls.from_ijk_to_lps(array, LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=np.float64))

    def with_array(self, array: np.ndarray) -> Volume:
        """The same geometry holding another array of the same spatial shape."""
        if tuple(array.shape[-3:]) != self.shape_kji:
            raise ValueError(f"array shape {array.shape} does not match the volume's {self.shape_kji}")
        return replace(self, array=array)

    def same_geometry(self, other: Volume, tolerance_mm: float = 1e-3) -> bool:
        """True when both volumes have the same spatial shape and voxel-to-LPS mapping."""
        return self.shape_kji == other.shape_kji and bool(
            np.allclose(self.ijk_to_lps(), other.ijk_to_lps(), rtol=0.0, atol=tolerance_mm)
        )


def sub_volume(volume: Volume, box: Sequence[int]) -> Volume:
    """The part of ``volume`` inside ``box`` (a core.box.Box: voxel indices z0, y0, x0, z1, y1, x1), origin moved
    to the box's corner; every channel of a [c, k, j, i] array."""
    z0, y0, x0, z1, y1, x1 = (int(v) for v in box)
    origin = (volume.ijk_to_lps() @ np.array([x0, y0, z0, 1.0]))[:3]
    array = np.ascontiguousarray(volume.array[..., z0:z1, y0:y1, x0:x1])
    return Volume(array, volume.spacing, tuple(origin), volume.direction)
