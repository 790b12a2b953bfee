"""The worker protocol: JSON lines between the parent (Slicer, a batch run) and the worker child process.

Every message is one JSON object on one line (UTF-8). The parent writes to the child's stdin:

- ``{"type": "run", "id": 7, "task": "segment", "folder": "/tmp/segnets-worker-x/job-7", "arguments": {...}}``
- ``{"type": "cancel", "id": 7}``  (stop job 7 at its next check; nothing is written)
- ``{"type": "shutdown"}``  (cancel the running job and exit; closing stdin means the same)

The child writes to its stdout (its own prints go to stderr):

- ``{"type": "ready", "protocol": 1, "pid": 1234, "python": "3.12.4"}`` once, at start
- ``{"type": "progress", "id": 7, "fraction": 0.4, "stage": "segmenting RoI 1/1", "extra": {"iteration": 12,
  "loss": 0.31, "dice": 0.82}}`` (the latest snapshot; extra values are merged over the job)
- ``{"type": "done", "id": 7, "result": {...}}``
- ``{"type": "failed", "id": 7, "error": "one sentence", "error_type": "SegNetsError", "detail": "traceback"}``
- ``{"type": "cancelled", "id": 7}``

Arguments and results are encoded by :func:`encode`: JSON values as they are, and tagged objects for
the rest; a :class:`~SegNetsLib.core.volume.Volume`'s voxels go to a ``.npy`` file in the job's private
folder (``{"$volume": {"file": "v0.npy", "spacing": ..., "origin": ..., "direction": ...}}``), a model
card travels in its card.json form, and SegNetsLib dataclasses, paths, tuples, boxes and dicts with
non-string keys are tagged (``$dataclass``, ``$path``, ``$tuple``, ``$box``, ``$dict``).
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from SegNetsLib.card.card import ModelCard
from SegNetsLib.core.box import Box
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume

PROTOCOL_VERSION = 1
CHILD_MODULE = "SegNetsLib.app.worker_child"
_DATACLASS_PREFIX = "SegNetsLib."  # only the library's own dataclasses are rebuilt from a message


def dumps(message: dict[str, Any]) -> bytes:
    """One protocol line: compact JSON and a newline (non-finite floats become null)."""
    return (json.dumps(_finite(message), separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


def loads(line: bytes | str) -> dict[str, Any]:
    """Parse one protocol line; raises SegNetsError for anything but a JSON object with a "type"."""
    try:
        message = json.loads(line)
    except ValueError:
        raise SegNetsError(f"worker message {line[:80]!r} is not JSON.") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise SegNetsError(f"worker message {line[:80]!r} is not an object with a type.")
    return message


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


class Encoder:
    """Encodes values for a message; Volume arrays are written as ``v<N>.npy`` into ``folder``."""

    def __init__(self, folder: Path, prefix: str = "v") -> None:
        self.folder = Path(folder)
        self._names = (f"{prefix}{n}.npy" for n in itertools.count())

    def __call__(self, value: Any) -> Any:
        return self.encode(value)

    def encode(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            return float(value)
        if isinstance(value, Volume):
            return {"$volume": self._volume(value)}
        if isinstance(value, ModelCard):
            return {"$card": _finite(value.to_dict())}
        if isinstance(value, Path):
            return {"$path": str(value)}
        if isinstance(value, Box):
            return {"$box": [int(v) for v in value]}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self._dataclass(value)
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(item) for item in value]}
        if isinstance(value, list):
            return [self.encode(item) for item in value]
        if isinstance(value, dict):
            if all(isinstance(key, str) and not key.startswith("$") for key in value):
                return {key: self.encode(item) for key, item in value.items()}
            return {"$dict": [[self.encode(key), self.encode(item)] for key, item in value.items()]}
        raise SegNetsError(f"a {type(value).__name__} cannot be sent to the worker process.")

    def _volume(self, volume: Volume) -> dict[str, Any]:
        name = next(self._names)
        self.folder.mkdir(parents=True, exist_ok=True)
        np.save(self.folder / name, np.ascontiguousarray(volume.array), allow_pickle=False)
        return {
            "file": name,
            "spacing": list(volume.spacing),
            "origin": list(volume.origin),
            "direction": np.asarray(volume.direction, dtype=float).tolist(),
        }

    def _dataclass(self, value: Any) -> dict[str, Any]:
        cls = type(value)
        name = f"{cls.__module__}:{cls.__qualname__}"
        if not name.startswith(_DATACLASS_PREFIX):
            raise SegNetsError(f"a {cls.__name__} cannot be sent to the worker process.")
        fields = {f.name: self.encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return {"$dataclass": name, "fields": fields}


def decode(value: Any, folder: Path) -> Any:
    """The inverse of :class:`Encoder`; ``folder`` holds the job's ``.npy`` files."""
    if isinstance(value, list):
        return [decode(item, folder) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 or "$dataclass" in value:
        tag = next(iter(value))
        if tag == "$volume":
            return _volume(value[tag], Path(folder))
        if tag == "$card":
            return ModelCard.from_dict(value[tag])
        if tag == "$path":
            return Path(value[tag])
        if tag == "$box":
            return Box(*value[tag])
        if tag == "$tuple":
            return tuple(decode(item, folder) for item in value[tag])
        if tag == "$dict":
            return {decode(key, folder): decode(item, folder) for key, item in value[tag]}
        if tag == "$dataclass":
            return _dataclass(value["$dataclass"], {k: decode(v, folder) for k, v in value["fields"].items()})
    return {key: decode(item, folder) for key, item in value.items()}


def _volume(record: dict[str, Any], folder: Path) -> Volume:
    name = Path(record["file"]).name  # never a path outside the job's folder
    array = np.load(folder / name, allow_pickle=False)
    return Volume(array, tuple(record["spacing"]), tuple(record["origin"]), np.asarray(record["direction"]))


def _dataclass(name: str, fields: dict[str, Any]) -> Any:
    module_name, _, qualname = name.partition(":")
    if not module_name.startswith(_DATACLASS_PREFIX):
        raise SegNetsError(f"worker message names {name!r}, which is not a SegNets data class.")
    cls: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    if not dataclasses.is_dataclass(cls):
        raise SegNetsError(f"worker message names {name!r}, which is not a SegNets data class.")
    return cls(**fields)


def one_sentence(error: BaseException) -> str:
    """The user-facing text of an error: a SegNetsError's own sentence, else "Type: message"."""
    text = str(error).strip() or type(error).__name__
    if isinstance(error, SegNetsError):
        return text
    first = text.splitlines()[0]
    return f"{type(error).__name__}: {first}"
