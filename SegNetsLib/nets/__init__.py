"""The four networks: 3D U-Net, V-Net, ConResNet and 3D RU-Net.

``build(name, in_channels, num_classes, preset="default", **overrides)`` makes a network;
``load_official(name, state_dict)`` builds one in the official configuration and loads the
authors' checkpoint (official key names).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from SegNetsLib.core.constants import ARCHITECTURES, PRESETS
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.nets.outputs import SegmentationOutput

# architecture name -> module in this package that defines build(...) (and load_official for some);
# ARCHITECTURES and PRESETS live in SegNetsLib.core.constants (no torch) for the command line's parser
_MODULES = {name: name for name in ARCHITECTURES}


def _module(name: str):
    if name not in _MODULES:
        raise SegNetsError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}.")
    return importlib.import_module(f"{__name__}.{_MODULES[name]}")


@contextlib.contextmanager
def _constructor_options(name: str) -> Iterator[None]:
    """Report an unknown or mistyped constructor option of network ``name`` as a SegNetsError."""
    try:
        yield
    except TypeError as error:  # its text quotes the option as given: a name with a line break spans lines
        raise SegNetsError(f"invalid {name} option: {' '.join(str(error).split())}.") from None


def build(name: str, in_channels: int, num_classes: int, preset: str = "default", **overrides: Any) -> nn.Module:
    """Build network ``name`` ("unet3d", "vnet", "conresnet", "runet").

    preset "paper" is the paper/official configuration; "default" a practical one (same padding,
    any input size). ``overrides`` change individual constructor arguments (e.g. ``base_channels``).
    """
    if preset not in PRESETS:
        raise SegNetsError(f"unknown preset {preset!r} for {name}; choose one of {', '.join(PRESETS)}.")
    odd = [key for key in overrides if not key.isidentifier()]
    if odd:
        raise SegNetsError(f"invalid {name} option {odd[0]!r}: not an argument name.")
    module = _module(name)
    with _constructor_options(name):
        return module.build(in_channels=in_channels, num_classes=num_classes, preset=preset, **overrides)


def load_official(name: str, state_dict: Mapping[str, torch.Tensor], **overrides: Any) -> nn.Module:
    """Build ``name`` in its official configuration and load a state dict saved by the official code."""
    module = _module(name)
    if not hasattr(module, "load_official"):
        raise SegNetsError(f"{name} has no official PyTorch checkpoint format to import.")
    with _constructor_options(name):
        return module.load_official(state_dict, **overrides)


__all__ = ["ARCHITECTURES", "PRESETS", "SegmentationOutput", "build", "load_official"]
