"""Card-driven preprocessing: the input volume on the network's grid, normalized, and the way back.

The *network grid* is the input reoriented to ``card.orientation`` and resampled to
``card.target_spacing`` (SimpleITK, linear). Intensities stay raw on that grid; normalization
(``card.normalization``: CT window or z-score) is applied to the crops the network sees, so a RoI
pass never holds a normalized copy of the whole volume. Results map back to the input's exact
grid (oblique directions included) by SimpleITK resampling through physical (LPS) space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .errors import SegNetsError
from .imageio import check_volume, volume_to_sitk
from .models.card import ModelCard, Normalization
from .roi import Box
from .volume import Volume

_SLAB = 16  # slices per chunk when computing z-score statistics of large volumes


@dataclass(frozen=True)
class ChannelNormalizer:
    """Maps raw intensities of one channel to network inputs: ``(clip(x) - offset) * scale`` as float32.

    With ``nonzero_only`` voxels that are exactly 0 in the raw image stay 0 (background outside a body mask).
    """

    offset: float = 0.0
    scale: float = 1.0
    clip: tuple[float, float] | None = None
    nonzero_only: bool = False

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        out = raw.astype(np.float32, copy=True)
        if self.clip is not None:
            np.clip(out, self.clip[0], self.clip[1], out=out)
        out -= np.float32(self.offset)
        out *= np.float32(self.scale)
        if self.nonzero_only:
            out[raw == 0] = 0.0
        return out


@dataclass(frozen=True)
class Preprocessed:
    """A volume on the network grid.

    grid: raw intensities [c, k, j, i] on the network grid (spacing card.target_spacing, LPS geometry);
    normalizers: one per channel; source: the input volume, whose grid results are mapped back onto.
    """

    grid: Volume
    normalizers: tuple[ChannelNormalizer, ...]
    source: Volume

    @property
    def shape(self) -> tuple[int, int, int]:
        """Network-grid spatial shape (d, h, w)."""
        return self.grid.shape_kji

    def network_input(self, box: Box | None = None) -> np.ndarray:
        """Normalized network input (C, d, h, w) float32 of ``box`` (network-grid voxels), or of the whole grid."""
        raw = self.grid.array if box is None else self.grid.array[(slice(None), *Box(*box).slices)]
        return np.stack([normalize(raw[c]) for c, normalize in enumerate(self.normalizers)])

    def coarse_input(self, factor: float) -> tuple[np.ndarray, tuple[float, float, float]]:
        """The normalized volume down-sampled ``factor`` times per axis (linear), (C, d', h', w') float32,
        and the network-grid voxels per coarse voxel along (d, h, w)."""
        shape = self.shape
        coarse_shape = tuple(max(1, round(s / factor)) for s in shape)
        ratio = tuple(s / c for s, c in zip(shape, coarse_shape))
        spacing = tuple(sp * r for sp, r in zip(self.grid.spacing, ratio[::-1]))
        # first coarse voxel centre, so that both grids cover the same extent
        shift = np.array([(r - 1.0) / 2.0 for r in ratio[::-1]])  # in network voxels, (i, j, k)
        origin = self.grid.ijk_to_lps() @ np.append(shift, 1.0)
        channels = []
        for c, normalize in enumerate(self.normalizers):
            image = volume_to_sitk(self.grid.with_array(self.grid.array[c]))
            resampled = sitk.Resample(
                sitk.Cast(image, sitk.sitkFloat32),
                coarse_shape[::-1],
                sitk.Transform(),
                sitk.sitkLinear,
                tuple(origin[:3]),
                spacing,
                tuple(self.grid.direction.ravel()),
                0.0,
                sitk.sitkFloat32,
            )
            channels.append(normalize(sitk.GetArrayFromImage(resampled)))
        return np.stack(channels), ratio  # type: ignore[return-value]

    def same_grid_as_source(self) -> bool:
        """True when no reorientation or resampling happened (results need no resampling back)."""
        return self.grid.same_geometry(self.source, tolerance_mm=1e-4)

    def box_to_source(self, box: Box) -> Box:
        """The smallest source-voxel box (array order) that interpolation from network-grid ``box`` can reach:
        every source voxel up to the centres of the network voxels just outside the box, plus one voxel
        (the box itself when the grids are the same)."""
        box = Box(*box)
        if self.same_grid_as_source():
            return box
        corners = np.array(
            [[i, j, k, 1.0] for i in (box.x0 - 1, box.x1) for j in (box.y0 - 1, box.y1) for k in (box.z0 - 1, box.z1)]
        ).T
        lps = self.grid.ijk_to_lps() @ corners
        ijk = (np.linalg.inv(self.source.ijk_to_lps()) @ lps)[:3]
        low = np.floor(ijk.min(axis=1)).astype(int) - 1
        high = np.ceil(ijk.max(axis=1)).astype(int) + 2
        size = self.source.shape_kji[::-1]
        low = [int(min(max(v, 0), s)) for v, s in zip(low, size)]
        high = [int(min(max(v, 0), s)) for v, s in zip(high, size)]
        return Box(low[2], low[1], low[0], high[2], high[1], high[0])


def preprocess(volume: Volume, card: ModelCard, name: str = "the volume") -> Preprocessed:
    """Check ``volume`` against ``card`` and put it on the card's network grid (no normalized copy yet).

    Raises SegNetsError naming ``name`` for unusable volumes or a channel count the model does not take.
    """
    check_volume(volume, name)
    expected = len(card.in_channels)
    if volume.num_channels != expected:
        wanted = ", ".join(c.name for c in card.in_channels)
        raise SegNetsError(
            f"{name}: the image has {volume.num_channels} channel(s) but model {card.id!r} expects {expected} ({wanted})."
        )
    channels = volume.array if volume.array.ndim == 4 else volume.array[None]
    if _needs_resampling(volume, card):
        grids = [_to_network_grid(volume_to_sitk(volume.with_array(channel)), card) for channel in channels]
        first = grids[0]
        array = np.stack([sitk.GetArrayViewFromImage(g) for g in grids]) if len(grids) > 1 else (
            sitk.GetArrayFromImage(first)[None]
        )
        grid = Volume(array, first.GetSpacing(), first.GetOrigin(), np.reshape(first.GetDirection(), (3, 3)))
    else:
        grid = Volume(channels, volume.spacing, volume.origin, volume.direction)
    normalizers = tuple(_fit_normalizer(grid.array[c], card.normalization) for c in range(grid.array.shape[0]))
    return Preprocessed(grid, normalizers, volume)


def to_source_grid(
    array: np.ndarray, pre: Preprocessed, *, labels: bool, box: Box | None = None
) -> np.ndarray:
    """Resample a network-grid array [k, j, i] onto the source grid (or onto source-voxel ``box`` of it).

    labels=True uses SimpleITK's label-linear interpolation (smooth boundaries, values stay labels);
    otherwise linear (probabilities). Voxels outside the network grid get 0.
    """
    box = Box(0, 0, 0, *pre.source.shape_kji) if box is None else Box(*box)
    if pre.same_grid_as_source():
        return array[box.slices]
    source = volume_to_sitk(pre.grid.with_array(np.ascontiguousarray(array)))
    origin = pre.source.ijk_to_lps() @ np.array([box.x0, box.y0, box.z0, 1.0])
    resampled = sitk.Resample(
        source,
        box.shape[::-1],
        sitk.Transform(),
        sitk.sitkLabelLinear if labels else sitk.sitkLinear,
        tuple(origin[:3]),
        pre.source.spacing,
        tuple(pre.source.direction.ravel()),
        0,
        source.GetPixelID(),
    )
    return sitk.GetArrayFromImage(resampled)


def _needs_resampling(volume: Volume, card: ModelCard) -> bool:
    if card.orientation and _orientation(volume) != card.orientation.upper():
        return True
    if card.target_spacing is None:
        return False
    return not np.allclose(volume.spacing, card.target_spacing, rtol=1e-4, atol=1e-6)


def _orientation(volume: Volume) -> str:
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(tuple(volume.direction.ravel()))


def _to_network_grid(image: sitk.Image, card: ModelCard) -> sitk.Image:
    """Reorient (DICOMOrient) and resample (linear) one channel to the card's orientation and spacing."""
    if card.orientation:
        current = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
        if current != card.orientation.upper():
            image = sitk.DICOMOrient(image, card.orientation.upper())
    if card.target_spacing is None:
        return image
    spacing = np.array(image.GetSpacing())
    target = np.array(card.target_spacing, dtype=float)
    if np.any(target <= 0) or not np.all(np.isfinite(target)):
        raise SegNetsError(f"model {card.id!r}: target spacing {tuple(target)} mm is not positive.")
    size = [max(1, int(round(n * s / t))) for n, s, t in zip(image.GetSize(), spacing, target)]
    direction = np.reshape(image.GetDirection(), (3, 3))
    origin = np.array(image.GetOrigin()) + direction @ ((target - spacing) / 2.0)  # same extent start
    return sitk.Resample(  # float32: interpolated values are not rounded back to the input's integer type
        image, size, sitk.Transform(), sitk.sitkLinear, tuple(origin), tuple(target), image.GetDirection(), 0.0,
        sitk.sitkFloat32,
    )


def _fit_normalizer(raw: np.ndarray, settings: Normalization) -> ChannelNormalizer:
    """Compute a channel's normalization from its raw network-grid intensities [k, j, i]."""
    if settings.kind == "none":
        return ChannelNormalizer()
    if settings.kind == "ct_window":
        if settings.window is None or not settings.window[1] > settings.window[0]:
            raise SegNetsError(f"CT window {settings.window!r} must be (low, high) with low < high.")
        low, high = (float(v) for v in settings.window)
        return ChannelNormalizer(offset=low, scale=1.0 / (high - low), clip=(low, high))
    if settings.kind == "zscore":
        mean, std = _mean_std(raw, settings.nonzero_only)
        return ChannelNormalizer(offset=mean, scale=1.0 / max(std, 1e-8), nonzero_only=settings.nonzero_only)
    raise SegNetsError(f"unknown normalization {settings.kind!r}; choose ct_window, zscore or none.")


def _mean_std(raw: np.ndarray, nonzero_only: bool) -> tuple[float, float]:
    """Mean and standard deviation over all (or all nonzero) voxels, in float64 slabs of ``_SLAB`` slices."""
    count, total, total_sq = 0, 0.0, 0.0
    for start in range(0, raw.shape[0], _SLAB):
        slab = raw[start : start + _SLAB].astype(np.float64)
        if nonzero_only:
            slab = slab[slab != 0]
        count += slab.size
        total += float(slab.sum())
        total_sq += float(np.square(slab).sum())
    if count == 0:
        return 0.0, 1.0
    mean = total / count
    return mean, math.sqrt(max(total_sq / count - mean * mean, 0.0))
