"""The voxel spacings SegNets accepts from a file: what a scanner or microscope can produce."""

from __future__ import annotations

import math
from collections.abc import Sequence

from SegNetsLib.core.errors import SegNetsError

MIN_SPACING_MM = 1e-4  # 0.1 micrometre
MAX_SPACING_MM = 1e4  # 10 metres


def check_spacing(spacing: Sequence[float], name: str) -> None:
    """Raise SegNetsError naming ``name`` when a spacing (mm, one per axis) is not finite, not positive, or
    outside :data:`MIN_SPACING_MM` to :data:`MAX_SPACING_MM`."""
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise SegNetsError(f"{name}: voxel spacing {tuple(spacing)} mm is not positive and finite.")
    if not all(MIN_SPACING_MM <= s <= MAX_SPACING_MM for s in spacing):
        raise SegNetsError(
            f"{name}: voxel spacing {tuple(float(f'{s:.3g}') for s in spacing)} mm is outside "
            f"{MIN_SPACING_MM:g} to {MAX_SPACING_MM:g} mm; the file's geometry is wrong."
        )
