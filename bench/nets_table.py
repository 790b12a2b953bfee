"""Parameters and GFLOPs of every network and preset at a 64x128x128 input; prints a Markdown table.

FLOPs are counted by ``torch.utils.flop_counter`` (convolutions and transposed convolutions; FLOPs =
2 x multiply-accumulates; norms, activations and interpolation are not counted) on the meta device, so
nothing is computed and the script runs in seconds on a CPU. Paper presets use the paper's input and
class counts (the input is then 1 x C_in x 64 x 128 x 128); default presets use 1 input and 2 classes.

Run: ``python bench/nets_table.py``
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from SegNetsLib.nets import build  # noqa: E402
from SegNetsLib.nets.unet3d import caffe_parameter_count  # noqa: E402

SHAPE = (64, 128, 128)  # D, H, W


def _gflops(run: Callable[[], Any]) -> float:
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops() / 1e9


def _params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _forward_gflops(net: nn.Module, in_channels: int, shape=SHAPE) -> float:
    x = torch.empty(1, in_channels, *shape, device="meta")
    return _gflops(lambda: net(x))


def _runet_gflops(net: nn.Module) -> tuple[float, float]:
    """Encoder + locator at SHAPE, and the local decoder for one 24x96x96-voxel RoI (12x24x24 F3 cells).
    (RoI proposal runs connected components on real values, so the full forward cannot run on meta.)"""
    from SegNetsLib.core.box import Box

    x = torch.empty(1, 1, *SHAPE, device="meta")
    features: list = []
    encoder = _gflops(lambda: features.extend(net.encode(x)) or net.locator_head(features[2]))
    decoder = _gflops(lambda: net.decode_roi(tuple(features), Box(0, 0, 0, 12, 24, 24)))
    return encoder, decoder


ROWS: list[tuple[str, str, int, int, dict[str, Any], str]] = [
    ("unet3d", "paper", 3, 3, {}, "overlap-tile: mirrors 64x128x128 to 156x220x220 inside forward"),
    ("unet3d", "paper", 3, 3, {"overlap_tile": False}, "one paper tile 132x132x116 -> 44x44x28"),
    ("unet3d", "default", 1, 2, {}, "same padding, base 16, InstanceNorm"),
    ("vnet", "paper", 1, 2, {}, "official prototxt depths 1,1,2,3,3 / 3,2,1,1"),
    ("vnet", "paper", 1, 2, {"depths": "figure"}, "paper Fig. 2 depths 1,2,3,3,3 / 3,3,2,1"),
    ("vnet", "default", 1, 2, {}, "base 8"),
    ("conresnet", "paper", 4, 3, {"shape": SHAPE}, "4 inputs, shape fixed to 64x128x128 (paper patch 80x160x160)"),
    ("conresnet", "default", 1, 2, {}, "softmax, any size"),
    ("runet", "paper", 1, 2, {}, "encoder + one 24x96x96 RoI"),
    ("runet", "default", 1, 2, {}, "encoder + one 24x96x96 RoI"),
]


def main() -> None:
    print(f"### Network size and compute (input 1 x C_in x {' x '.join(map(str, SHAPE))}, FLOPs = 2 x MACs)\n")
    print("| network | preset | in -> classes | parameters | GFLOPs | notes |")
    print("|---|---|---|---:|---:|---|")
    for name, preset, c_in, classes, overrides, note in ROWS:
        try:
            with torch.device("meta"):  # no weights are allocated or initialised
                net = build(name, c_in, classes, preset=preset, **overrides).eval()
        except Exception as error:  # a network that fails to build gets a row saying why; the table goes on
            print(f"| {name} | {preset} | {c_in} -> {classes} | - | - | not available: {error} |")
            continue
        params = f"{_params(net):,}"
        if name == "unet3d" and preset == "paper":
            params += f" ({caffe_parameter_count(net):,} paper count)"
        if name == "runet":
            encoder, decoder = _runet_gflops(net)
            flops = f"{encoder + decoder:,.1f}"
            note += f" ({encoder:,.1f} + {decoder:,.1f})"
        elif overrides.get("overlap_tile") is False:
            flops = f"{_forward_gflops(net, c_in, (132, 132, 116)):,.1f}"
        else:
            flops = f"{_forward_gflops(net, c_in):,.1f}"
        print(
            f"| {name} | {preset}{' ' + str(overrides.get('depths', '')) if 'depths' in overrides else ''} "
            f"| {c_in} -> {classes} | {params} | {flops} | {note} |"
        )


if __name__ == "__main__":
    main()
