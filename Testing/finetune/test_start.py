"""Where fine-tuning starts (SegNetsLib.finetune.start): a new network of each architecture sized for the budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from SegNetsLib.core.volume import Volume
from SegNetsLib.finetune.start import scratch_start
from SegNetsLib.nets import ARCHITECTURES

PATCH = (8, 48, 48)  # a new network's training patch (SCRATCH_THIN x SCRATCH_WIDE)


def _forward_flops(architecture: str) -> int:
    """Floating-point operations of one forward pass of ``architecture``'s new network over a patch of PATCH."""
    torch.manual_seed(0)
    image = Volume(np.random.default_rng(0).normal(0, 1, (16, 48, 48)).astype(np.float32), spacing=(1.0, 1.0, 1.0))
    labels = np.zeros(image.shape_kji, dtype=np.uint8)
    labels[8, 10:30, 10:30] = 1
    weight = np.zeros(labels.shape, dtype=np.float32)
    weight[8] = 1
    start = scratch_start(architecture, image, labels, weight, [1], PATCH)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        start.net.eval()(torch.zeros(1, 1, *PATCH))
    return counter.get_total_flops()


@pytest.mark.parametrize("architecture", [a for a in ARCHITECTURES if a != "unet3d"])
def test_a_new_network_of_each_architecture_costs_about_what_the_3d_u_net_does(architecture):
    """A new network learns in the run's time limit and a correction round trains a fixed 60-100 iterations: at their
    default widths V-Net, ConResNet and RU-Net cost 15-48x the sized 3D U-Net per patch, trained 32-77 iterations in a
    60 s run, and a correction round took 94-243 s instead of seconds."""
    assert _forward_flops(architecture) <= 2 * _forward_flops("unet3d")
