"""Typed forward results shared by every network.

Every network's ``forward(x)`` returns a :class:`SegmentationOutput` (or a subclass adding the
architecture's extras); ``logits`` is always (N, C, D, H, W) at the input's spatial size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SegmentationOutput:
    """logits: (N, num_classes, D, H, W) at the input's spatial size, before softmax/sigmoid."""

    logits: torch.Tensor


@dataclass
class ConResNetOutput(SegmentationOutput):
    """ConResNet: ``logits`` = segmentation; ``residual_logits`` = [res, resx2, resx4] context-residual heads,
    each (N, C, D, H, W) at the input size (the deep heads upsampled trilinearly, align_corners=True)."""

    residual_logits: list[torch.Tensor]


@dataclass
class RUNetOutput(SegmentationOutput):
    """3D RU-Net.

    ``logits``: (N, C, D, H, W) log of the pasted RoI probabilities (outside every RoI: background);
    ``coarse_logits``: (N, C, D/2, H/4, W/4) locator head of the global image encoder;
    ``rois``: input-voxel boxes (``SegNetsLib.core.box.Box``), largest component first;
    ``roi_logits`` / ``roi_contour_logits``: region / contour head per RoI, (N, C, d, h, w) on the RoI's voxels;
    ``probabilities``: (N, C, D, H, W) the pasted probabilities themselves (softmax of ``logits``).
    """

    coarse_logits: torch.Tensor
    rois: list
    roi_logits: list[torch.Tensor]
    roi_contour_logits: list[torch.Tensor]
    probabilities: torch.Tensor | None = None
