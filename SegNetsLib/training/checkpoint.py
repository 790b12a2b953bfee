"""Training checkpoints without pickles: one safetensors file per checkpoint.

A checkpoint holds the network weights (``model.<key>``), the optimizer's tensors
(``optimizer.<param index>.<key>``) and, as JSON in the safetensors header metadata, everything
that is not a tensor: the optimizer's scalars and parameter groups, the AMP grad scaler and the
trainer's own state (epoch, schedule, best Dice). Each file is written atomically, so a kill
at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from SegNetsLib.core.atomic import atomic_file
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.runtime import distributed
from SegNetsLib.training.options import LAST

log = logging.getLogger(__name__)

_MODEL = "model."
_OPTIMIZER = "optimizer."
_METADATA_KEY = "segnets_checkpoint"


@dataclass
class Checkpoint:
    """What a checkpoint file holds: weights, optimizer state dict, scaler state, trainer state."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None
    scaler: dict[str, Any] | None
    state: dict[str, Any]


def _split_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors of ``optimizer.state_dict()`` keyed ``optimizer.<index>.<name>``, and the JSON rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, slot in state_dict["state"].items():
        scalars[str(index)] = {}
        for name, value in slot.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_OPTIMIZER}{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[str(index)][name] = value
    return tensors, {"scalars": scalars, "param_groups": state_dict["param_groups"]}


def _join_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(index): dict(values) for index, values in rest["scalars"].items()}
    for key, value in tensors.items():
        index, name = key[len(_OPTIMIZER) :].split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(
    path: str | os.PathLike,
    model_state: dict[str, torch.Tensor],
    state: dict[str, Any],
    optimizer_state: dict[str, Any] | None = None,
    scaler_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically to ``path`` (a ``.safetensors`` file) and return the path.

    ``state`` must be JSON-serializable (epoch, schedule, metrics).
    """
    tensors = {f"{_MODEL}{key}": value.detach().cpu().contiguous() for key, value in model_state.items()}
    metadata: dict[str, Any] = {"state": state, "scaler": scaler_state, "optimizer": None}
    if optimizer_state is not None:
        optimizer_tensors, metadata["optimizer"] = _split_optimizer(optimizer_state)
        tensors.update(optimizer_tensors)
    path = Path(path)
    with atomic_file(path) as temporary:
        save_file(tensors, str(temporary), metadata={_METADATA_KEY: json.dumps(metadata)})
    return path


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (no unpickling; tensors on the CPU)."""
    path = Path(path)
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            header = (handle.metadata() or {}).get(_METADATA_KEY)
    except (OSError, SafetensorError) as error:
        raise SegNetsError(f"{path}: not a readable SegNets checkpoint ({error}).") from None
    if header is None:
        raise SegNetsError(f"{path}: a safetensors file without SegNets checkpoint metadata.")
    model = {key[len(_MODEL) :]: value for key, value in tensors.items() if key.startswith(_MODEL)}
    try:
        metadata = _metadata(header)
        optimizer = None
        if metadata["optimizer"] is not None:
            optimizer_tensors = {key: value for key, value in tensors.items() if key.startswith(_OPTIMIZER)}
            optimizer = _join_optimizer(optimizer_tensors, metadata["optimizer"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise SegNetsError(f"{path}: its SegNets checkpoint metadata is damaged.") from None
    return Checkpoint(model=model, optimizer=optimizer, scaler=metadata["scaler"], state=metadata["state"])


def _metadata(header: str) -> dict[str, Any]:
    """The checkpoint's JSON metadata: state (an object), scaler and optimizer (objects or null); ValueError else."""
    metadata = json.loads(header)
    if not isinstance(metadata, dict) or not isinstance(metadata.get("state"), dict):
        raise ValueError("no state object")
    if not all(isinstance(metadata.get(key), (dict, type(None))) for key in ("scaler", "optimizer")):
        raise ValueError("scaler or optimizer is not an object")
    return metadata


def existing_checkpoint(work_dir: Path, resume: bool, dataset_name: str, is_main: bool) -> Checkpoint | None:
    """The checkpoint to resume from (None for a new run), read by rank 0 and sent to every rank,
    so that ranks on other nodes need no access to the work folder."""
    found, problem = None, None
    if is_main:
        try:
            found = _read_last(work_dir, resume, dataset_name)
        except SegNetsError as error:
            problem = str(error)
    found, problem = distributed.broadcast_object((found, problem))
    if problem:
        raise distributed.refuse(problem)
    return found


def _read_last(work_dir: Path, resume: bool, dataset_name: str) -> Checkpoint | None:
    path = work_dir / LAST
    if not path.is_file():
        if resume:
            log.info("No checkpoint in %s; starting a new training run.", work_dir)
        return None
    if not resume:
        raise SegNetsError(
            f"{work_dir}: holds a checkpoint of an earlier run; pass --resume to continue it, or choose another --work-dir."
        )
    checkpoint = load_checkpoint(path)
    if checkpoint.state.get("dataset") != dataset_name:
        raise SegNetsError(f"{path}: was trained on dataset {checkpoint.state.get('dataset')!r}, not {dataset_name!r}.")
    return checkpoint
