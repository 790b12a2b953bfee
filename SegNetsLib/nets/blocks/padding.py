"""Pad a 3D batch so every spatial size is a multiple of the network's down-sampling factor, and crop back.

Networks with "default" presets call ``pad_to_multiple`` at the start of ``forward`` and ``crop_to``
on every output, so they accept any input size and return logits at the input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from SegNetsLib.core.errors import SegNetsError


def _per_axis(multiple: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    values = (multiple,) * ndim if isinstance(multiple, int) else tuple(int(m) for m in multiple)
    if len(values) != ndim or any(m < 1 for m in values):
        raise SegNetsError(f"padding multiple {multiple!r} must be one positive integer or {ndim} of them.")
    return values


def padded_size(size: Sequence[int], multiple: int | Sequence[int]) -> tuple[int, ...]:
    """``size`` (spatial) rounded up to a multiple of ``multiple`` (one int, or one per axis) along each axis: the
    size :func:`pad_to_multiple` pads to."""
    factors = _per_axis(multiple, len(size))
    return tuple(int(s) + (-int(s)) % factor for s, factor in zip(size, factors))


def pad_to_multiple(
    x: torch.Tensor, multiple: int | Sequence[int], mode: str = "constant"
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Pad the spatial axes of ``x`` (N, C, *spatial) at their far end up to a multiple of ``multiple``.

    ``multiple`` is one int for every axis or one per spatial axis. ``mode`` is passed to
    ``torch.nn.functional.pad`` ("constant" pads zeros, "replicate", "reflect").
    Returns (padded tensor, original spatial shape); the original data sits at index 0 of every axis,
    so ``crop_to(padded_output, shape)`` undoes the padding. Nothing is copied when no padding is needed.
    """
    spatial = tuple(int(s) for s in x.shape[2:])
    extra = [padded - size for padded, size in zip(padded_size(spatial, multiple), spatial)]
    if not any(extra):
        return x, spatial
    # F.pad takes (last_lo, last_hi, ..., first_lo, first_hi)
    pad: list[int] = []
    for amount in reversed(extra):
        pad += [0, amount]
    return F.pad(x, pad, mode=mode), spatial


def crop_to(x: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Keep the first ``spatial_shape`` voxels of every spatial axis of ``x`` (N, C, *spatial)."""
    shape = tuple(int(s) for s in spatial_shape)
    if len(shape) != x.dim() - 2 or any(s > have for s, have in zip(shape, x.shape[2:])):
        raise SegNetsError(f"cannot crop a tensor of spatial size {tuple(x.shape[2:])} to {shape}.")
    if shape == tuple(x.shape[2:]):
        return x
    return x[(slice(None), slice(None)) + tuple(slice(0, s) for s in shape)]


def mirror_pad(x: torch.Tensor, before: Sequence[int], after: Sequence[int]) -> torch.Tensor:
    """Mirror ``x`` (N, C, *spatial) by ``before``/``after`` voxels per axis, any amount.

    Reflection without repeating the border voxel, folded as often as needed when the padding is
    larger than the input (the overlap-tile strategy of the U-Net papers).
    """
    for axis, (lo, hi) in enumerate(zip(before, after)):
        size = x.shape[2 + axis]
        index = torch.arange(-lo, size + hi, device=x.device)
        if size > 1:
            period = 2 * (size - 1)
            index = index.remainder(period)
            index = torch.where(index >= size, period - index, index)
        else:
            index = torch.zeros_like(index)
        x = x.index_select(2 + axis, index)
    return x
