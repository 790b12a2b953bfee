"""How large a network SegNets agrees to build: a fixed bound, and the memory this process can still get.

A card's ``build_args`` are untrusted (``base_channels: 100000`` asks for terabytes), so a network is first
built on PyTorch's ``meta`` device (shapes only, no memory), checked against the weights file's header and
against these limits, and only then built for real.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.memory import available_memory_bytes

# 16 times the largest paper-preset network (V-Net, 62 M parameters, 248 MB in float32)
MAX_NETWORK_BYTES = 4 * 1024**3
# loading holds the weights file's tensors and the network's own copy at once
LOAD_FACTOR = 2


def network_bytes(net: nn.Module) -> int:
    """Bytes of every parameter and buffer of ``net`` (works on the meta device: shapes and dtypes only)."""
    return sum(tensor.numel() * tensor.element_size() for tensor in net.state_dict().values())


def _gib(count: int) -> str:
    return f"{count / 1024**3:.2f} GiB" if count >= 1024**3 else f"{count / 1024**2:.1f} MiB"


def check_network_size(net: nn.Module, source: str, network: str, available: int | None = -1) -> int:
    """Raise SegNetsError when ``net`` (usually on the meta device) is larger than MAX_NETWORK_BYTES or than
    the memory loading it would need; returns its size in bytes. ``available`` defaults to
    :func:`available_memory_bytes` (None skips that check)."""
    size = network_bytes(net)
    if size > MAX_NETWORK_BYTES:
        raise SegNetsError(
            f"{source}: {network} would take {_gib(size)}, more than the {_gib(MAX_NETWORK_BYTES)} SegNets "
            "loads; its build_args are not those of a usable network."
        )
    free = available_memory_bytes() if available == -1 else available
    if free is not None and size * LOAD_FACTOR > free:
        raise SegNetsError(
            f"{source}: loading {network} needs about {_gib(size * LOAD_FACTOR)} of memory but only {_gib(free)} "
            "is available; close other programs or use a machine with more memory."
        )
    return size


def check_file_size(path: Path, source: str | None = None) -> None:
    """Refuse a weights file larger than any network SegNets loads, before reading it."""
    size = os.stat(path).st_size
    if size > MAX_NETWORK_BYTES + 64 * 1024**2:  # the bound plus room for headers and pickling
        raise SegNetsError(
            f"{source or path.name}: {_gib(size)} of weights, more than the {_gib(MAX_NETWORK_BYTES)} of any "
            "network SegNets loads; it is refused."
        )
