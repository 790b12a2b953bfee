"""Device choice: cpu, auto (CUDA, then Apple's MPS, then the CPU), CUDA devices listed with their memory,
clear errors for unknown or absent devices, work failing on MPS run again on the CPU."""

from __future__ import annotations

import pytest
import torch

from SegNetsLib.core.errors import Cancelled, SegNetsError
from SegNetsLib.runtime.devices import list_devices, mps_available, resolve_device, with_cpu_fallback

HAS_CUDA = torch.cuda.is_available()
HAS_MPS = mps_available()


def test_cpu_and_auto_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda:0" if HAS_CUDA else "mps" if HAS_MPS else "cpu")


@pytest.mark.skipif(HAS_CUDA, reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(SegNetsError, match="'cuda:1' is not available: this machine has no usable CUDA GPU"):
        resolve_device("cuda:1")
    assert [device.device for device in list_devices()] == (["mps"] if HAS_MPS else [])


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


@pytest.mark.skipif(HAS_MPS, reason="this machine has MPS")
def test_mps_without_an_apple_gpu_is_refused_in_one_sentence():
    with pytest.raises(SegNetsError, match="'mps' is not available: this machine has no Apple MPS GPU"):
        resolve_device("mps")
    assert all(device.device != "mps" for device in list_devices())


def test_on_the_cpu_the_work_runs_once_and_its_errors_are_not_retried():
    calls, notes = [], []
    assert with_cpu_fallback(lambda device: calls.append(device) or len(calls), "cpu", notes.append) == 1
    assert calls == ["cpu"] and notes == []

    def broken(device: str):
        calls.append(device)
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        with_cpu_fallback(broken, "cpu", notes.append)
    assert calls == ["cpu", "cpu"] and notes == []


@pytest.mark.skipif(not HAS_MPS, reason="needs an Apple Silicon Mac with MPS")
def test_work_failing_on_mps_runs_on_the_cpu_with_a_note():
    def float64_sum(device: str) -> float:  # MPS has no float64: a real MPS failure
        return torch.ones(3, dtype=torch.float64, device=device).sum().item()

    notes: list[str] = []
    assert with_cpu_fallback(float64_sum, "mps", notes.append) == 3.0
    assert len(notes) == 1 and "ran on the CPU instead" in notes[0]
    assert resolve_device("mps") == torch.device("mps")
    assert any(device.device == "mps" for device in list_devices())


@pytest.mark.skipif(not HAS_MPS, reason="needs an Apple Silicon Mac with MPS")
def test_a_cancel_on_mps_is_not_retried_on_the_cpu():
    def cancelled(device: str):
        raise Cancelled("stop")

    with pytest.raises(Cancelled):
        with_cpu_fallback(cancelled, "mps", lambda note: None)
