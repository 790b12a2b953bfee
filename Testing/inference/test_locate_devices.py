"""Device choice, card post-processing and RoI boxes from a coarse mask, on small arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from SegNetsLib.card.card import Postprocessing, RoiSettings
from SegNetsLib.core.box import Box
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.inference.locate import boxes_from_masks, foreground_masks
from SegNetsLib.inference.postprocess import postprocess
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


def test_keep_largest_component_and_fill_holes_per_label():
    labels = np.zeros((12, 12, 12), np.uint8)
    labels[1:8, 1:8, 1:8] = 3
    labels[3:5, 3:5, 3:5] = 0  # an enclosed cavity
    labels[10, 10, 10] = 3  # a speck
    labels[9:11, 0:2, 0:2] = 4  # another label, untouched
    labels[0, 11, 11] = 4
    out = postprocess(labels.copy(), [3], Postprocessing(keep_largest_component=True, fill_holes=True))
    assert out[10, 10, 10] == 0 and np.all(out[1:8, 1:8, 1:8] == 3)
    assert np.array_equal(out == 4, labels == 4)
    assert np.array_equal(postprocess(labels.copy(), [3, 4], Postprocessing()), labels)


def test_boxes_from_masks_scale_extend_and_merge():
    mask = np.zeros((10, 20, 20), bool)
    mask[2:4, 3:6, 3:6] = True  # a component
    mask[2:4, 7:9, 7:9] = True  # a second one whose extended box overlaps the first
    mask[8, 18, 18] = True  # a one-voxel speck, kept: 1 % of the largest (18 voxels) rounds up to one voxel
    settings = RoiSettings(extension="padding", padding_mm=4.0)
    boxes = boxes_from_masks([mask], (2.0, 2.0, 2.0), (20, 40, 40), (2.0, 1.0, 1.0), settings)
    # components -> fine grid (x2) -> +2 voxels along z (4 mm / 2 mm) and +4 in y, x -> merged
    assert Box(2, 2, 2, 10, 22, 22) in boxes
    assert len(boxes) == 2
    scaled = boxes_from_masks(
        [mask[:, :10, :10]], (1.0, 1.0, 1.0), (10, 10, 10), (1.0, 1.0, 1.0), RoiSettings(extension="scale2")
    )
    # (2:4, 3:6, 3:6) -> (1:5, 1:8, 1:8) and (2:4, 7:9, 7:9) -> (1:5, 6:10, 6:10), overlapping -> merged
    assert scaled == [Box(1, 1, 1, 5, 10, 10)]


def test_foreground_masks_softmax_and_multi_label():
    logits = torch.zeros(3, 2, 2, 2)
    logits[1, 0] = 5.0
    logits[2, 1, 0] = 6.0
    softmax = foreground_masks(logits, multi_label=False)
    assert len(softmax) == 2 and softmax[0][0].all() and softmax[1][1, 0].all() and not softmax[0][1].any()
    multi = foreground_masks(torch.tensor([[[[1.0, -1.0]]]]).expand(1, 1, 2, 2), multi_label=True)
    assert multi[0][..., 0].all() and not multi[0][..., 1].any()
