"""Fine-tuning ends within 5 % (or 2 s) of its time limit, segmentation and refinement included."""

from __future__ import annotations

import time

import numpy as np
import pytest
from robustness_cases import expect

from SegNetsLib.core.volume import Volume
from SegNetsLib.finetune.options import FinetuneOptions
from SegNetsLib.finetune.run import finetune

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _phantom(shape=(24, 48, 48)) -> tuple[Volume, Volume]:
    """A bright ellipsoid in noise (2 mm voxels) and an annotation of 5 of its slices."""
    rng = np.random.default_rng(0)
    z, y, x = np.indices(shape)
    centre = np.array(shape) / 2
    truth = ((z - centre[0]) / 9) ** 2 + ((y - centre[1]) / 16) ** 2 + ((x - centre[2]) / 14) ** 2 <= 1
    image = Volume((100.0 * truth + rng.normal(0, 10, shape)).astype(np.float32), spacing=(2.0, 2.0, 2.0))
    labels = np.zeros(shape, np.uint8)
    for k in (5, 9, 12, 15, 19):
        labels[k] = truth[k]
    return image, image.with_array(labels)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("limit_s", [12.0])
def test_finetune_stops_within_its_time_limit(limit_s):
    image, annotation = _phantom()
    options = FinetuneOptions(
        time_limit_s=limit_s,
        device="cpu",
        patch_size=(8, 32, 32),
        batch_size=1,
        scratch_downsample=1,
        scratch_build_args={"base_channels": 4, "levels": 3},
        threads=1,
    )
    began = time.monotonic()
    result = finetune(image, annotation, "unet3d", options)
    took = time.monotonic() - began
    print(f"fine-tune time limit {limit_s} s: returned after {took:.2f} s, {result.iterations} iterations")
    expect("finetune-time-limit", f"returned after {took:.2f} s")
    assert abs(took - limit_s) <= max(0.05 * limit_s, 2.0), took
    assert result.iterations > 0
