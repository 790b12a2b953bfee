"""Device choice: cpu, auto, CUDA devices listed with their memory, clear errors for unknown or absent devices."""

from __future__ import annotations

import pytest
import torch

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.runtime.devices import list_devices, resolve_device

HAS_CUDA = torch.cuda.is_available()


def test_cpu_and_auto_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda:0" if HAS_CUDA else "cpu")


@pytest.mark.skipif(HAS_CUDA, reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(SegNetsError, match="'cuda:1' is not available: this machine has no usable CUDA GPU"):
        resolve_device("cuda:1")
    assert list_devices() == []


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_gpus_are_listed_with_memory():
    devices = list_devices()
    assert len(devices) == torch.cuda.device_count() and devices[0].memory_gib > 0
    assert resolve_device(devices[-1].device) == torch.device(devices[-1].device)
    with pytest.raises(SegNetsError, match="is not available"):
        resolve_device(f"cuda:{len(devices)}")


def test_unknown_device_name_is_refused():
    with pytest.raises(SegNetsError, match="device 'tpu' is unknown"):
        resolve_device("tpu")
