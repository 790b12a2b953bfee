"""ConResNet (Zhang, Xie, Wang, Xia, IEEE TMI 40(2) 2021, arXiv 2011.14155).

A shared encoder of weight-standardised convolutions with GroupNorm(8) pre-activation residual blocks
(stages 1-2-2-2 blocks, widths w, 2w, 4w, 8w, the last stage followed by two blocks dilated 2), a fusion
conv 8w -> 4w, then two decoders joined at 1/4, 1/2 and full scale by the context residual module
(:class:`ContextResidualBlock`): trilinear align_corners=True upsampling, skips added. The residual
decoder starts from the adjacent-slice image residual |I[s] - I[s-1]| along D (slice 0 zero), which
``forward`` computes itself. Heads: segmentation plus three context-residual heads (deep supervision).

Presets:
- "paper": the official configuration (jianpengz/ConResNet @cf32e95): widths 32..256, 4 inputs and 3
  multi-label (sigmoid) outputs in the paper, decoder resized to a fixed ``shape`` (the input must have
  that size, divisible by 8), and the 23 parameters the official code creates but never uses kept as
  ``official_unused`` so counts and checkpoints match (19,441,196 total, 19,018,732 used at 4 in/3 out).
  ``width_divisor=4`` builds the quarter-width golden model.
- "default": any in_channels, softmax over ``num_classes``, any input size (zero-padded inside to a
  multiple of 8 and cropped back; the decoder resizes to the skip feature sizes), ``base_channels``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.nets.blocks.conresnet import ContextResidualBlock, NormReluConv, PreActBlock, WSConv3d, slice_difference
from SegNetsLib.nets.blocks.padding import crop_to, pad_to_multiple, padded_size
from SegNetsLib.nets.official_keys import UNUSED_PREFIX, convert_official, strip_module_prefix
from SegNetsLib.nets.outputs import ConResNetOutput

PAPER_SHAPE = (80, 160, 160)  # the official BraTS training patch (D, H, W)
_DIVISOR = 8  # three stride-2 stages


def image_residual(x: torch.Tensor) -> torch.Tensor:
    """Adjacent-slice image residual |I[s] - I[s-1]| along D of (N, C, D, H, W); slice 0 is zero."""
    return slice_difference(x)


def _upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="trilinear", align_corners=True)


class ConResNet(nn.Module):
    """ConResNet; ``forward(x, image_res=None)`` -> :class:`ConResNetOutput` at the input size."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        base_channels: int = 32,
        shape: Sequence[int] | None = None,
        pad_input: bool = True,
        dropout: float = 0.1,
        official_unused: bool = False,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1 or base_channels < 1:
            raise SegNetsError(
                f"ConResNet needs positive in_channels, num_classes and base_channels, got {in_channels}, {num_classes}, {base_channels}."
            )
        w = base_channels
        self.in_channels, self.num_classes, self.base_channels = in_channels, num_classes, base_channels
        self.shape = None if shape is None else tuple(int(s) for s in shape)
        if self.shape is not None and (len(self.shape) != 3 or any(s % _DIVISOR for s in self.shape)):
            raise SegNetsError(f"ConResNet shape {shape} must be three sizes (D, H, W), each divisible by {_DIVISOR}.")
        self.pad_input = pad_input
        self.stem = WSConv3d(in_channels, w, 3)
        self.enc0 = nn.Sequential(PreActBlock(w))
        self.down1 = NormReluConv(w, 2 * w, stride=2)
        self.enc1 = nn.Sequential(PreActBlock(2 * w), PreActBlock(2 * w))
        self.down2 = NormReluConv(2 * w, 4 * w, stride=2)
        self.enc2 = nn.Sequential(PreActBlock(4 * w), PreActBlock(4 * w))
        self.down3 = NormReluConv(4 * w, 8 * w, stride=2)
        self.enc3 = nn.Sequential(PreActBlock(8 * w), PreActBlock(8 * w))
        self.enc4 = nn.Sequential(PreActBlock(8 * w, dilation=2), PreActBlock(8 * w, dilation=2))
        self.fusion = NormReluConv(8 * w, 4 * w, dropout=dropout)
        self.ctx4 = ContextResidualBlock(4 * w, 2 * w, res_in=in_channels)
        self.ctx2 = ContextResidualBlock(2 * w, w)
        self.ctx1 = ContextResidualBlock(w, w)
        self.seg_head = nn.Conv3d(w, num_classes, 1)
        self.res_head = nn.Conv3d(w, num_classes, 1)
        self.res_head_x2 = nn.Conv3d(w, num_classes, 1)
        self.res_head_x4 = nn.Conv3d(2 * w, num_classes, 1)
        # parameters the official code creates but never reads (kept only for counts and checkpoints)
        self.official_unused = nn.ParameterDict(
            {_unused_name(k): nn.Parameter(torch.zeros(s)) for k, s in _unused_shapes(in_channels, w).items()}
            if official_unused
            else {}
        )

    def input_size(self, size: Sequence[int]) -> tuple[int, int, int]:
        """The input (D, H, W) that forward takes for a region of at least ``size``: the fixed ``shape``, ``size``
        itself (padded inside) or ``size`` rounded up to a multiple of 8."""
        if self.shape is not None:
            return self.shape  # type: ignore[return-value]
        if self.pad_input:
            return tuple(int(s) for s in size)  # type: ignore[return-value]
        return padded_size(size, _DIVISOR)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor, image_res: torch.Tensor | None = None) -> ConResNetOutput:
        """x: (N, C_in, D, H, W) image; image_res: optional precomputed |I[s]-I[s-1]| (same shape)."""
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise SegNetsError(
                f"ConResNet input has shape {tuple(x.shape)}; expected (N, {self.in_channels}, D, H, W)."
            )
        if image_res is None:
            image_res = image_residual(x)
        elif image_res.shape != x.shape:
            raise SegNetsError(
                f"ConResNet image residual has shape {tuple(image_res.shape)}, not the image's {tuple(x.shape)}."
            )
        size = tuple(x.shape[2:])
        if self.shape is not None and size != self.shape:
            raise SegNetsError(f"this ConResNet was built for input size {self.shape} (D, H, W), not {size}.")
        if self.pad_input:
            x, _ = pad_to_multiple(x, _DIVISOR)
            image_res, _ = pad_to_multiple(image_res, _DIVISOR)
        elif any(s % _DIVISOR for s in size):
            raise SegNetsError(f"ConResNet input size {size} must be divisible by {_DIVISOR} along D, H and W.")

        skip1 = self.enc0(self.stem(x))
        skip2 = self.enc1(self.down1(skip1))
        skip3 = self.enc2(self.down2(skip2))
        deep = self.fusion(self.enc4(self.enc3(self.down3(skip3))))

        s4 = tuple(skip3.shape[2:])
        seg4, res4 = self.ctx4(_upsample(deep, s4) + skip3, _upsample(image_res, s4))
        s2 = tuple(skip2.shape[2:])
        seg2, res2 = self.ctx2(_upsample(seg4, s2) + skip2, _upsample(res4, s2))
        s1 = tuple(skip1.shape[2:])
        seg1, res1 = self.ctx1(_upsample(seg2, s1) + skip1, _upsample(res2, s1))

        heads = [
            self.seg_head(seg1),
            self.res_head(res1),
            _upsample(self.res_head_x2(res2), s1),
            _upsample(self.res_head_x4(res4), s1),
        ]
        heads = [crop_to(h, size) for h in heads]
        return ConResNetOutput(logits=heads[0], residual_logits=heads[1:])


