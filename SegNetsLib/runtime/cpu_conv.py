"""oneDNN for every float32 3D convolution on the CPU during inference.

PyTorch sends a CPU ``conv3d`` to oneDNN only when the batch is above 1 or N*C*D*H exceeds 20480; the
thin, full-resolution layers of a small network (1 or 4 input channels on a 48 x 96 x 96 window) fall
back to ``slow_conv3d``, which unfolds the whole window into a column buffer (27 x C x D x H x W floats:
191 MiB for 4 channels) and runs about half as fast. Measured on the bench's 3-level, base-4 3D U-Net
(one thread): 0.93 -> 0.47 s and 209 -> 173 MiB per window, outputs equal to 6e-6. Wider networks
already take oneDNN and are unaffected.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from SegNetsLib.core.box import as_triple

_CONV3D_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV3D_DEFAULTS = (None, None, None, 1, 0, 1, 1)


class OneDnnConv3d(TorchFunctionMode):
    """Inside ``with OneDnnConv3d():``, ``F.conv3d`` on CPU float32 tensors without autograd runs oneDNN's
    convolution directly; everything else (GPU, other dtypes, unbatched input, ``padding="same"``, training) is
    unchanged."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.conv3d:
            call = dict(zip(_CONV3D_ARGS, _CONV3D_DEFAULTS)) | dict(zip(_CONV3D_ARGS, args)) | kwargs
            x, weight = call["input"], call["weight"]
            if (
                x.device.type == "cpu"
                and x.dim() == 5
                and x.dtype == weight.dtype == torch.float32
                and not isinstance(call["padding"], str)
                and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
            ):
                return torch.mkldnn_convolution(
                    x.contiguous(),
                    weight.contiguous(),
                    call["bias"],
                    as_triple(call["padding"], "padding"),
                    as_triple(call["stride"], "stride"),
                    as_triple(call["dilation"], "dilation"),
                    int(call["groups"]),
                )
        return func(*args, **kwargs)


def fast_cpu_convolutions(device: torch.device) -> contextlib.AbstractContextManager:
    """:class:`OneDnnConv3d` for windows run on the CPU of a PyTorch build with oneDNN; else nothing."""
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        return OneDnnConv3d()
    return contextlib.nullcontext()
