"""Tiny random models for the model store, library and import tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from SegNetsLib.card.factory import make_card
from SegNetsLib.models.store import build_network

TINY = {"base_channels": 2, "levels": 2}


def tiny_model(seed: int = 0, labels=("liver", "tumor"), **card_fields):
    """A small random 3D U-Net and its card; every parameter is random so a load that did nothing shows."""
    card = make_card("unet3d", list(labels), build_args=TINY, **card_fields)
    torch.manual_seed(seed)
    net = build_network(card)
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor) * 0.5)
    return net.eval(), card


def outputs(net, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    x = torch.randn(1, 1, 8, 12, 10)
    with torch.no_grad():
        return net.eval()(x).logits


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` (hidden ones too) with a hash of its bytes: equal snapshots, same library."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }
