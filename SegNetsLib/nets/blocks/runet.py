"""Building blocks of 3D RU-Net (Huang et al. 2019): the residual block of the official v2 model.py
(huangyjhust/3D-RU-Net @0adaf43, facts from ../shared/golden/README.md) and the local decoder's up stage.
The code is ours."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from SegNetsLib.nets.blocks.concat_conv import conv_of_concatenation

IN_EPS = 1e-5  # InstanceNorm3d epsilon (no affine, no running statistics)


def _instance_norm(x: torch.Tensor) -> torch.Tensor:
    return F.instance_norm(x, eps=IN_EPS)


class ResBlock(nn.Module):
    """x1 = conv1(x); y = ReLU(IN(x1)); y = ReLU(IN(conv2(y))); y = IN(conv3(y)); out = ReLU(y + x1).

    The residual comes from the raw conv1 output. Kernels (kz, 3, 3) with padding ((kz-1)/2, d, d) and
    dilation (1, d, d): the slice axis is never dilated.
    """

    def __init__(self, c_in: int, c_out: int, kernel_z: int, dilation: int) -> None:
        super().__init__()
        kernel, padding, dil = (kernel_z, 3, 3), ((kernel_z - 1) // 2, dilation, dilation), (1, dilation, dilation)
        self.conv1 = nn.Conv3d(c_in, c_out, kernel, padding=padding, dilation=dil)
        self.conv2 = nn.Conv3d(c_out, c_out, kernel, padding=padding, dilation=dil)
        self.conv3 = nn.Conv3d(c_out, c_out, kernel, padding=padding, dilation=dil)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._after_conv1(self.conv1(x))

    def forward_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """The block on ``torch.cat(parts, dim=1)``, never built in inference (:func:`conv_of_concatenation`);
        empties ``parts``."""
        return self._after_conv1(conv_of_concatenation(self.conv1, parts))

    def _after_conv1(self, x1: torch.Tensor) -> torch.Tensor:
        y = F.relu(_instance_norm(x1))
        y = F.relu(_instance_norm(self.conv2(y)))
        y = _instance_norm(self.conv3(y))
        return F.relu(y + x1)


class UpStage(nn.Module):
    """Local decoder stage: trilinear upsample (align_corners=False) by ``scale``, 1x1x1 conv + ReLU,
    concatenate [skip, upsampled], residual block: (N, c_in, d, h, w) + skip (N, c_out, ...) -> (N, c_out, ...)."""

    def __init__(self, c_in: int, c_out: int, scale: Sequence[int], kernel_z: int, dilation: int) -> None:
        super().__init__()
        self.scale = tuple(float(s) for s in scale)
        self.reduce = nn.Conv3d(c_in, c_out, 1)
        self.block = ResBlock(2 * c_out, c_out, kernel_z, dilation)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=self.scale, mode="trilinear", align_corners=False)
        return self.block.forward_parts([skip, F.relu(self.reduce(up))])
