"""Loading state dicts saved by the authors' code (official key names) into our networks."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from SegNetsLib.core.errors import SegNetsError

UNUSED_PREFIX = "official_unused."  # parameters an official network creates but never reads


def strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the ``module.`` prefix DataParallel/DDP checkpoints put on every key (when all keys have it)."""
    keys = list(state_dict)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def convert_official(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module, name: str, to_ours: Callable[[str], str | None]
) -> dict[str, torch.Tensor]:
    """Rename official keys with ``to_ours`` onto ``model``'s names, checking every key and shape.

    Never-used official parameters are dropped when ``model`` does not keep them. Raises SegNetsError
    naming the first unknown, mismatching or missing key.
    """
    ours = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise SegNetsError(f"official {name} checkpoint entry {key!r} is not a tensor.")
        target = to_ours(key)
        if target is None:
            raise SegNetsError(f"official {name} checkpoint key {key!r} is not a key of the official network.")
        if target.startswith(UNUSED_PREFIX) and target not in ours:
            continue
        if target not in ours:
            raise SegNetsError(f"official {name} checkpoint key {key!r} has no counterpart in this configuration.")
        if tuple(value.shape) != tuple(ours[target].shape):
            raise SegNetsError(
                f"official {name} checkpoint key {key!r} has shape {tuple(value.shape)} "
                f"but this network expects {tuple(ours[target].shape)}."
            )
        converted[target] = value.to(ours[target].dtype)
    missing = [k for k in ours if k not in converted]
    if missing:
        raise SegNetsError(f"official {name} checkpoint lacks {len(missing)} keys, the first being our {missing[0]!r}.")
    return converted
