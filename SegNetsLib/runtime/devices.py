"""Compute devices: which torch device a user's choice means, and which GPUs exist."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from SegNetsLib.core.constants import DEVICE_CHOICES
from SegNetsLib.core.errors import SegNetsError


@dataclass(frozen=True)
class DeviceInfo:
    """One CUDA GPU: the device string to pass back, its name and total memory in GiB."""

    device: str
    name: str
    memory_gib: float


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn "auto", "cpu", "cuda" or "cuda:N" into a torch device that exists on this machine.

    "auto" is the first CUDA GPU when there is one, else the CPU. Raises SegNetsError for a
    device that is not available (no CUDA, or no GPU with that index) or an unknown name.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
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


def list_devices() -> list[DeviceInfo]:
    """The CUDA GPUs of this machine (empty without CUDA), for device pickers."""
    if not torch.cuda.is_available():
        return []
    devices = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        devices.append(DeviceInfo(f"cuda:{index}", properties.name, round(properties.total_memory / 2**30, 1)))
    return devices


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work on a CUDA ``device`` (for timing); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
