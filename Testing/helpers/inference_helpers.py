"""Small real networks and cards for the inference tests (Testing/test_inference*.py, test_segment_cli.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from SegNetsLib import nets
from SegNetsLib.card.card import ChannelInfo, LabelInfo, ModelCard, Normalization, RoiSettings
from SegNetsLib.core.volume import Volume
from SegNetsLib.inference.preprocess import preprocess
from SegNetsLib.nets.outputs import SegmentationOutput

CT_WINDOW = (-1000.0, 1000.0)  # HU -> [0, 1]

LIVER_CARD = ModelCard(
    id="tiny-liver",
    name="tiny liver",
    version="1.0.0",
    architecture="unet3d",
    in_channels=[ChannelInfo("CT", "CT")],
    labels=[LabelInfo(5, "liver", (0.86, 0.55, 0.41))],
    build_args={"preset": "default", "base_channels": 4, "levels": 3, "norm": "batch"},
    target_spacing=(6.0, 6.0, 6.0),
    normalization=Normalization("ct_window", CT_WINDOW),
    patch_size=(16, 32, 32),
    roi=RoiSettings(mode="auto", coarse_factor=2.0, extension="padding", padding_mm=12.0),
)


def hounsfield(value: float) -> float:
    """A Hounsfield value as the network sees it after the CT window."""
    return (value - CT_WINDOW[0]) / (CT_WINDOW[1] - CT_WINDOW[0])


class ThresholdNet(nn.Module):
    """A 1x1x1 convolution thresholding its input: a real network whose output at a voxel depends on that voxel alone,
    so sliding windows, RoIs and the whole volume must agree exactly (the reference for exactness tests).

    Softmax form (``background=True``): logits (N, 1 + T, D, H, W) with logit_c = gain * (c x - t_1 - ... - t_c),
    so the argmax is the number of increasing thresholds passed. Multi-label form: logits (N, T, ...) with
    logit_c = gain * (x - t_c), i.e. sigmoid >= 0.5 exactly where x >= t_c.
    """

    def __init__(self, *thresholds: float, background: bool = True, gain: float = 1000.0) -> None:
        super().__init__()
        offset = 1 if background else 0
        self.conv = nn.Conv3d(1, len(thresholds) + offset, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            for index, threshold in enumerate(thresholds):
                channel = index + offset
                if background:
                    self.conv.weight[channel] = gain * channel
                    self.conv.bias[channel] = -gain * sum(thresholds[:channel])
                else:
                    self.conv.weight[channel] = gain
                    self.conv.bias[channel] = -gain * threshold

    def forward(self, x: torch.Tensor) -> SegmentationOutput:
        return SegmentationOutput(self.conv(x))


def threshold_card(*values: int, multi_label: bool = False, **changes) -> ModelCard:
    labels = [LabelInfo(v, f"label {v}", (0.1 * i, 0.5, 0.9)) for i, v in enumerate(values, start=1)]
    card = replace(
        LIVER_CARD, id="threshold", labels=labels, multi_label=multi_label, target_spacing=None, patch_size=(8, 32, 32)
    )
    return replace(card, **changes)


TINY_CARD = replace(
    LIVER_CARD, id="tiny-untrained", build_args={"preset": "default", "base_channels": 2, "levels": 2, "norm": "batch"}
)


def tiny_unet(seed: int = 0) -> nn.Module:
    """An untrained 2-level, 2-channel 3D U-Net (batch norm, eval mode) matching :data:`TINY_CARD`: cheap, deterministic."""
    torch.manual_seed(seed)
    build = dict(TINY_CARD.build_args)
    return nets.build(TINY_CARD.architecture, 1, TINY_CARD.num_classes, build.pop("preset"), **build).eval()


def train_tiny_liver_unet(ct: Volume, label: Volume, iterations: int = 300, seed: int = 0) -> nn.Module:
    """A 3-level, 4-channel 3D U-Net trained on random patches of one CT's liver (label 5).

    Steps alternate between the card's 6 mm grid (the fine pass) and the coarse pass's 12 mm grid, so the
    coarse pass sees the scale it was trained on. Patches of the card's patch size, as the sliding windows
    see them, so the net does not learn the volume's borders. Two patches per step: PyTorch's CPU conv3d
    takes its fast oneDNN path only for batches above 1 (or large C*D*H).
    """
    torch.manual_seed(seed)
    card = LIVER_CARD
    build = dict(card.build_args)
    net = nets.build(card.architecture, 1, card.num_classes, build.pop("preset"), **build)
    liver = label.with_array((label.array == 5).astype(np.float32))
    scales = []
    for factor in (1.0, card.roi.coarse_factor):
        scaled = replace(card, target_spacing=tuple(s * factor for s in card.target_spacing))
        image = torch.from_numpy(preprocess(ct, scaled).network_input())
        mask = preprocess(liver, replace(scaled, normalization=Normalization("none"))).grid.array[0] > 0.5
        scales.append((image, torch.from_numpy(mask.astype(np.int64))))
    generator = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.005)
    weights = torch.tensor([1.0, 4.0])
    net.train()
    for step in range(iterations):
        image, target = scales[step % 2]
        patch = [min(p, s) for p, s in zip(card.patch_size, target.shape)]
        windows = []
        for _ in range(2):
            start = [int(generator.integers(0, s - p + 1)) for s, p in zip(target.shape, patch)]
            windows.append(tuple(slice(a, a + p) for a, p in zip(start, patch)))
        optimizer.zero_grad()
        logits = net(torch.stack([image[(slice(None), *w)] for w in windows])).logits
        loss = nn.functional.cross_entropy(logits, torch.stack([target[w] for w in windows]), weight=weights)
        loss.backward()
        optimizer.step()
    return net.eval()


def oblique(volume: Volume, degrees: float = 30.0) -> Volume:
    """The same voxels on a grid rotated about the k axis with i flipped (oblique, not axis-aligned)."""
    a = np.deg2rad(degrees)
    rotation = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    return Volume(volume.array, volume.spacing, (14.0, -7.0, 33.0), rotation @ np.diag([-1.0, 1.0, 1.0]))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total
