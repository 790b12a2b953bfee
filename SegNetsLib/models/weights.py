"""Network weights as untrusted files: safetensors, or a ``.pt``/``.pth`` state dict read without unpickling code.

Every tensor name and shape is checked against the network before anything is loaded.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import struct
import warnings
from collections.abc import Mapping
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

from SegNetsLib.core.atomic import new_mode
from SegNetsLib.core.errors import SegNetsError

WEIGHTS_FILE = "weights.safetensors"
TORCH_SUFFIXES = (".pt", ".pth")
# keys under which training scripts commonly nest the state dict in a checkpoint dict
_NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "network")

Shapes = Mapping[str, tuple[int, ...]]
MAX_HEADER_BYTES = 100 * 1000 * 1000  # the safetensors format's own bound
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


def write_weights(net: nn.Module, path: Path) -> None:
    """Write ``net.state_dict()`` (parameters and buffers, on the CPU) to a safetensors file."""
    tensors = {name: tensor.detach().to("cpu").clone().contiguous() for name, tensor in net.state_dict().items()}
    try:
        safetensors.torch.save_file(tensors, str(path), metadata={"format": "pt"})
        os.chmod(path, new_mode())  # safetensors writes it private
    except safetensors.SafetensorError as error:  # the file system's error (disk full, ...) as an OSError
        code = re.search(r"os error (\d+)", str(error))
        if code:
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None
        raise OSError(f"{path.name}: {error}") from None


def _damaged(path: Path, reason: str) -> SegNetsError:
    return SegNetsError(f"{path.name}: not a complete safetensors file, it may be truncated or damaged ({reason}).")


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a safetensors header, read as bytes (no mapping, no tensor data).

    The header is checked as the format requires: a JSON object of at most 100 MB whose tensors have a
    known dtype, non-negative integer shapes and data ranges that match their size and lie in the file.
    """
    try:
        with open(path, "rb") as handle:
            file_size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(8)
            length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
            if not 2 <= length <= min(MAX_HEADER_BYTES, file_size - 8):
                raise _damaged(path, "the header length is wrong")
            header = json.loads(handle.read(length))
    except OSError as error:
        raise _damaged(path, error.strerror or type(error).__name__) from None
    except SegNetsError:  # a ValueError too: the wrong header length, said as such
        raise
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _damaged(path, "the header is not JSON") from None
    if not isinstance(header, dict):
        raise _damaged(path, "the header is not a JSON object")
    shapes, data_size = {}, file_size - 8 - length
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        item = (
            _DTYPE_BYTES.get(entry.get("dtype"))
            if isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
            else None
        )
        if (
            item is None
            or not isinstance(shape, list)
            or not all(type(s) is int and 0 <= s < 2**48 for s in shape)
            or not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets))
        ):
            raise _damaged(path, f"tensor {str(name)[:80]!r} has no valid dtype, shape and data offsets")
        count = math.prod(shape)
        if not 0 <= offsets[0] <= offsets[1] <= data_size or offsets[1] - offsets[0] != count * item:
            raise _damaged(
                path, f"tensor {str(name)[:80]!r} of shape {shown_shape(shape)} lies outside the file's data"
            )
        shapes[name] = tuple(shape)
    return shapes


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on the CPU."""
    try:
        return safetensors.torch.load_file(str(path), device="cpu")
    except (safetensors.SafetensorError, OSError, ValueError) as error:
        raise SegNetsError(
            f"{path.name}: not a complete safetensors file, it may be truncated or damaged ({error})."
        ) from None


def read_torch_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pt``/``.pth`` file via ``torch.load(weights_only=True)``: tensors and plain
    containers only; a file that would run code or build other objects is refused."""
    try:
        with warnings.catch_warnings():  # torch's note on unusual pickle protocols is noise here
            warnings.simplefilter("ignore", UserWarning)
            checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
    ) as error:  # what a damaged pickle stream raises on the way
        raise SegNetsError(
            f"{path.name}: refused, it is not a plain PyTorch state dict of tensors ({_unpickling_reason(error)}; "
            "SegNets never runs code from model files)."
        ) from None
    return _state_dict_from_checkpoint(checkpoint, path.name)


