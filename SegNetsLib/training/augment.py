"""Training augmentation after the 3D U-Net paper: rotation, scaling, gray values, smooth deformation.

The spatial part (rotation, scaling, optionally stronger along the annotated slice axis, and a smooth
dense random deformation) is one MONAI ``Rand3DElasticd`` resampling applied alike to the image
(linear), the labels (nearest) and the weights (nearest, zero outside the input), run on the training
device. MONAI smooths a dense random displacement field with a Gaussian; the paper samples vectors on a
32-voxel grid (std 4 voxels) and interpolates them with B-splines: both give a smooth dense deformation
of a few voxels. Gray values: random scale, shift and gamma of the image only.

Samples are dicts ``{"image": (C, D, H, W), "label": (1, D, H, W), "weight": (1, D, H, W)}`` of torch
tensors; the output has the ``patch_size`` given, cut from the centre of the (larger) input.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.data import get_track_meta, set_track_meta
from monai.transforms import (
    Compose,
    Rand3DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandScaleIntensityd,
    RandShiftIntensityd,
)

from SegNetsLib.training.dataset import CasePatchSampler, targets_from_labels

KEYS = ("image", "label", "weight")


@dataclass
class AugmentOptions:
    """Ranges of the random augmentations (probabilities per sample).

    rotate_degrees: rotation about each axis, uniform in +-value. scale: isotropic relative range
    (0.15 = factor in [0.85, 1.15]); slice_axis_scale: extra relative range along ``slice_axis``.
    deform_sigma / deform_magnitude: smoothness (voxels) and size (voxels) of the dense deformation; deform:
    False leaves it out (rotation and scaling only: a quarter of its time per patch on a CPU).
    intensity_scale / intensity_shift / gamma: gray-value changes of the (normalized) image.
    """

    rotate_degrees: float = 15.0
    scale: float = 0.15
    slice_axis_scale: float = 0.3
    deform_sigma: tuple[float, float] = (6.0, 9.0)
    deform_magnitude: tuple[float, float] = (0.0, 4.0)
    deform: bool = True
    spatial_prob: float = 0.9
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1
    gamma: tuple[float, float] = (0.7, 1.5)
    intensity_prob: float = 0.5


def input_size(patch_size: Sequence[int], options: AugmentOptions) -> tuple[int, ...]:
    """Size (d, h, w) of the crop to feed so that rotation and scaling rarely reach past its border."""
    rotation = math.radians(options.rotate_degrees)
    margin = (1.0 + options.scale + options.slice_axis_scale) * (abs(math.cos(rotation)) + abs(math.sin(rotation)))
    return tuple(int(math.ceil(s * min(margin, 1.6))) for s in patch_size)


def build_augmentation(
    patch_size: Sequence[int],
    options: AugmentOptions | None = None,
    slice_axis: int | None = None,
    device: torch.device | str = "cpu",
    seed: int | None = None,
) -> Compose:
    """A random transform of a sample dict to ``patch_size`` (d, h, w), run on ``device``; ``seed`` fixes its
    random draws (None: MONAI's default state).

    ``slice_axis`` (0, 1, 2 or None) is the array axis normal to the annotated slices; scaling along it
    gets the extra ``slice_axis_scale`` range so the network sees the annotated anatomy stretched and
    squeezed between slices.
    """
    options = options or AugmentOptions()
    scale = [options.scale] * 3
    if slice_axis is not None:
        scale[slice_axis] += options.slice_axis_scale
    rotate = math.radians(options.rotate_degrees)
    smooth = (
        {"sigma_range": options.deform_sigma, "magnitude_range": options.deform_magnitude} if options.deform else {}
    )
    spatial = (Rand3DElasticd if options.deform else RandAffined)(
        keys=KEYS,
        **smooth,
        spatial_size=tuple(int(s) for s in patch_size),
        prob=options.spatial_prob,
        rotate_range=(rotate, rotate, rotate),
        scale_range=tuple(scale),
        mode=("bilinear", "nearest", "nearest"),
        padding_mode=("border", "zeros", "zeros"),
        device=torch.device(device),
    )
    transform = Compose(
        [
            spatial,
            RandScaleIntensityd(keys="image", factors=options.intensity_scale, prob=options.intensity_prob),
            RandShiftIntensityd(keys="image", offsets=options.intensity_shift, prob=options.intensity_prob),
            RandAdjustContrastd(keys="image", gamma=options.gamma, prob=options.intensity_prob, retain_stats=True),
        ]
    )
    if seed is not None:
        transform.set_random_state(seed=seed)
    return transform


@contextlib.contextmanager
def untracked_meta() -> Iterator[None]:
    """MONAI transforms on plain tensors, without the metadata (affine, applied operations) they would otherwise
    carry along: the same values in 0.86x the time per training patch with the dense deformation, 0.63x without it
    (docs/benchmarks/augmentation.md)."""
    before = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(before)


def augment(transform: Compose, sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Apply ``transform`` to ``sample`` (plain tensors) and return plain tensors (labels int64, weights float):
    without metadata tracking MONAI gives plain tensors back."""
    with untracked_meta():
        out = transform(dict(sample))
    return {"image": out["image"].float(), "label": out["label"].round().long(), "weight": out["weight"].float()}


def training_batch(
    sampler: CasePatchSampler,
    batch_size: int,
    transform: Compose | None,
    device: torch.device,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch on ``device``: images (N, C, d, h, w), targets and weights (N, d, h, w), each patch drawn by
    ``sampler`` (a :class:`SegNetsLib.training.dataset.CasePatchSampler`) and augmented by ``transform`` if given."""
    images, labels = sampler.sample(batch_size, rng)
    target, weight = targets_from_labels(labels)
    if transform is None:
        return images.to(device), target.to(device), weight.to(device)
    samples = [
        augment(
            transform,
            {
                "image": images[i].to(device),
                "label": target[i : i + 1].to(device),
                "weight": weight[i : i + 1].to(device),
            },
        )
        for i in range(len(images))
    ]
    return (
        torch.stack([s["image"] for s in samples]),
        torch.stack([s["label"][0] for s in samples]),
        torch.stack([s["weight"][0] for s in samples]),
    )
