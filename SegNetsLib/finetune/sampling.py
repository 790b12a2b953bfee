"""Training patches for sparse-annotation fine-tuning: slabs that contain an annotated slice.

Arrays are in array order [k, j, i] = (d, h, w). A patch always holds one annotated slice, at a random
depth inside it along that slice's axis; its in-plane centre is a labelled foreground voxel of that slice
(``foreground_fraction`` of the time) or a random voxel of the training region.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from SegNetsLib.core.box import Box

Slice = tuple[int, int]  # (axis, index)


def training_box(weight: np.ndarray, labels: np.ndarray, margin: Sequence[int]) -> Box:
    """Bounding box of the annotated foreground, widened by ``margin`` (d, h, w) voxels, clipped to the volume.

    Falls back to the annotated voxels' box when no foreground is annotated.
    """
    mask = (labels > 0) & (weight > 0)
    if not mask.any():
        mask = weight > 0
    coords = np.nonzero(mask)
    starts = [max(0, int(c.min()) - m) for c, m in zip(coords, margin)]
    stops = [min(s, int(c.max()) + 1 + m) for c, m, s in zip(coords, margin, weight.shape)]
    return Box(*starts, *stops)


def list_slices(slices: Mapping[int, Sequence[int]]) -> list[Slice]:
    return [(int(axis), int(index)) for axis, indices in sorted(slices.items()) for index in indices]


def split_validation(slices: Mapping[int, Sequence[int]], min_train: int = 2) -> tuple[list[Slice], list[Slice]]:
    """Hold out annotated slices for validation when enough remain to train on.

    About one in four slices is held out (at least one when there are at least ``min_train + 1``),
    chosen evenly inside each axis's list so that validation measures interpolation between slices.
    Returns (train, validation); validation is empty when there are too few slices.
    """
    all_slices = list_slices(slices)
    n_val = len(all_slices) // 4 if len(all_slices) >= 8 else (1 if len(all_slices) > min_train else 0)
    if n_val == 0:
        return all_slices, []
    # take every step-th slice, starting inside the list so the extremes stay in training
    step = len(all_slices) / n_val
    picks = {int(step * (i + 0.5)) for i in range(n_val)}
    validation = [s for i, s in enumerate(all_slices) if i in picks]
    train = [s for i, s in enumerate(all_slices) if i not in picks]
    return train, validation


@dataclass
class SlicePatchSampler:
    """Random crops of size ``crop_size`` (d, h, w) around annotated slices.

    image: (C, D, H, W) float32 normalized; labels: (D, H, W) class indices (uint8); weight: (D, H, W)
    float32 (0 = unlabeled); slices: the annotated slices to train on; box: the training region.
    Crops reaching past the volume are padded (image: edge values; labels and weights: 0).
    """

    image: np.ndarray
    labels: np.ndarray
    weight: np.ndarray
    slices: list[Slice]
    box: Box
    crop_size: tuple[int, int, int]
    patch_size: tuple[int, int, int]
    foreground_fraction: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self._foreground = {}
        for axis, index in self.slices:
            where = (slice(None),) * axis + (index,)
            fg = np.argwhere((self.labels[where] > 0) & (self.weight[where] > 0))
            self._foreground[(axis, index)] = fg

    def _centre(self, axis: int, index: int) -> list[int]:
        in_plane = [a for a in range(3) if a != axis]
        fg = self._foreground[(axis, index)]
        centre = [0, 0, 0]
        if len(fg) and self.rng.random() < self.foreground_fraction:
            point = fg[self.rng.integers(len(fg))]
            for a, p in zip(in_plane, point):
                centre[a] = int(p)
        else:
            for a in in_plane:
                centre[a] = int(self.rng.integers(self.box.start[a], self.box.stop[a]))
        # the slice lies anywhere in the central patch (not too close to its border)
        half = max(0, self.patch_size[axis] // 2 - 2)
        centre[axis] = index + int(self.rng.integers(-half, half + 1))
        return centre

    def sample(self) -> dict[str, torch.Tensor]:
        """One crop: {"image": (C, d, h, w), "label": (1, d, h, w) float, "weight": (1, d, h, w)}."""
        axis, index = self.slices[self.rng.integers(len(self.slices))]
        centre = self._centre(axis, index)
        starts = [c - s // 2 for c, s in zip(centre, self.crop_size)]
        return {
            "image": torch.from_numpy(crop_padded(self.image, starts, self.crop_size, "edge")),
            "label": torch.from_numpy(
                crop_padded(self.labels[None], starts, self.crop_size, "constant").astype(np.float32)
            ),
            "weight": torch.from_numpy(crop_padded(self.weight[None], starts, self.crop_size, "constant")),
        }


def crop_padded(array: np.ndarray, starts: Sequence[int], size: Sequence[int], mode: str) -> np.ndarray:
    """``array[:, s0:s0+d, s1:s1+h, s2:s2+w]`` for (C, D, H, W), padded where it reaches past the edges."""
    shape = array.shape[1:]
    lo = [max(0, s) for s in starts]
    hi = [min(n, s + z) for n, s, z in zip(shape, starts, size)]
    part = array[:, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    pad = [(0, 0)] + [(l - s, s + z - h) for l, s, z, h in zip(lo, starts, size, hi)]
    if any(p != (0, 0) for p in pad):
        if mode == "edge" and part.size == 0:
            return np.zeros((array.shape[0], *size), dtype=array.dtype)
        part = np.pad(part, pad, mode=mode)
    return np.ascontiguousarray(part)
