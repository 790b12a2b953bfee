"""Overlap and distance metrics between binary masks [k, j, i]."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two binary masks (1.0 when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def hausdorff95(prediction: np.ndarray, truth: np.ndarray, spacing_kji: Sequence[float]) -> float:
    """95th-percentile symmetric Hausdorff distance in mm (MONAI); NaN when either mask is empty."""
    if not np.any(prediction) or not np.any(truth):
        return float("nan")
    import torch
    from monai.metrics import compute_hausdorff_distance

    def one_hot(mask: np.ndarray) -> torch.Tensor:
        mask = np.asarray(mask, dtype=bool)
        return torch.from_numpy(np.stack([~mask, mask])[None].astype(np.float32))

    distance = compute_hausdorff_distance(one_hot(prediction), one_hot(truth), percentile=95, spacing=list(spacing_kji))
    return float(distance.item())