# ---- official checkpoint names -------------------------------------------------------------------------

_TOP = {
    "conv_4_32.0": "stem",
    "conv_32_64.0": "down1.norm",
    "conv_32_64.2": "down1.conv",
    "conv_64_128.0": "down2.norm",
    "conv_64_128.2": "down2.conv",
    "conv_128_256.0": "down3.norm",
    "conv_128_256.2": "down3.conv",
    "fusionConv.0": "fusion.norm",
    "fusionConv.3": "fusion.conv",
    "seg_cls.0": "seg_head",
    "res_cls.0": "res_head",
    "resx2_cls.0": "res_head_x2",
    "resx4_cls.0": "res_head_x4",
}
_BLOCK = {"gn1": "norm1", "conv1": "conv1", "gn2": "norm2", "conv2": "conv2"}
_CTX_USED = {
    "seg_x4": {
        "gn_seg": "seg_norm",
        "conv_seg": "seg_conv",
        "conv_res": "gate_conv",
        "gn_res1": "res_norm",
        "conv_res1": "res_conv",
        "conv_mp_first": "res_in_conv",
    },
    "seg_x2": {
        "gn_seg": "seg_norm",
        "conv_seg": "seg_conv",
        "conv_res": "gate_conv",
        "gn_res1": "res_norm",
        "conv_res1": "res_conv",
        "gn_mp": "res_in_norm",
        "conv_mp": "res_in_conv",
    },
    "seg_x1": {
        "gn_seg": "seg_norm",
        "conv_seg": "seg_conv",
        "conv_res": "gate_conv",
        "gn_res1": "res_norm",
        "conv_res1": "res_conv",
    },
}
_CTX_OURS = {"seg_x4": "ctx4", "seg_x2": "ctx2", "seg_x1": "ctx1"}
_LAYER = re.compile(r"^layer([0-4])\.(\d+)\.(gn1|conv1|gn2|conv2)\.(weight|bias)$")
_CTX_KEY = re.compile(r"^(seg_x[124])\.0\.(\w+)\.(weight|bias)$")