def _unpickling_reason(error: Exception) -> str:
    """The useful part of torch's weights-only refusal, without its advice to load unsafely."""
    text = str(error)
    code = re.search(r"(?:Unsupported global: |unsupported )GLOBAL (\S+)", text)
    if code:
        return f"it asks to import and call {code.group(1)}"
    detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    if detail:
        return f"weights-only loading failed: {detail.group(1)[:160]}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Weights only load failed", "Check the documentation"))]
    return f"weights-only loading failed: {(useful or lines or [type(error).__name__])[0][:160]}"


def _state_dict_from_checkpoint(checkpoint: object, source: str) -> dict[str, torch.Tensor]:
    if isinstance(checkpoint, dict):
        for key in _NESTED_STATE_KEYS:
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise SegNetsError(f"{source}: holds no state dict (a mapping from parameter names to tensors).")
    for name, value in checkpoint.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise SegNetsError(
                f"{source}: entry {name!r} is a {type(value).__name__}, not a tensor; expected a state dict."
            )
    return dict(checkpoint)


def strip_prefix(tensors: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Drop a prefix every key carries (``module.`` from DataParallel/DDP checkpoints)."""
    if tensors and all(name.startswith(prefix) for name in tensors):
        return {name[len(prefix) :]: tensor for name, tensor in tensors.items()}
    return tensors


def shapes_of(tensors: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in tensors.items()}


def shown_name(name: object, limit: int = 80) -> str:
    """A tensor name from an untrusted file as an error quotes it: control characters escaped (the message stays
    one line, no terminal escapes), cut at ``limit`` characters."""
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(name))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown_shape(shape: tuple[int, ...], limit: int = 8) -> str:
    """A tensor shape as an error quotes it; one of more than ``limit`` dimensions is cut, with its length."""
    shape = tuple(shape)
    if len(shape) <= limit:
        return str(shape)
    return f"({', '.join(map(str, shape[:limit]))}, … {len(shape)} dimensions)"


def first_mismatch(found: Shapes, expected: Shapes) -> str | None:
    """The first difference between two name -> shape maps, in words, or None when they agree."""
    for name, shape in expected.items():
        if name not in found:
            return f"has no tensor '{name}' (shape {tuple(shape)})"
        if tuple(found[name]) != tuple(shape):
            return f"has tensor '{name}' of shape {shown_shape(found[name])} where {tuple(shape)} is expected"
    for name, shape in found.items():
        if name not in expected:
            return f"has tensor '{shown_name(name)}' (shape {shown_shape(shape)}) that the network does not have"
    return None


def check_shapes(found: Shapes, net: nn.Module, source: str, network: str) -> None:
    """Raise SegNetsError naming the first tensor whose name or shape differs from ``net``'s."""
    problem = first_mismatch(found, shapes_of(net.state_dict()))
    if problem:
        raise SegNetsError(f"{source} {problem} for {network}.")


def check_kinds(tensors: Mapping[str, torch.Tensor], net: nn.Module, source: str) -> None:
    """Raise SegNetsError naming the first tensor that is not floating point where ``net``'s is (or the reverse),
    or is boolean: such values are not this network's weights, whatever their shape."""
    expected = net.state_dict()
    for name, found in tensors.items():
        wanted = expected[name]
        if found.dtype == torch.bool or found.is_floating_point() != wanted.is_floating_point():
            raise SegNetsError(
                f"{source}: tensor '{name}' holds {str(found.dtype).removeprefix('torch.')} values where the network "
                f"holds {str(wanted.dtype).removeprefix('torch.')}; they are not this network's weights."
            )


def check_finite(net: nn.Module, source: str) -> None:
    """Raise SegNetsError naming the first parameter or buffer of ``net`` that holds NaN or infinity."""
    for name, tensor in net.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise SegNetsError(f"{source}: tensor '{name}' holds NaN or infinite values; the weights are damaged.")


def load_checked(net: nn.Module, tensors: Mapping[str, torch.Tensor], source: str, network: str) -> nn.Module:
    """Check names, shapes and kinds of values, copy ``tensors`` into ``net`` (strict), then check that every
    value is finite."""
    check_shapes(shapes_of(tensors), net, source, network)
    check_kinds(tensors, net, source)
    net.load_state_dict(tensors, strict=True)
    check_finite(net, source)
    return net
