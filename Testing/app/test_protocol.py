"""The worker protocol's JSON lines: values survive the trip (volumes through .npy files), foreign types are refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from SegNetsLib.app import protocol
from SegNetsLib.app.selftest import LIVER
from SegNetsLib.card.factory import make_card
from SegNetsLib.core.box import Box
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume
from SegNetsLib.finetune.options import FinetuneOptions


def _trip(value, folder: Path):
    line = protocol.dumps({"type": "run", "arguments": protocol.Encoder(folder).encode(value)})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    return protocol.decode(protocol.loads(line)["arguments"], folder)


def test_task_arguments_survive_the_trip(tmp_path):
    direction = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    volume = Volume(np.arange(60, dtype=np.int16).reshape(3, 4, 5), (0.7, 0.8, 2.5), (1.0, -2.0, 3.0), direction)
    options = FinetuneOptions(time_limit_s=30.0, device="cpu", label_names={1: "Liver", 3: "Tumor"}, slices={0: [2, 5]})
    card = make_card("unet3d", [LIVER], id="tiny", name="Tiny", build_args={"base_channels": 4, "levels": 2})
    arguments = {
        "volume": volume,
        "box": Box(1, 2, 3, 4, 5, 6),
        "model_path": tmp_path / "model",
        "labels": [LIVER],
        "options": options,
        "card": card,
        "shape": (3, 4, 5),
        "nothing": None,
    }
    back = _trip(arguments, tmp_path)
    assert np.array_equal(back["volume"].array, volume.array) and back["volume"].array.dtype == np.int16
    assert back["volume"].spacing == volume.spacing and back["volume"].origin == volume.origin
    assert np.array_equal(back["volume"].direction, direction)
    assert back["box"] == Box(1, 2, 3, 4, 5, 6) and isinstance(back["box"], Box)
    assert back["model_path"] == tmp_path / "model"
    assert back["labels"][0].name == "Liver" and back["labels"][0].terminology == LIVER.terminology
    assert back["options"] == options and back["options"].label_names == {1: "Liver", 3: "Tumor"}
    assert dataclasses.asdict(back["card"]) == dataclasses.asdict(card)
    assert back["shape"] == (3, 4, 5) and back["nothing"] is None
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == ["v0.npy"]


def test_lines_are_json_objects_with_a_type_and_never_nan(tmp_path):
    line = protocol.dumps({"type": "progress", "id": 1, "extra": {"loss": float("nan"), "dice": 0.5}})
    assert json.loads(line) == {"type": "progress", "id": 1, "extra": {"loss": None, "dice": 0.5}}
    for bad in (b"not json", b"[1, 2]", b'{"id": 3}'):
        with pytest.raises(SegNetsError, match="worker message"):
            protocol.loads(bad)


def test_only_segnets_data_classes_are_rebuilt(tmp_path):
    @dataclasses.dataclass
    class Foreign:
        x: int = 1

    with pytest.raises(SegNetsError, match="cannot be sent"):
        protocol.Encoder(tmp_path).encode(Foreign())
    with pytest.raises(SegNetsError, match="cannot be sent"):
        protocol.Encoder(tmp_path).encode(object())
    with pytest.raises(SegNetsError, match="not a SegNets data class"):
        protocol.decode({"$dataclass": "subprocess:Popen", "fields": {"args": ["true"]}}, tmp_path)


def test_a_volume_file_is_read_from_the_job_folder_only(tmp_path):
    outside = tmp_path / "outside.npy"
    np.save(outside, np.zeros(3))
    folder = tmp_path / "job"
    folder.mkdir()
    record = {
        "$volume": {
            "file": "../outside.npy",
            "spacing": [1, 1, 1],
            "origin": [0, 0, 0],
            "direction": np.eye(3).tolist(),
        }
    }
    with pytest.raises(FileNotFoundError):
        protocol.decode(record, folder)


def test_one_sentence_errors():
    assert protocol.one_sentence(SegNetsError("model 'x' is not in the library.")) == "model 'x' is not in the library."
    assert protocol.one_sentence(MemoryError()) == "MemoryError: MemoryError"
    assert protocol.one_sentence(RuntimeError("CUDA out of memory.\nTried to allocate")) == (
        "RuntimeError: CUDA out of memory."
    )
