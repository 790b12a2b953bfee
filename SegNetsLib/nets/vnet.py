"""V-Net (Milletari, Navab, Ahmadi, 3DV 2016, arXiv 1606.04797) in the official Caffe configuration.

Paper preset = faustomilletari/VNet @584c150 ``Prototxt/train_noPooling_ResNet_cinque.prototxt``:
- 5x5x5 convolutions with padding 2, every conv and transposed conv with a bias, no normalisation;
- PReLU with one slope per channel (init 0.25) after every stage conv except the last of its stage,
  after every residual sum, after every down conv and up conv, and after the 5^3 head conv;
- residual stages: the stage input (the PReLU'd down-conv output, or the concatenation) is added to the
  output of the stage's last conv; the first stage adds the input repeated to 16 channels;
- convs per stage from the prototxt, not the paper figure: encoder 1,1,2,3,3, decoder 3,2,1,1
  (``depths="figure"`` gives the figure's 1,2,3,3,3 | 3,3,2,1);
- 2x2x2 stride-2 convs double the channels going down, 2x2x2 stride-2 transposed convs go up,
  the up-sampled tensor first in each concatenation;
- head: 5^3 conv 32 -> classes + PReLU, then a 1x1x1 conv classes -> classes (softmax in the loss).
At 1 input and 2 classes: 61,982,682 parameters (figure depths: 65,183,258).

Both presets accept any input size: forward pads to a multiple of 2**(levels-1) (16 for the paper) and
crops the logits back; on inputs of such a size the padding is a no-op and the network is exactly the
official one. Weights use Caffe's "msra" filler with variance_norm AVERAGE, biases 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.nets.blocks.padding import crop_to, pad_to_multiple
from SegNetsLib.nets.outputs import SegmentationOutput

VNetOutput = SegmentationOutput

OFFICIAL_DEPTHS = ((1, 1, 2, 3, 3), (3, 2, 1, 1))  # prototxt: encoder levels 0..4, decoder levels 3..0
FIGURE_DEPTHS = ((1, 2, 3, 3, 3), (3, 3, 2, 1))  # paper Fig. 2
# convolutions per stage: the papers use 3; a card's depth is untrusted and each conv is a module built (even on
# the meta device) before the network's size can be checked
MAX_STAGE_DEPTH = 16


class _ResidualStage(nn.Module):
    """``depth`` 5^3 convs to ``channels``; PReLU between them; + stage input; PReLU.

    The first conv reads ``in_channels`` (default ``channels``); only the input stage differs.
    """

    def __init__(self, channels: int, depth: int, in_channels: int | None = None) -> None:
        super().__init__()
        widths = [in_channels or channels] + [channels] * (depth - 1)
        self.convs = nn.ModuleList(nn.Conv3d(c, channels, 5, padding=2) for c in widths)
        self.prelus = nn.ModuleList(nn.PReLU(channels) for _ in range(depth))  # last one after the sum

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """x: the stage input; ``residual`` replaces x in the sum when given (the first stage)."""
        y = x
        for i, conv in enumerate(self.convs):
            y = conv(y)
            if i < len(self.convs) - 1:
                y = self.prelus[i](y)
        return self.prelus[-1](y + (x if residual is None else residual))


class VNet(nn.Module):
    """V-Net: (N, in_channels, D, H, W) -> VNetOutput(logits (N, num_classes, D, H, W)).

    Level l has ``base_channels * 2**l`` channels in the encoder and twice that in the decoder
    (up-sampled half + skip half); the last decoder level has 2 * base_channels.
    ``encoder_depths`` has one entry per level (bottom last), ``decoder_depths`` one per level
    above the bottom, deepest first. The first stage's residual is the input repeated cyclically to
    ``base_channels`` channels (16 copies of a 1-channel input in the official network).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        base_channels: int = 16,
        encoder_depths: Sequence[int] = OFFICIAL_DEPTHS[0],
        decoder_depths: Sequence[int] = OFFICIAL_DEPTHS[1],
    ) -> None:
        super().__init__()
        levels = len(encoder_depths)
        depths = (*encoder_depths, *decoder_depths)
        if len(decoder_depths) != levels - 1 or levels < 2 or not 1 <= min(depths) <= max(depths) <= MAX_STAGE_DEPTH:
            raise SegNetsError(
                f"V-Net stage depths {tuple(encoder_depths)[:8]} | {tuple(decoder_depths)[:8]} must lie between 1 and "
                f"{MAX_STAGE_DEPTH}, with one decoder stage fewer than encoder stages and at least two levels."
            )
        if in_channels < 1 or num_classes < 1 or base_channels < 1:
            raise SegNetsError(
                f"V-Net needs in_channels, num_classes and base_channels >= 1, got "
                f"{in_channels}, {num_classes}, {base_channels}."
            )
        self.in_channels = in_channels
        self.levels = levels
        self.base_channels = base_channels
        self.encoders = nn.ModuleList([_ResidualStage(base_channels, encoder_depths[0], in_channels)])
        self.downs = nn.ModuleList()
        for level in range(1, levels):
            width = base_channels * 2**level
            self.downs.append(nn.Sequential(nn.Conv3d(width // 2, width, 2, stride=2), nn.PReLU(width)))
            self.encoders.append(_ResidualStage(width, encoder_depths[level]))
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        c_in = base_channels * 2 ** (levels - 1)
        for depth, level in zip(decoder_depths, reversed(range(levels - 1))):
            half = base_channels * 2**level
            self.ups.append(nn.Sequential(nn.ConvTranspose3d(c_in, half, 2, stride=2), nn.PReLU(half)))
            self.decoders.append(_ResidualStage(2 * half, depth))
            c_in = 2 * half
        self.head = nn.Sequential(
            nn.Conv3d(c_in, num_classes, 5, padding=2), nn.PReLU(num_classes), nn.Conv3d(num_classes, num_classes, 1)
        )
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> VNetOutput:
        """x: (N, in_channels, D, H, W) -> logits (N, num_classes, D, H, W)."""
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise SegNetsError(f"V-Net input has shape {tuple(x.shape)}; expected (N, {self.in_channels}, D, H, W).")
        x, shape = pad_to_multiple(x, 2 ** (self.levels - 1))
        repeats = -(-self.base_channels // x.shape[1])
        tiled = x.repeat(1, repeats, 1, 1, 1)[:, : self.base_channels]
        y = self.encoders[0](x, residual=tiled)
        skips = []
        for down, encoder in zip(self.downs, self.encoders[1:]):
            skips.append(y)
            y = encoder(down(y))
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            y = decoder(torch.cat([up(y), skip], dim=1))
        return VNetOutput(logits=crop_to(self.head(y), shape))


def _init_weights(net: nn.Module) -> None:
    """Caffe "msra" filler, variance_norm AVERAGE: N(0, 2 / ((fan_in + fan_out) / 2)); biases 0."""
    for module in net.modules():
        if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(module.weight)
            nn.init.normal_(module.weight, 0.0, (4.0 / (fan_in + fan_out)) ** 0.5)
            nn.init.zeros_(module.bias)


def _depths(name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    table = {"official": OFFICIAL_DEPTHS, "figure": FIGURE_DEPTHS}
    if name not in table:
        raise SegNetsError(f"unknown V-Net depths {name!r}; choose 'official' (prototxt) or 'figure' (paper Fig. 2).")
    return table[name]


def build(
    in_channels: int,
    num_classes: int,
    preset: str = "default",
    depths: str = "official",
    levels: int = 5,
    **overrides: Any,
) -> VNet:
    """Build a V-Net.

    preset "paper": the official prototxt network (base 16, 5 levels); "default": the same blocks at
    ``base_channels`` 8 (a quarter of the parameters). ``depths`` "official" or "figure" picks the
    stage depths; ``levels`` < 5 keeps the first ``levels`` encoder stages and the matching decoder
    stages (decoder depth of a level = encoder depth of that level in both tables).
    ``overrides`` replace constructor arguments (base_channels, encoder_depths, decoder_depths).
    """
    encoder, decoder = _depths(depths)
    if not 2 <= levels <= len(encoder):
        raise SegNetsError(f"V-Net levels must be between 2 and {len(encoder)}, got {levels}.")
    args: dict[str, Any] = {
        "base_channels": 16 if preset == "paper" else 8,
        "encoder_depths": encoder[:levels],
        "decoder_depths": decoder[len(decoder) - (levels - 1) :],
    }
    return VNet(in_channels, num_classes, **{**args, **overrides})
