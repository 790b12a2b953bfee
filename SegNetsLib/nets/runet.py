"""3D RU-Net, the 3D RoI-aware U-Net (Huang, Dou, Wang et al., arXiv 1806.10342; IEEE Trans. Cybern. 2021).

Global image encoder (residual blocks with InstanceNorm, in-plane dilation): F1 = inc(x) at full size
(1x3x3 kernels), F2 = down1 after max-pool (1,2,2), F3 = down2 after max-pool (2,2,2) at (D/2, H/4, W/4),
and a 1x1x1 locator head on F3 giving the coarse mask. RoI proposal (not differentiable): per foreground
class, min-max normalise the coarse probability, threshold at 0.5, label with 18-connectivity, widen each
component's box on the F3 grid (``roi_extension``), sort by area (largest first) and keep the first
``max_rois_test`` (eval) or ``max_rois_train`` (train). Each RoI crops F3, F2 and F1 at their scales and
runs the local decoder (two up stages, region and contour heads). Region probabilities are pasted back
the official way: float64, weight floor 0.001, overlaps averaged; voxels outside every RoI are background.

Presets:
- "paper": the official v2 configuration of huangyjhust/3D-RU-Net @0adaf43 (BASE_CHANNELS 48, 2 classes,
  RF112 dilations, +[1,2,2]-cell boxes with the official end clamp at shape-1, 10 RoIs at test and 2 in
  training); the input must be divisible by (2, 4, 4). 4,255,782 parameters at 1 input and 2 classes.
- "default": ``base_channels``, ``num_classes`` (several foreground classes), any input size (zero-padded
  to multiples of (2, 4, 4) and cropped back), boxes widened by [1,2,2] cells without the off-by-one.
``roi_extension``: "official", "padding" (``roi_padding`` cells), "scale" / "scale1.5" / "scale2"
(``roi_scale``), or "fixed" (``roi_size`` voxels, e.g. 24x96x96, centred on the component).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from SegNetsLib.core.box import OFFICIAL_RUNET_PADDING, Box, extend_box, find_components
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.nets.blocks.padding import crop_to, pad_to_multiple, padded_size
from SegNetsLib.nets.blocks.runet import ResBlock, UpStage
from SegNetsLib.nets.official_keys import convert_official, strip_module_prefix
from SegNetsLib.nets.outputs import RUNetOutput

GRID = (2, 4, 4)  # F3 cell size in input voxels (z, y, x)
# the official RoI margin of [1, 2, 2] F3 cells, in input voxels (official code's off-by-one left out)
ROI_PADDING_VOXELS = tuple(p * g for p, g in zip(OFFICIAL_RUNET_PADDING, GRID))
STAGE_DILATIONS = {"RF64": (1, 1, 1), "RF88": (1, 1, 2), "RF112": (1, 2, 2)}
PASTE_WEIGHT_FLOOR = 0.001  # official Predict: weight volume starts at 0.001, +1 per RoI
LOG_FLOOR = 1e-30  # log of a zero pasted probability
ROI_EXTENSIONS = ("official", "padding", "scale", "scale1.5", "scale2", "fixed")


def _dilations(value: str | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(value, str):
        if value not in STAGE_DILATIONS:
            raise SegNetsError(f"unknown RU-Net dilation set {value!r}; choose one of {', '.join(STAGE_DILATIONS)}.")
        return STAGE_DILATIONS[value]
    dil = tuple(int(v) for v in value)
    if len(dil) != 3 or any(d < 1 for d in dil):
        raise SegNetsError(f"RU-Net dilations {value!r} must be three positive integers.")
    return dil  # type: ignore[return-value]


class RUNet(nn.Module):
    """3D RU-Net; ``forward(x)`` -> :class:`RUNetOutput` (see the module docstring)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        base_channels: int = 48,
        dilations: str | Sequence[int] = "RF112",
        roi_extension: str = "padding",
        roi_padding: Sequence[int] = (1, 2, 2),
        roi_scale: float = 1.5,
        roi_size: Sequence[int] = (24, 96, 96),
        max_rois_test: int = 10,
        max_rois_train: int = 2,
        pad_input: bool = True,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 2 or base_channels < 1:
            raise SegNetsError(
                f"RU-Net needs in_channels >= 1, num_classes >= 2 (background included) and base_channels >= 1, "
                f"got {in_channels}, {num_classes}, {base_channels}."
            )
        if roi_extension not in ROI_EXTENSIONS:
            raise SegNetsError(
                f"unknown RU-Net roi_extension {roi_extension!r}; choose one of {', '.join(ROI_EXTENSIONS)}."
            )
        if max_rois_test < 1 or max_rois_train < 1:
            raise SegNetsError("RU-Net max_rois_test and max_rois_train must be at least 1.")
        b, (d0, d1, d2) = base_channels, _dilations(dilations)
        self.in_channels, self.num_classes, self.base_channels = in_channels, num_classes, base_channels
        self.dilations = (d0, d1, d2)
        self.roi_extension, self.roi_padding = roi_extension, tuple(int(p) for p in roi_padding)
        self.roi_scale = {"scale1.5": 1.5, "scale2": 2.0}.get(roi_extension, float(roi_scale))
        self.roi_size = tuple(int(s) for s in roi_size)
        self.max_rois_test, self.max_rois_train, self.pad_input = max_rois_test, max_rois_train, pad_input
        self.inc = ResBlock(in_channels, b, kernel_z=1, dilation=d0)
        self.down1 = ResBlock(b, 2 * b, kernel_z=3, dilation=d1)
        self.down2 = ResBlock(2 * b, 4 * b, kernel_z=3, dilation=d2)
        self.locator_head = nn.Conv3d(4 * b, num_classes, 1)
        self.up1 = UpStage(4 * b, 2 * b, scale=(2, 2, 2), kernel_z=3, dilation=d1)
        self.up2 = UpStage(2 * b, b, scale=(1, 2, 2), kernel_z=1, dilation=d0)
        self.region_head = nn.Conv3d(b, num_classes, 1)
        self.contour_head = nn.Conv3d(b, num_classes, 1)

    def input_size(self, size: Sequence[int]) -> tuple[int, int, int]:
        """The input (D, H, W) that forward takes for a region of at least ``size``: ``size`` itself (padded
        inside) or, without padding (paper preset), ``size`` rounded up to a multiple of :data:`GRID`."""
        if self.pad_input:
            return tuple(int(s) for s in size)  # type: ignore[return-value]
        return padded_size(size, GRID)  # type: ignore[return-value]

    # -- encoder and RoI proposal ---------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features F1 (N, B, D, H, W), F2 (N, 2B, D, H/2, W/2), F3 (N, 4B, D/2, H/4, W/4)."""
        f1 = self.inc(x)
        f2 = self.down1(F.max_pool3d(f1, (1, 2, 2)))
        f3 = self.down2(F.max_pool3d(f2, (2, 2, 2)))
        return f1, f2, f3

    def locate(self, x: torch.Tensor) -> torch.Tensor:
        """The locator head's coarse logits of ``x`` (N, C, D, H, W), repeated back to the input size (N, C, D, H, W):
        the paper's global pass that RoI localization at inference reads."""
        padded, _ = pad_to_multiple(x, GRID)
        coarse = self.locator_head(self.encode(padded)[2])
        return crop_to(F.interpolate(coarse, scale_factor=GRID, mode="nearest"), x.shape[2:])

    def global_stage(self) -> nn.Module:
        """The global image encoder and locator head as one module sharing this network's parameters."""
        return GlobalStage(self)

    def _extend(self, box: Box, grid_shape: tuple[int, int, int]) -> Box:
        rule = self.roi_extension
        if rule == "official" or rule == "padding":
            out = extend_box(box, grid_shape, rule, padding=self.roi_padding)
        elif rule == "fixed":
            cells = tuple(math.ceil(s / g) for s, g in zip(self.roi_size, GRID))
            out = extend_box(box, grid_shape, "fixed", size=cells)
        else:
            out = extend_box(box, grid_shape, "scale", factor=self.roi_scale)
        return out if all(a < b for a, b in zip(out.start, out.stop)) else box  # official clamp can empty a 1-cell axis

    def coarse_masks(self, coarse_logits: torch.Tensor) -> np.ndarray:
        """Binary coarse masks (C-1, D/2, H/4, W/4), one per foreground class: the class probability min-max
        normalised per sample, >= 0.5 (official, batch element 0; for N > 1 samples are combined by OR).
        A constant map gives an empty mask (the official 0/0)."""
        prob = torch.softmax(coarse_logits.detach(), dim=1)[:, 1:].cpu().numpy()
        lo = prob.min(axis=(2, 3, 4), keepdims=True)
        hi = prob.max(axis=(2, 3, 4), keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return ((prob - lo) / (hi - lo) >= 0.5).any(axis=0)

    def propose_rois(self, coarse_logits: torch.Tensor) -> list[tuple[Box, int]]:
        """(box on the F3 grid, component area in cells) per RoI: class by class, components of 18-connectivity
        sorted by area like the official code (np.argsort reversed), the first ``max_rois_test`` (eval) or
        ``max_rois_train`` (train) kept, each widened by ``roi_extension``."""
        masks = self.coarse_masks(coarse_logits)
        grid_shape = tuple(int(s) for s in masks.shape[1:])
        limit = self.max_rois_train if self.training else self.max_rois_test
        rois: list[tuple[Box, int]] = []
        for mask in masks:
            components = find_components(mask, connectivity=2, official_order=True)
            if not components:
                rois.append((Box(0, 0, 0, 1, 1, 1), 0))  # official dummy box when nothing is found
                continue
            rois += [(self._extend(comp.box, grid_shape), comp.area) for comp in components[:limit]]
        return rois

    # -- decoder and pasting --------------------------------------------------------------------------
    def decode_roi(self, features: tuple[torch.Tensor, ...], box: Box) -> tuple[torch.Tensor, torch.Tensor]:
        """Region and contour logits (N, C, 2dz, 4dy, 4dx) of one RoI given on the F3 grid."""
        f1, f2, f3 = features
        g = box.slices
        y = self.up1(f3[(..., *g)], f2[(..., *box.scaled((2, 2, 2)).slices)])
        y = self.up2(y, f1[(..., *box.scaled(GRID).slices)])
        return self.region_head(y), self.contour_head(y)

    @staticmethod
    def paste(
        roi_probs: Sequence[torch.Tensor], boxes: Sequence[Box], shape: Sequence[int], like: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Official pasting in float64: sum of RoI probabilities / (0.001 + number of RoIs) per voxel for
        every foreground channel; channel 0 = 1 - sum of foreground. Returns (N, C, *shape) float64, N and C
        taken from the RoIs or, when there is none, from ``like`` (N, C, ...) (then all background)."""
        reference = roi_probs[0] if roi_probs else like
        if reference is None:
            raise SegNetsError("RU-Net pasting needs at least one RoI or a reference tensor.")
        n, c = reference.shape[:2]
        total = reference.new_zeros((n, c - 1, *shape), dtype=torch.float64)
        weight = torch.full((1, 1, *shape), PASTE_WEIGHT_FLOOR, dtype=torch.float64, device=total.device)
        for prob, box in zip(roi_probs, boxes):
            index = (Ellipsis, *box.slices)
            total[index] = total[index] + prob[:, 1:].double()
            weight[index] = weight[index] + 1.0
        foreground = total / weight
        return torch.cat([1.0 - foreground.sum(dim=1, keepdim=True), foreground], dim=1)

    def forward(self, x: torch.Tensor) -> RUNetOutput:
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise SegNetsError(f"RU-Net input has shape {tuple(x.shape)}; expected (N, {self.in_channels}, D, H, W).")
        size = tuple(int(s) for s in x.shape[2:])
        if self.pad_input:
            x, _ = pad_to_multiple(x, GRID)
        elif any(s % g for s, g in zip(size, GRID)):
            raise SegNetsError(f"RU-Net input size {size} must be divisible by {GRID} along (D, H, W).")
        features = self.encode(x)
        coarse = self.locator_head(features[2])
        rois, region, contour = [], [], []
        for grid_box, _area in self.propose_rois(coarse):
            voxel_box = grid_box.scaled(GRID)
            kept = Box(*voxel_box.start, *(min(b, s) for b, s in zip(voxel_box.stop, size)))
            if kept.size == 0:
                continue  # a RoI entirely inside the padding
            r, c = self.decode_roi(features, grid_box)
            rois.append(kept)
            region.append(crop_to(r, kept.shape))
            contour.append(crop_to(c, kept.shape))
        probs = self.paste([torch.softmax(r, dim=1) for r in region], rois, size, like=coarse)
        logits = torch.log(probs.clamp_min(LOG_FLOOR)).to(x.dtype)
        return RUNetOutput(
            logits=logits,
            coarse_logits=coarse,
            rois=rois,
            roi_logits=region,
            roi_contour_logits=contour,
            probabilities=probs.to(x.dtype),
        )


# ---- official checkpoint names -------------------------------------------------------------------------


class GlobalStage(nn.Module):
    """3D RU-Net's first training stage: the global image encoder and locator head (shared parameters).

    ``forward(x)`` returns the coarse logits (N, C, D/2, H/4, W/4) of the input padded to the F3 grid, so
    the global stage computes (and, under DDP, synchronises) only what it trains.
    """

    def __init__(self, runet: RUNet) -> None:
        super().__init__()
        self.inc, self.down1, self.down2, self.locator_head = runet.inc, runet.down1, runet.down2, runet.locator_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = pad_to_multiple(x, GRID)
        f1 = self.inc(x)
        f2 = self.down1(F.max_pool3d(f1, (1, 2, 2)))
        f3 = self.down2(F.max_pool3d(f2, (2, 2, 2)))
        return self.locator_head(f3)


_OFFICIAL = [
    (re.compile(r"^GlobalImageEncoder\.inc\.conv\.Conv([123])\.(weight|bias)$"), r"inc.conv\1.\2"),
    (re.compile(r"^GlobalImageEncoder\.down([12])\.mpconv\.1\.Conv([123])\.(weight|bias)$"), r"down\1.conv\2.\3"),
    (re.compile(r"^GlobalImageEncoder\.LocTop\.conv\.(weight|bias)$"), r"locator_head.\1"),
    (re.compile(r"^LocalRegionDecoder\.up([12])\.conv\.(weight|bias)$"), r"up\1.reduce.\2"),
    (re.compile(r"^LocalRegionDecoder\.up([12])\.fuse\.Conv([123])\.(weight|bias)$"), r"up\1.block.conv\2.\3"),
    (re.compile(r"^LocalRegionDecoder\.SegTop1\.conv\.(weight|bias)$"), r"region_head.\1"),
    (re.compile(r"^LocalRegionDecoder\.SegTop2\.conv\.(weight|bias)$"), r"contour_head.\1"),
]


def official_to_ours(key: str) -> str | None:
    """Our parameter name for an official RU-Net key (model.py v2), None if unknown."""
    for pattern, replacement in _OFFICIAL:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return None


def build(in_channels: int, num_classes: int, preset: str = "default", **overrides: Any) -> RUNet:
    """Build 3D RU-Net; see the module docstring for the presets and options."""
    if preset == "paper":
        args: dict[str, Any] = dict(base_channels=48, dilations="RF112", roi_extension="official", pad_input=False)
    elif preset == "default":
        args = dict(base_channels=48, dilations="RF112", roi_extension="padding", pad_input=True)
    else:
        raise SegNetsError(f"unknown preset {preset!r} for runet; choose default or paper.")
    args.update(overrides)
    return RUNet(in_channels, num_classes, **args)


def load_official(state_dict: Mapping[str, torch.Tensor], **overrides: Any) -> RUNet:
    """Build the paper-preset RU-Net matching an official checkpoint (RF64/RF88/RF112.pkl state dicts)
    and load it. Width, inputs and classes come from the tensors; pass ``dilations="RF88"`` etc. for the
    other official models (the dilations are not stored in the file; default RF112)."""
    sd = strip_module_prefix(state_dict)
    for key in ("GlobalImageEncoder.inc.conv.Conv1.weight", "GlobalImageEncoder.LocTop.conv.weight"):
        if key not in sd:
            raise SegNetsError(f"official runet checkpoint has no {key!r}; it is not a 3D RU-Net state dict.")
    first, head = sd["GlobalImageEncoder.inc.conv.Conv1.weight"], sd["GlobalImageEncoder.LocTop.conv.weight"]
    args: dict[str, Any] = dict(base_channels=int(first.shape[0]))
    args.update(overrides)
    model = build(int(first.shape[1]), int(head.shape[0]), "paper", **args)
    model.load_state_dict(convert_official(sd, model, "runet", official_to_ours))
    return model


__all__ = ["GRID", "RUNet", "RUNetOutput", "STAGE_DILATIONS", "build", "load_official", "official_to_ours"]
