"""Building blocks of ConResNet (Zhang et al., IEEE TMI 2021): weight-standardised convolutions,
pre-activation residual blocks and the context residual module.

Facts (weight standardisation with the unbiased variance and eps 1e-12, GroupNorm(8) -> ReLU -> conv
order, F * (1 + sigmoid(O_res))) follow the paper and jianpengz/ConResNet @cf32e95 as described in
../shared/golden/README.md; the code is ours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from SegNetsLib.core.errors import SegNetsError

GROUPS = 8  # GroupNorm groups everywhere in ConResNet
WS_EPS = 1e-12  # weight-standardisation epsilon of the official code


class WSConv3d(nn.Conv3d):
    """Conv3d without bias whose kernel is standardised per output filter before every use:
    W <- (W - mean) / sqrt(var_unbiased + 1e-12), statistics over (in, kD, kH, kW)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> None:
        super().__init__(
            c_in, c_out, kernel, stride=stride, padding=dilation * (kernel // 2), dilation=dilation, bias=False
        )

    def standardized_weight(self) -> torch.Tensor:
        flat = self.weight.reshape(self.weight.shape[0], -1)
        centred = flat - flat.mean(dim=1, keepdim=True)
        scale = torch.sqrt(centred.var(dim=1, unbiased=True, keepdim=True) + WS_EPS)
        return (centred / scale).view_as(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv3d(x, self.standardized_weight(), None, self.stride, self.padding, self.dilation, self.groups)


def group_norm(channels: int) -> nn.GroupNorm:
    if channels % GROUPS:
        raise SegNetsError(f"ConResNet width {channels} is not a multiple of the {GROUPS} GroupNorm groups.")
    return nn.GroupNorm(GROUPS, channels)


class NormReluConv(nn.Module):
    """GroupNorm -> ReLU -> [Dropout3d] -> weight-standardised conv: (N, c_in, ...) -> (N, c_out, ...)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = group_norm(c_in)
        self.dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.conv = WSConv3d(c_in, c_out, 3, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dropout(F.relu(self.norm(x))))


class PreActBlock(nn.Module):
    """x + conv2(ReLU(GN2(conv1(ReLU(GN1(x)))))) with two 3x3x3 WS convs of the given dilation."""

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.norm1 = group_norm(channels)
        self.conv1 = WSConv3d(channels, channels, 3, dilation=dilation)
        self.norm2 = group_norm(channels)
        self.conv2 = WSConv3d(channels, channels, 3, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(y)))


def slice_difference(t: torch.Tensor) -> torch.Tensor:
    """|t[:, :, s] - t[:, :, s-1]| along D (dim 2) of (N, C, D, H, W); slice 0 is zero."""
    return torch.cat([torch.zeros_like(t[:, :, :1]), (t[:, :, 1:] - t[:, :, :-1]).abs()], dim=2)


class ContextResidualBlock(nn.Module):
    """Context residual module joining the segmentation and residual decoders at one scale.

    F = conv(ReLU(GN(I_seg))); G = slice_difference(sigmoid(F)); x = R_in + conv1x1(G) where R_in is
    conv(I_res) for the first block (raw ``res_in`` image-residual channels, no norm), conv(ReLU(GN(I_res)))
    when widths change, else I_res; O_res = conv(ReLU(GN(x))); returns (F * (1 + sigmoid(O_res)), O_res).
    """

    def __init__(self, c_in: int, c_out: int, res_in: int | None = None) -> None:
        super().__init__()
        self.seg_norm = group_norm(c_in)
        self.seg_conv = WSConv3d(c_in, c_out, 3)
        self.gate_conv = WSConv3d(c_out, c_out, 1)
        self.res_in_norm = group_norm(c_in) if res_in is None and c_in != c_out else None
        if res_in is not None:
            self.res_in_conv: nn.Module | None = WSConv3d(res_in, c_out, 3)
        elif c_in != c_out:
            self.res_in_conv = WSConv3d(c_in, c_out, 3)
        else:
            self.res_in_conv = None
        self.res_norm = group_norm(c_out)
        self.res_conv = WSConv3d(c_out, c_out, 3)

    def forward(self, seg: torch.Tensor, res: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.seg_conv(F.relu(self.seg_norm(seg)))
        gate = self.gate_conv(slice_difference(torch.sigmoid(f)))
        if self.res_in_norm is not None:
            res = F.relu(self.res_in_norm(res))
        if self.res_in_conv is not None:
            res = self.res_in_conv(res)
        o_res = self.res_conv(F.relu(self.res_norm(res + gate)))
        return f * (1 + torch.sigmoid(o_res)), o_res
