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
