"""Card-driven preprocessing: the input volume on the network's grid, normalized, and the way back.

The *network grid* is the input reoriented to ``card.orientation`` and resampled to
``card.target_spacing`` (SimpleITK, linear). Intensities stay raw on that grid; normalization
(``card.normalization``: CT window or z-score) is applied to the crops the network sees, so a RoI
pass never holds a normalized copy of the whole volume. Results map back to the input's exact
grid (oblique directions included) by SimpleITK resampling through physical (LPS) space.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from SegNetsLib.card.card import ModelCard, Normalization
from SegNetsLib.core.box import Box
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume
from SegNetsLib.imageio.volumes import check_volume, volume_from_sitk, volume_to_sitk

_SLAB = 16  # slices per chunk when computing z-score statistics of large volumes, and when resampling from the source
MAX_GRID_VOXELS = 2**30  # network-grid voxels: 4 GiB per channel as float32, beyond any scan
_TOUCH = 1e-6  # voxels: cells that only touch (up to round-off of the grid transforms) do not overlap


def coarse_grid_shape(shape: Sequence[int], factor: float) -> tuple[int, int, int]:
    """The shape (d, h, w) of a network grid of ``shape`` down-sampled ``factor`` times (RoI localization's coarse pass)."""
    return tuple(max(1, round(s / factor)) for s in shape)  # type: ignore[return-value]


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
    lazy: the grid was never resampled as a whole: ``grid.array`` is a zero-stride placeholder (geometry
    and shape only) and :meth:`network_input` / :meth:`coarse_input` resample what they need straight
    from ``source`` (a crop of it per box), so a RoI pass never holds the whole network grid.
    """

    grid: Volume
    normalizers: tuple[ChannelNormalizer, ...]
    source: Volume
    lazy: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        """Network-grid spatial shape (d, h, w)."""
        return self.grid.shape_kji

    def network_input(self, box: Box | None = None) -> np.ndarray:
        """Normalized network input (C, d, h, w) float32 of ``box`` (network-grid voxels), or of the whole grid."""
        if self.lazy:
            box = Box(0, 0, 0, *self.shape) if box is None else Box(*box)
            return np.stack(
                [
                    normalize(_resample_from_source(self.source, c, self.grid, box))
                    for c, normalize in enumerate(self.normalizers)
                ]
            )
        raw = self.grid.array if box is None else self.grid.array[(slice(None), *Box(*box).slices)]
        return np.stack([normalize(raw[c]) for c, normalize in enumerate(self.normalizers)])

    def coarse_input(self, factor: float) -> tuple[np.ndarray, tuple[float, float, float]]:
        """The normalized volume down-sampled ``factor`` times per axis (linear), (C, d', h', w') float32,
        and the network-grid voxels per coarse voxel along (d, h, w).

        Coarse voxel centres sit at ``(index + 0.5) * ratio - 0.5`` network voxels, so both grids cover the
        same extent. Interpolates a view of the grid channel by channel (no full-size float copy when the
        grid is already float32); only the coarse array is allocated.
        """
        shape = self.shape
        coarse_shape = coarse_grid_shape(shape, factor)
        ratio = tuple(s / c for s, c in zip(shape, coarse_shape))
        if self.lazy:
            return self._coarse_from_source(coarse_shape, ratio), ratio  # type: ignore[return-value]
        channels = []
        for c, normalize in enumerate(self.normalizers):
            raw = torch.from_numpy(np.asarray(self.grid.array[c], dtype=np.float32))[None, None]
            with torch.inference_mode():
                small = F.interpolate(raw, size=coarse_shape, mode="trilinear", align_corners=False)
            channels.append(normalize(small[0, 0].numpy()))
        return np.stack(channels), ratio  # type: ignore[return-value]

    def _coarse_from_source(self, coarse_shape: tuple[int, ...], ratio: tuple[float, ...]) -> np.ndarray:
        """Lazy grid: the coarse grid (same extent as the network grid) resampled straight from the source."""
        spacing = tuple(sp * r for sp, r in zip(self.grid.spacing, ratio[::-1]))
        shift = np.array([(r - 1.0) / 2.0 for r in ratio[::-1]])  # first coarse centre, in network voxels (i, j, k)
        origin = self.grid.ijk_to_lps() @ np.append(shift, 1.0)
        coarse = Volume(np.broadcast_to(np.float32(0), coarse_shape), spacing, tuple(origin[:3]), self.grid.direction)
        whole = Box(0, 0, 0, *coarse_shape)
        return np.stack(
            [
                normalize(_resample_from_source(self.source, c, coarse, whole))
                for c, normalize in enumerate(self.normalizers)
            ]
        )

    def same_grid_as_source(self) -> bool:
        """True when no reorientation or resampling happened (results need no resampling back)."""
        return self.grid.same_geometry(self.source, tolerance_mm=1e-4)

    def box_to_source(self, box: Box) -> Box:
        """The smallest source-voxel box (array order) that interpolation from network-grid ``box`` can reach:
        every source voxel up to the centres of the network voxels just outside the box, plus one voxel
        (the box itself when the grids are the same)."""
        box = Box(*box)
        return box if self.same_grid_as_source() else _source_box(self.source, self.grid, box)

    def box_from_source(self, box: Box) -> Box:
        """The smallest network-grid box (array order) holding every network voxel whose cell overlaps a cell
        of source-voxel ``box`` (the box itself when the grids are the same); clipped to the grid, never empty.

        The way from a box found on the input (a locator model's labelmap) to the network grid; oblique and
        reoriented grids get the network-grid bounding box of the source box's corners.
        """
        box = Box(*box)
        if self.same_grid_as_source():
            return box
        low, high = _corner_extent(box, 0.5, self.source, self.grid)  # cell faces, in network voxels
        # network voxel n's cell is [n - 0.5, n + 0.5]: keep n with n + 0.5 > low and n - 0.5 < high
        return _clipped_box(np.floor(low - 0.5 + _TOUCH) + 1, np.ceil(high + 0.5 - _TOUCH), self.shape[::-1])


def preprocess(volume: Volume, card: ModelCard, name: str = "the volume", lazy: bool = False) -> Preprocessed:
    """Check ``volume`` against ``card`` and put it on the card's network grid (no normalized copy yet).

    lazy=True computes only the network grid's geometry when that is possible (resampling needed, a
    normalization that needs no whole-grid statistics): crops are resampled on demand, see
    :class:`Preprocessed`. Raises SegNetsError naming ``name`` for unusable volumes or a channel count
    the model does not take.
    """
    check_volume(volume, name)
    expected = len(card.in_channels)
    if volume.num_channels != expected:
        wanted = ", ".join(c.name for c in card.in_channels)
        raise SegNetsError(
            f"{name}: the image has {volume.num_channels} channel(s) but model {card.id!r} expects {expected} ({wanted})."
        )
    channels = volume.array if volume.array.ndim == 4 else volume.array[None]
    if card.target_spacing is not None and _needs_resampling(volume, card):
        geometry = _network_geometry(volume, card, name)
        if lazy and card.normalization.kind != "zscore":
            placeholder = np.broadcast_to(np.float32(0), (len(channels), *geometry.shape_kji))
            normalizers = tuple(_fit_normalizer(channel, card.normalization) for channel in channels)
            return Preprocessed(geometry.with_array(placeholder), normalizers, volume, lazy=True)
        whole = Box(0, 0, 0, *geometry.shape_kji)
        grid = geometry.with_array(
            np.stack([_resample_from_source(volume, c, geometry, whole) for c in range(len(channels))])
        )
    elif _needs_resampling(volume, card):  # reorientation only (exact)
        images = [_reoriented(volume_to_sitk(volume.with_array(channel)), card) for channel in channels]
        grid = volume_from_sitk(images[0], voxels=False).with_array(
            np.stack([sitk.GetArrayFromImage(i) for i in images])
        )
    else:
        grid = Volume(channels, volume.spacing, volume.origin, volume.direction)
    normalizers = tuple(_fit_normalizer(grid.array[c], card.normalization) for c in range(grid.array.shape[0]))
    return Preprocessed(grid, normalizers, volume)


def check_network_grid(shape: tuple[int, int, int], card: ModelCard, name: str) -> None:
    """Refuse a network grid (d, h, w) the model cannot segment: under 2 voxels along an axis (less than one
    window holds), or more than :data:`MAX_GRID_VOXELS` voxels."""
    spacing = "x".join(f"{s:g}" for s in card.target_spacing or ())
    size = " x ".join(str(s) for s in shape)
    if min(shape) < 2:
        raise SegNetsError(
            f"{name}: at the model's {spacing} mm spacing the volume is only {size} voxels, less than one "
            "window; its voxel spacing is probably wrong."
        )
    if math.prod(shape) > MAX_GRID_VOXELS:
        raise SegNetsError(
            f"{name}: at the model's {spacing} mm spacing the volume would be {size} voxels, more than the "
            f"{MAX_GRID_VOXELS:,}-voxel limit; its voxel spacing is probably wrong."
        )


def to_source_grid(array: np.ndarray, pre: Preprocessed, *, labels: bool, box: Box | None = None) -> np.ndarray:
    """Resample a network-grid array [k, j, i] onto the source grid (or onto source-voxel ``box`` of it).

    labels=True uses SimpleITK's label-linear interpolation (smooth boundaries, values stay labels);
    otherwise linear (probabilities). A source voxel beyond the network grid's last voxel (the grid's size is the
    extent rounded to whole network voxels, so up to half of one can be missing) takes the nearest one's value.
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
        True,  # nearest-neighbour extrapolation
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


def _reoriented(image: sitk.Image, card: ModelCard) -> sitk.Image:
    """``image`` with its axes permuted and flipped (DICOMOrient, exact) to ``card.orientation``."""
    current = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    return image if current == card.orientation.upper() else sitk.DICOMOrient(image, card.orientation.upper())


def _network_geometry(volume: Volume, card: ModelCard, name: str = "the volume") -> Volume:
    """The network grid of ``volume`` as a zero-memory placeholder Volume: the input reoriented to
    ``card.orientation`` (axes permuted and flipped, as DICOMOrient does) and re-spaced to
    ``card.target_spacing`` over the same extent."""
    size = np.array(volume.shape_kji[::-1])
    spacing = np.array(volume.spacing)
    direction = volume.direction
    corner = np.zeros(3)  # source ijk of the new first voxel
    if card.orientation:
        wanted = np.reshape(
            sitk.DICOMOrientImageFilter.GetDirectionCosinesFromOrientation(card.orientation.upper()), (3, 3)
        )
        order = [int(np.argmax(np.abs(direction.T @ wanted[:, axis]))) for axis in range(3)]
        signs = np.array([np.sign(direction[:, b] @ wanted[:, a]) or 1.0 for a, b in enumerate(order)])
        corner = np.array([size[b] - 1 if signs[a] < 0 else 0 for a, b in enumerate(order)], dtype=float)
        corner_ijk = np.zeros(3)
        for a, b in enumerate(order):
            corner_ijk[b] = corner[a]
        corner = corner_ijk
        direction = direction[:, order] * signs
        size, spacing = size[order], spacing[order]
    origin = (volume.ijk_to_lps() @ np.append(corner, 1.0))[:3]
    target = np.array(card.target_spacing, dtype=float)
    if np.any(target <= 0) or not np.all(np.isfinite(target)):
        raise SegNetsError(f"model {card.id!r}: target spacing {tuple(target)} mm is not positive.")
    new_size = [max(1, int(round(n * s / t))) for n, s, t in zip(size, spacing, target)]
    check_network_grid(tuple(new_size[::-1]), card, name)
    origin = origin + direction @ ((target - spacing) / 2.0)  # same extent start
    return Volume(np.broadcast_to(np.float32(0), new_size[::-1]), tuple(target), tuple(origin), direction)


def _corner_extent(box: Box, margin: float, grid: Volume, target: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest continuous (i, j, k) indices on ``target`` of the eight corners of ``grid``-voxel ``box``
    widened by ``margin`` voxels (corners at ``start - margin`` and ``stop - 1 + margin`` along each axis)."""
    low = (box.x0 - margin, box.y0 - margin, box.z0 - margin)
    high = (box.x1 - 1 + margin, box.y1 - 1 + margin, box.z1 - 1 + margin)
    corners = np.array(
        [[i, j, k, 1.0] for i in (low[0], high[0]) for j in (low[1], high[1]) for k in (low[2], high[2])]
    ).T
    ijk = (np.linalg.inv(target.ijk_to_lps()) @ (grid.ijk_to_lps() @ corners))[:3]
    return ijk.min(axis=1), ijk.max(axis=1)


def _clipped_box(start_ijk: np.ndarray, stop_ijk: np.ndarray, size_ijk: tuple[int, ...]) -> Box:
    """The box (array order) of voxel indices [start, stop) along (i, j, k), clipped to ``size_ijk`` and never empty."""
    start = [int(min(max(a, 0), s - 1)) for a, s in zip(start_ijk, size_ijk)]
    stop = [int(min(max(b, a + 1), s)) for a, b, s in zip(start, stop_ijk, size_ijk)]
    return Box(start[2], start[1], start[0], stop[2], stop[1], stop[0])


def _source_box(source: Volume, grid: Volume, box: Box) -> Box:
    """Source voxels (array order) around ``grid``-voxel ``box`` that linear interpolation reads."""
    low, high = _corner_extent(box, 1.0, grid, source)
    return _clipped_box(np.floor(low) - 1, np.ceil(high) + 2, source.shape_kji[::-1])


def _resample_from_source(source: Volume, channel: int, grid: Volume, box: Box) -> np.ndarray:
    """Raw intensities [d, h, w] float32 of ``grid``'s voxels in ``box``, resampled (linear) from channel ``channel``
    of ``source`` in slabs of ``_SLAB`` slices, each from only the source voxels that interpolation inside it
    reads (:func:`_source_box`): the source is never copied as a whole."""
    channels = source.array if source.array.ndim == 4 else source.array[None]
    out = np.empty(box.shape, np.float32)
    for z0 in range(box.z0, box.z1, _SLAB):
        slab = Box(z0, box.y0, box.x0, min(z0 + _SLAB, box.z1), box.y1, box.x1)
        crop_box = _source_box(source, grid, slab)
        origin = source.ijk_to_lps() @ np.array([crop_box.x0, crop_box.y0, crop_box.z0, 1.0])
        crop = Volume(channels[channel][crop_box.slices], source.spacing, tuple(origin[:3]), source.direction)
        out[slab.z0 - box.z0 : slab.z1 - box.z0] = _resample_onto(volume_to_sitk(crop), grid, slab)
    return out


def _resample_onto(image: sitk.Image, grid: Volume, box: Box) -> np.ndarray:
    """``image`` resampled (linear, float32, 0 outside) at the centres of ``grid``'s voxels in ``box`` -> [d, h, w]."""
    origin = grid.ijk_to_lps() @ np.array([box.x0, box.y0, box.z0, 1.0])
    resampled = sitk.Resample(  # float32: interpolated values are not rounded back to the input's integer type
        image,
        box.shape[::-1],
        sitk.Transform(),
        sitk.sitkLinear,
        tuple(origin[:3]),
        grid.spacing,
        tuple(grid.direction.ravel()),
        0.0,
        sitk.sitkFloat32,
    )
    return sitk.GetArrayFromImage(resampled)


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
