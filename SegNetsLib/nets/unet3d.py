"""3D U-Net (Cicek, Abdulkadir, Lienkamp, Brox, Ronneberger, MICCAI 2016, arXiv 1606.06650).

Paper preset (``preset="paper"``), as in the paper's Fig. 1 and text:
- valid (unpadded) 3x3x3 convolutions, each with a bias and followed by batch norm and ReLU;
- 2x2x2 max pooling, stride 2; channels doubled *before* each pooling:
  in->32->64 | 64->64->128 | 128->128->256 | bottom 256->256->512;
- 2x2x2 stride-2 up-convolutions that keep the channel count and have no bias;
- the up-convolved tensor concatenated with the centre-cropped encoder feature of the same level,
  then two 3x3x3 convs (768->256->256, 384->128->128, 192->64->64); a 1x1x1 head with a bias.
With 3 inputs and 3 classes it has exactly 19,069,955 parameters counted the paper's (Caffe's) way,
where batch norm learns nothing (:func:`caffe_parameter_count`); PyTorch's BN affine adds 4,672.

Valid convolutions make the output smaller than the input (132x132x116 -> 44x44x28). To keep the
network contract (logits at the input size), the paper preset runs the paper's *overlap-tile*
strategy inside ``forward``: it mirrors the input by ``margin`` voxels (44 per side for the paper
depth) plus whatever the valid-size grid needs, runs the valid network and crops the output to the
input's extent, so a whole volume given to ``forward`` is segmented exactly as the paper tiles it.
When a volume is cut into windows, the mirrored context at inner window borders replaces real
context; for the paper's exact tiling, mirror-pad the whole volume once by ``margin``
(:func:`SegNetsLib.nets.blocks.padding.mirror_pad`), set ``overlap_tile=False`` (the forward then returns the
valid-region logits and requires valid sizes, see :meth:`UNet3D.valid_output_size` and
:meth:`UNet3D.valid_input_size`) and step windows by their output size.

Default preset: "same" padded convolutions, configurable width (``base_channels``), depth
(``levels``) and norm ("instance" by default, which behaves the same in training and inference at
batch size 1, or "batch"); any input size (padded to a multiple of 2**(levels-1) and cropped back).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.nets.blocks.concat_conv import conv_of_concatenation
from SegNetsLib.nets.blocks.padding import crop_to, mirror_pad, pad_to_multiple
from SegNetsLib.nets.outputs import SegmentationOutput

UNet3DOutput = SegmentationOutput

NORMS = ("batch", "instance")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    raise SegNetsError(f"unknown norm {kind!r} for the 3D U-Net; choose one of {', '.join(NORMS)}.")


class _DoubleConv(nn.Sequential):
    """Two 3x3x3 convolutions, each followed by norm and ReLU: (N, c_in, ...) -> (N, c_out, ...)."""

    def __init__(self, c_in: int, c_mid: int, c_out: int, padding: int, norm: str) -> None:
        super().__init__(
            nn.Conv3d(c_in, c_mid, 3, padding=padding),
            _norm(norm, c_mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(c_mid, c_out, 3, padding=padding),
            _norm(norm, c_out),
            nn.ReLU(inplace=True),
        )

    def forward_parts(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """The block on ``torch.cat(parts, dim=1)``, never built in inference (:func:`conv_of_concatenation`);
        empties ``parts``."""
        x = conv_of_concatenation(self[0], parts)
        for layer in list(self)[1:]:
            x = layer(x)
        return x


def _centre_crop(x: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
    """Cut the central ``spatial`` block out of ``x`` (N, C, D, H, W)."""
    starts = [(have - want) // 2 for have, want in zip(x.shape[2:], spatial)]
    return x[(slice(None), slice(None)) + tuple(slice(s, s + w) for s, w in zip(starts, spatial))]


class UNet3D(nn.Module):
    """3D U-Net: (N, in_channels, D, H, W) -> UNet3DOutput(logits (N, num_classes, D, H, W)).

    ``levels`` counts resolution levels including the bottom (paper: 4, i.e. three poolings);
    level l's encoder convs output ``base_channels * 2**l`` then twice that (paper base: 32).
    ``valid=True`` uses unpadded convolutions (paper); then ``overlap_tile`` says whether forward
    mirrors the input so the logits cover the input (True) or returns the valid region (False).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        base_channels: int = 16,
        levels: int = 4,
        norm: str = "instance",
        valid: bool = False,
        overlap_tile: bool = True,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1 or base_channels < 1 or levels < 2:
            raise SegNetsError(
                f"3D U-Net needs in_channels, num_classes, base_channels >= 1 and levels >= 2, got "
                f"{in_channels}, {num_classes}, {base_channels}, {levels}."
            )
        self.in_channels = in_channels
        self.levels = levels
        self.valid = valid
        self.overlap_tile = overlap_tile
        padding = 0 if valid else 1
        self.encoders = nn.ModuleList()
        c_in = in_channels
        for level in range(levels):
            width = base_channels * 2**level
            self.encoders.append(_DoubleConv(c_in, width, 2 * width, padding, norm))
            c_in = 2 * width
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(levels - 1)):
            skip = 2 * base_channels * 2**level
            self.ups.append(nn.ConvTranspose3d(c_in, c_in, 2, stride=2, bias=False))
            self.decoders.append(_DoubleConv(c_in + skip, skip, skip, padding, norm))
            c_in = skip
        self.head = nn.Conv3d(c_in, num_classes, 1)
        _init_weights(self)

    # ---- sizes of the valid (unpadded) network -------------------------------------------------
    def valid_output_size(self, size: int) -> int | None:
        """Output length along one axis for an input of ``size`` voxels, or None if not valid."""
        for _ in range(self.levels - 1):
            size -= 4
            if size < 2 or size % 2:
                return None
            size //= 2
        size -= 4
        if size < 1:
            return None
        for _ in range(self.levels - 1):
            size = 2 * size - 4
            if size < 1:
                return None
        return size

    def valid_input_size(self, output_size: int) -> int:
        """Smallest valid input length whose valid output is at least ``output_size`` voxels."""
        bottom = 1
        while True:
            size = bottom
            for _ in range(self.levels - 1):
                size = 2 * (size + 4)
            size += 4
            out = self.valid_output_size(size)
            if out is not None and out >= output_size:
                return size
            bottom += 1

    @property
    def margin(self) -> int:
        """Voxels lost on each side by the valid network (44 for the paper's 4 levels)."""
        size = self.valid_input_size(1)
        return (size - self.valid_output_size(size)) // 2

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> UNet3DOutput:
        """x: (N, in_channels, D, H, W) -> logits (N, num_classes, D, H, W) (valid region if not tiling)."""
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise SegNetsError(f"3D U-Net input has shape {tuple(x.shape)}; expected (N, {self.in_channels}, D, H, W).")
        if not self.valid:
            padded, shape = pad_to_multiple(x, 2 ** (self.levels - 1))
            return UNet3DOutput(logits=crop_to(self._run(padded), shape))
        if not self.overlap_tile:
            for size in x.shape[2:]:
                if self.valid_output_size(int(size)) is None:
                    larger = next(
                        s for s in range(int(size), int(size) + 2**self.levels * 4) if self.valid_output_size(s)
                    )
                    raise SegNetsError(
                        f"input size {tuple(x.shape[2:])} is not valid for the unpadded 3D U-Net: "
                        f"{int(size)} voxels cannot be pooled evenly, the next valid length is {larger}."
                    )
            return UNet3DOutput(logits=self._run(x))
        shape = tuple(int(s) for s in x.shape[2:])
        margin = self.margin
        needed = [self.valid_input_size(s) for s in shape]
        after = [n - s - margin for n, s in zip(needed, shape)]
        logits = self._run(mirror_pad(x, [margin] * len(shape), after))
        return UNet3DOutput(logits=crop_to(logits, shape))

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for encoder in self.encoders[:-1]:
            x = encoder(x)
            skips.append(x)
            x = F.max_pool3d(x, 2)
        x = self.encoders[-1](x)
        for up, decoder in zip(self.ups, self.decoders):
            x = up(x)
            parts = [_centre_crop(skips.pop(), x.shape[2:]), x]
            del x  # the parts list alone holds the features now, so each is freed once convolved
            x = decoder.forward_parts(parts)
        return self.head(x)


def _init_weights(net: nn.Module) -> None:
    """MSRA (He) initialisation of every conv, bias 0, as in the Caffe release."""
    for module in net.modules():
        if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def caffe_parameter_count(net: nn.Module) -> int:
    """Learnable parameters counted the paper's way: Caffe's BatchNorm (without Scale) learns nothing,
    so norm-layer affine parameters are left out."""
    norms = (nn.BatchNorm3d, nn.InstanceNorm3d, nn.GroupNorm)
    skipped = {id(p) for m in net.modules() if isinstance(m, norms) for p in m.parameters(recurse=False)}
    return sum(p.numel() for p in net.parameters() if id(p) not in skipped)


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"base_channels": 32, "levels": 4, "norm": "batch", "valid": True, "overlap_tile": True},
    "default": {"base_channels": 16, "levels": 4, "norm": "instance", "valid": False},
}


def build(in_channels: int, num_classes: int, preset: str = "default", **overrides: Any) -> UNet3D:
    """Build a 3D U-Net; ``overrides`` replace the preset's constructor arguments."""
    return UNet3D(in_channels, num_classes, **{**PRESETS[preset], **overrides})
