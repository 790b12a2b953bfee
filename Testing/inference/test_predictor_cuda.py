"""The Predictor on a CUDA GPU: mixed precision agrees with the CPU, the warm model stays on the GPU, and running
out of GPU memory steps down to the CPU instead of failing. Skipped on machines without CUDA (CI)."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
from inference_helpers import TINY_CARD, tiny_unet

from SegNetsLib.finetune.options import FinetuneOptions
from SegNetsLib.finetune.run import finetune
from SegNetsLib.imageio.volumes import read_volume
from SegNetsLib.inference.predictor import Predictor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def ct(data_dir):
    return read_volume(data_dir / "ts_ct_sm" / "image.nii.gz")


def test_cuda_prediction_matches_the_cpu_and_keeps_the_model_warm(ct):
    net = tiny_unet()
    cpu = Predictor(net, TINY_CARD, "cpu").predict(ct, roi="off").labelmap.array
    predictor = Predictor(net, TINY_CARD, "cuda")
    first = predictor.predict(ct, roi="off").labelmap.array
    second = predictor.predict(ct, roi="off").labelmap.array
    weight = next(predictor.net.parameters())
    assert weight.device.type == "cuda" and weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert np.array_equal(first, second)
    assert np.mean(first == cpu) > 0.999  # float16 autocast flips at most a few near-tie voxels


def test_out_of_gpu_memory_steps_down_to_the_cpu(ct, caplog):
    net = tiny_unet()
    # a 1.5 mm grid: windows and output buffer need megabytes, more than the cached segment left free
    card = replace(TINY_CARD, target_spacing=(1.5, 1.5, 1.5), patch_size=(32, 64, 64))
    expected = Predictor(net, card, "cpu").predict(ct, roi="off").labelmap.array
    predictor = Predictor(net, card, "cuda")
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    # a real cap: the allocator may hold the weights and 1 MiB more, so every window batch on the GPU fails
    torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved() + 2**20) / total)
    try:
        with caplog.at_level(logging.WARNING, logger="SegNetsLib.inference.predictor"):
            labels = predictor.predict(ct, roi="off").labelmap.array
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    messages = [record.getMessage() for record in caplog.records]
    assert any("Out of GPU memory" in message and "on cpu" in message for message in messages)
    assert np.array_equal(labels, expected)
    assert next(predictor.net.parameters()).device.type == "cpu"
    predictor.predict(ct, roi="off")  # the next call goes back to the GPU
    assert next(predictor.net.parameters()).device.type == "cuda"


def test_finetune_on_cuda_keeps_the_annotated_voxels(ct):
    annotation = np.zeros(ct.shape_kji, np.uint8)
    annotation[10, 30:60, 40:80] = 1
    annotation[20, 35:55, 45:75] = 1
    options = FinetuneOptions(
        iterations=5,
        device="cuda",
        patch_size=(16, 32, 32),
        batch_size=2,
        scratch_build_args={"base_channels": 4, "levels": 3},
    )
    result = finetune(ct, ct.with_array(annotation), "unet3d", options)
    out = result.labelmap.array
    assert out.shape == annotation.shape
    assert np.array_equal(out[[10, 20]], annotation[[10, 20]])
