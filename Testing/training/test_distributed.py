"""``segnets train`` under ``torchrun --nproc_per_node=2`` on the CPU (gloo): identical weights on both
ranks, each rank on its own shard of the cases, one model card written by rank 0 only."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
from msd_builder import make_msd_dataset

from SegNetsLib.models.library import ModelLibrary
from SegNetsLib.training.checkpoint import load_checkpoint
from SegNetsLib.training.options import TrainOptions
from SegNetsLib.training.trainer import LAST, train


def _digest(state: dict) -> str:
    """The trainer's weight digest (sha256 over names and bytes, by sorted name)."""
    digest = hashlib.sha256()
    for key, value in sorted(state.items()):
        digest.update(key.encode())
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, data_dir):
    return make_msd_dataset(tmp_path_factory.mktemp("ddp") / "Tiny", data_dir, cases=3)


@pytest.mark.parametrize("norm", ["instance", "batch"])  # batch: running statistics must agree across ranks
def test_torchrun_two_cpu_ranks(dataset, tmp_path, model_library, norm):
    work = tmp_path / "work"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "SegNetsLib.cli",
        "train",
        "--dataset",
        str(dataset),
        "--save-model",
        "Tiny DDP",
        "--epochs",
        "1",
        "--iterations",
        "3",
        "--batch-size",
        "1",
        "--patch-size",
        "16",
        "32",
        "32",
        "--base-channels",
        "4",
        "--build-args",
        json.dumps({"levels": 3, "norm": norm}),
        "--learning-rate",
        "0.01",
        "--device",
        "cpu",
        "--work-dir",
        str(work),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "SEGNETS_MODELS": str(model_library)}
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert finished.stdout.count("Saved tiny-ddp 1.0.0") == 1  # only rank 0 reports and writes
    assert finished.stderr.count("epoch 1/1: iteration 1/3") == 1  # the running epoch's line once, not per rank

    summary = json.loads((work / "log.json").read_text())["summary"]
    digests = summary["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # both ranks ended with identical weights
    assert digests[0] == _digest(load_checkpoint(work / LAST).model)  # ... which are the checkpointed ones
    shards = summary["rank_training_cases"]
    assert len(shards) == 2 and all(len(share) == 1 for share in shards) and shards[0] != shards[1]

    entries = ModelLibrary().list()
    assert [(entry.card.id, entry.card.version) for entry in entries] == [("tiny-ddp", "1.0.0")]
    trained_on = entries[0].card.provenance.trained_on[0]
    assert trained_on["ranks"] == 2 and trained_on["training_cases"] == 2 and trained_on["validation_cases"] == 1
    assert sorted(path.name for path in model_library.rglob("card.json")) == ["card.json"]  # exactly one card
    assert not list(work.glob(".*partial*"))  # no half-written files from either rank


def test_resuming_with_another_number_of_ranks_is_recorded(dataset, tmp_path, model_library, one_torch_thread):
    """An epoch on 2 ranks, then a resume in one process: the card names both, not the last process count alone."""
    work = tmp_path / "work"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    command += ["SegNetsLib.cli", "train", "--dataset", str(dataset), "--save-model", "Mixed", "--epochs", "1"]
    command += ["--iterations", "1", "--batch-size", "1", "--patch-size", "16", "32", "32", "--base-channels", "4"]
    command += ["--build-args", json.dumps({"levels": 3}), "--device", "cpu", "--work-dir", str(work)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "SEGNETS_MODELS": str(model_library)}
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]

    options = TrainOptions(
        save_model="Mixed",
        epochs=2,
        iterations_per_epoch=1,
        batch_size=1,
        patch_size=(16, 32, 32),
        device="cpu",
        build_args={"levels": 3, "base_channels": 4},
        work_dir=work,
        resume=True,
    )
    result = train(dataset, "unet3d", options)  # the second epoch in this one process
    assert result.card.provenance.trained_on[0]["ranks"] == [2, 1]
    assert "2 then 1 ranks" in result.card.provenance.notes
