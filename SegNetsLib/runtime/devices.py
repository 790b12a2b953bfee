"""Compute devices: which torch device a user's choice means, which GPUs exist, and the CPU fallback.

``auto`` picks the first CUDA GPU, then Apple's MPS (Apple Silicon Macs), then the CPU. Work that fails on
MPS (an operation PyTorch does not implement there, too little memory) runs again on the CPU, with a note.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from SegNetsLib.core.constants import DEVICE_CHOICES
from SegNetsLib.core.errors import Cancelled, SegNetsError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class DeviceInfo:
    """One GPU: the device string to pass back, its name and total memory in GiB (0 when unknown, MPS)."""

    device: str
    name: str
    memory_gib: float


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn "auto", "cpu", "cuda" or "cuda:N" into a torch device that exists on this machine.

    "auto" is the first CUDA GPU when there is one, else Apple's MPS when it is available, else the CPU.
    Raises SegNetsError for a device that is not available (no CUDA, no GPU with that index, no MPS) or
    an unknown name.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = str(spec).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda:0")
        return torch.device("mps" if mps_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not mps_available():
            raise SegNetsError(f"device {spec!r} is not available: this machine has no Apple MPS GPU.")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match is None:
        raise SegNetsError(f"device {spec!r} is unknown; choose one of {', '.join(DEVICE_CHOICES)}.")
    if not torch.cuda.is_available():
        raise SegNetsError(f"device {spec!r} is not available: this machine has no usable CUDA GPU.")
    index = int(match.group(1) or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise SegNetsError(f"device {spec!r} is not available: this machine has {count} CUDA GPU(s).")
    return torch.device(f"cuda:{index}")


def mps_available() -> bool:
    """True on an Apple Silicon Mac whose PyTorch build can use the GPU through Metal (MPS)."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def list_devices() -> list[DeviceInfo]:
    """The GPUs of this machine for device pickers: each CUDA GPU, or Apple's MPS; empty on a CPU-only one."""
    devices = []
    if mps_available():
        devices.append(DeviceInfo("mps", "Apple GPU (MPS)", 0.0))
    if not torch.cuda.is_available():
        return devices
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        devices.append(DeviceInfo(f"cuda:{index}", properties.name, round(properties.total_memory / 2**30, 1)))
    return devices


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work on a CUDA ``device`` (for timing); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def with_cpu_fallback(run: Callable[[str], T], spec: str, note: Callable[[str], None]) -> T:
    """``run(device)`` on the device ``spec`` means; when that is Apple's MPS and it fails, ``run("cpu")``.

    ``note`` receives one sentence saying that the CPU was used instead. A cancel or a bad input
    (SegNetsError) is never retried; failures on CUDA or the CPU are raised as they are.
    """
    device = resolve_device(spec)
    if device.type != "mps":
        return run(spec)
    try:
        return run("mps")
    except (Cancelled, SegNetsError):
        raise
    except (RuntimeError, NotImplementedError, TypeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        message = f"Apple's MPS GPU failed ({first[:160]}); the work ran on the CPU instead."
        log.warning(message)
        note(message)
        return run("cpu")
