"""Fine-tuning a large volume holds few whole-volume arrays besides the volume and the annotation.

A clinical CT (0.75 x 0.75 x 1.5 mm) has 44 million voxels: each byte per voxel held at once is 44 MB of a
laptop's memory. tracemalloc counts numpy's arrays (not torch's), so the bound is on what fine-tuning itself
allocates around the network.
"""

from __future__ import annotations

import tracemalloc

import numpy as np

from SegNetsLib.core.volume import Volume
from SegNetsLib.finetune.options import FinetuneOptions
from SegNetsLib.finetune.run import finetune

OPTIONS = FinetuneOptions(iterations=1, segment=False, validation=False, threads=1, device="cpu")


def _painted_ball(shape: tuple[int, int, int]) -> tuple[Volume, Volume]:
    """A bright ellipsoid in noise (1 x 1 x 2 mm voxels), painted on three axial slices."""
    z, y, x = np.indices(shape)
    centre = np.array(shape) / 2
    ball = sum(((c - m) / (0.4 * n)) ** 2 for c, m, n in zip((z, y, x), centre, shape)) <= 1
    noise = np.random.default_rng(0).normal(0, 5, shape).astype(np.float32)
    image = Volume(np.where(ball, 60, -100).astype(np.float32) + noise, (1.0, 1.0, 2.0))
    painted = np.zeros(shape, np.uint8)
    for k in (shape[0] * 3 // 10, shape[0] // 2, shape[0] * 7 // 10):
        painted[k] = ball[k]
    return image, image.with_array(painted)


def test_preparing_a_fine_tune_holds_under_20_bytes_per_voxel():
    """The class indices the network learns from are one byte per voxel (int64 had brought the peak to 24)."""
    finetune(*_painted_ball((16, 48, 48)), "unet3d", OPTIONS)  # first-call imports and allocations
    image, annotation = _painted_ball((48, 160, 160))
    tracemalloc.start()
    try:
        result = finetune(image, annotation, "unet3d", OPTIONS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.iterations == 1
    print(f"peak {peak / image.array.size:.1f} bytes per voxel")
    assert peak < 20 * image.array.size, peak / image.array.size
