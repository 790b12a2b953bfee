"""A tiny fine-tuning set-up shared by the fine-tuning tests: options that train in a second, and a phantom."""

from __future__ import annotations

import numpy as np

from SegNetsLib.core.volume import Volume
from SegNetsLib.finetune.options import FinetuneOptions

TINY = FinetuneOptions(
    iterations=3,
    device="cpu",
    patch_size=(8, 16, 16),
    batch_size=1,
    scratch_downsample=1,
    scratch_build_args={"base_channels": 2, "levels": 2},
)


def ellipsoid_phantom(shape=(16, 24, 24)) -> tuple[Volume, np.ndarray]:
    """A bright ellipsoid (class 1, semi-axes 6 x 8 x 7 voxels along k, j, i) in noise at the centre of ``shape``
    [k, j, i], 2 mm voxels; the image and the full truth (uint8 [k, j, i])."""
    rng = np.random.default_rng(0)
    z, y, x = np.indices(shape)
    centre = [n // 2 for n in shape]
    truth = (((z - centre[0]) / 6) ** 2 + ((y - centre[1]) / 8) ** 2 + ((x - centre[2]) / 7) ** 2 <= 1).astype(np.uint8)
    image = (100.0 * truth + rng.normal(0, 10, shape)).astype(np.float32)
    return Volume(image, spacing=(2.0, 2.0, 2.0)), truth
