"""Overlap and distance metrics between binary masks [k, j, i]."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two binary masks (1.0 when both are empty)."""
    intersection, sizes = class_overlaps(np.asarray(a, dtype=bool), np.asarray(b, dtype=bool), 2)
    return 1.0 if sizes[1] == 0 else 2.0 * intersection[1] / sizes[1]


def class_overlaps(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class c in 0..num_classes-1: (|P_c & T_c|, |P_c| + |T_c|) of two label arrays of one shape.

    Counts add up over slices or cases, so a pooled Dice is ``2 * sum(intersection) / sum(sizes)``.
    """
    prediction, truth = np.asarray(prediction).ravel(), np.asarray(truth).ravel()
    if prediction.shape != truth.shape:
        raise ValueError(f"label arrays of different sizes: {prediction.size} and {truth.size} voxels")
    both = np.bincount(prediction[prediction == truth].astype(np.int64), minlength=num_classes)[:num_classes]
    sizes = np.bincount(prediction.astype(np.int64), minlength=num_classes)[:num_classes]
    sizes = sizes + np.bincount(truth.astype(np.int64), minlength=num_classes)[:num_classes]
    return both.astype(np.int64), sizes.astype(np.int64)


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