def _unused_shapes(in_channels: int, w: int) -> dict[str, tuple[int, ...]]:
    """Official key -> shape of the 23 parameters the official ConResNet creates but never uses."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, c_in, c_out in (("seg_x4", 4 * w, 2 * w), ("seg_x2", 2 * w, w), ("seg_x1", w, w)):
        p = f"{name}.0."
        shapes.update(
            {
                p + "gn_res.weight": (c_out,),
                p + "gn_res.bias": (c_out,),
                p + "gn_res2.weight": (c_out,),
                p + "gn_res2.bias": (c_out,),
                p + "conv_res2.weight": (c_out, c_out, 3, 3, 3),
            }
        )
        if name != "seg_x2":
            shapes.update(
                {p + "gn_mp.weight": (c_in,), p + "gn_mp.bias": (c_in,), p + "conv_mp.weight": (c_out, c_in, 3, 3, 3)}
            )
        if name != "seg_x4":
            shapes[p + "conv_mp_first.weight"] = (c_out, in_channels, 3, 3, 3)
    return shapes


def _unused_name(official_key: str) -> str:
    return official_key.replace(".", "__")


def official_to_ours(key: str) -> str | None:
    """Our parameter name for an official key; ``official_unused.<...>`` for the never-used ones, None if unknown."""
    module, _, leaf = key.rpartition(".")
    if module in _TOP:
        return f"{_TOP[module]}.{leaf}"
    m = _LAYER.match(key)
    if m:
        return f"enc{m[1]}.{m[2]}.{_BLOCK[m[3]]}.{m[4]}"
    m = _CTX_KEY.match(key)
    if m:
        used = _CTX_USED[m[1]]
        if m[2] in used:
            return f"{_CTX_OURS[m[1]]}.{used[m[2]]}.{m[3]}"
        if key in _unused_shapes(4, 8):  # names only; the shapes do not matter here
            return UNUSED_PREFIX + _unused_name(key)
    return None


def build(in_channels: int, num_classes: int, preset: str = "default", **overrides: Any) -> ConResNet:
    """Build ConResNet; see the module docstring for the presets. ``width_divisor`` (paper) divides 32..256."""
    if preset == "paper":
        divisor = int(overrides.pop("width_divisor", 1))
        if divisor < 1 or 32 % divisor:
            raise SegNetsError(f"ConResNet width_divisor {divisor} must divide the paper's base width 32.")
        args: dict[str, Any] = dict(
            base_channels=32 // divisor, shape=PAPER_SHAPE, pad_input=False, official_unused=True
        )
    elif preset == "default":
        args = dict(base_channels=32, shape=None, pad_input=True, official_unused=False)
    else:
        raise SegNetsError(f"unknown preset {preset!r} for conresnet; choose default or paper.")
    args.update(overrides)
    return ConResNet(in_channels, num_classes, **args)


def load_official(state_dict: Mapping[str, torch.Tensor], **overrides: Any) -> ConResNet:
    """Build the paper-preset ConResNet matching an official checkpoint (keys with or without ``module.``)
    and load it. Widths, inputs and classes come from the tensors; ``shape`` (default 80x160x160, or None
    for any size divisible by 8) and other options may be overridden."""
    sd = strip_module_prefix(state_dict)
    for key in ("conv_4_32.0.weight", "seg_cls.0.weight"):
        if key not in sd:
            raise SegNetsError(f"official conresnet checkpoint has no {key!r}; it is not a ConResNet state dict.")
    stem, head = sd["conv_4_32.0.weight"], sd["seg_cls.0.weight"]
    base = int(stem.shape[0])
    if 32 % base and base % 32:
        raise SegNetsError(f"official conresnet checkpoint has base width {base}, which is not derived from 32.")
    keeps_unused = any((official_to_ours(k) or "").startswith(UNUSED_PREFIX) for k in sd)
    args: dict[str, Any] = dict(base_channels=base, official_unused=keeps_unused)
    args.update(overrides)
    model = build(int(stem.shape[1]), int(head.shape[0]), "paper", **args)
    model.load_state_dict(convert_official(sd, model, "conresnet", official_to_ours))
    return model


__all__ = [
    "ConResNet",
    "ConResNetOutput",
    "PAPER_SHAPE",
    "build",
    "image_residual",
    "load_official",
    "official_to_ours",
]
