"""Fine-tuning a network that takes only some input sizes (paper presets): its patches are sizes it takes."""

from __future__ import annotations

import numpy as np
import pytest

from SegNetsLib.card.factory import make_card
from SegNetsLib.core.volume import Volume
from SegNetsLib.finetune.options import FinetuneOptions
from SegNetsLib.finetune.run import finetune
from SegNetsLib.nets import build


@pytest.mark.parametrize(
    ("architecture", "build_args", "patch"),
    [
        # built for 40 x 16 x 16 alone: fine-tuning cut the card's patch to at most 32 x 96 x 96 and failed with
        # "this ConResNet was built for input size (40, 16, 16) (D, H, W), not (32, 16, 16)", though it segments
        ("conresnet", {"width_divisor": 4, "shape": (40, 16, 16)}, (40, 16, 16)),
        # takes multiples of (2, 4, 4): "RU-Net input size (6, 18, 18) must be divisible by (2, 4, 4)"
        ("runet", {"base_channels": 2}, (6, 18, 18)),
    ],
)
def test_a_paper_network_fine_tunes_on_patches_it_takes(architecture, build_args, patch):
    shape = (12, 24, 24)
    z, y, x = np.indices(shape)
    truth = ((y - 12) ** 2 + (x - 12) ** 2 <= 36).astype(np.uint8)
    image = Volume((100.0 * truth + np.random.default_rng(0).normal(0, 10, shape)).astype(np.float32))
    labels = np.zeros(shape, dtype=np.uint8)
    labels[[3, 6, 9]] = truth[[3, 6, 9]]
    card = make_card(architecture, {1: "disc"}, modality="MR", preset="paper", build_args=build_args, patch_size=patch)
    net = build(architecture, 1, 2, "paper", **build_args)
    options = FinetuneOptions(iterations=2, device="cpu", batch_size=1, refine=False)
    result = finetune(image, image.with_array(labels), (net, card), options)
    assert result.iterations >= 1 and result.labelmap.array.shape == shape  # trained and segmented, not refused
