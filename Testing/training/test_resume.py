"""Training stopped mid-epoch (cancel, or SIGKILL of the process) resumes from its last checkpoint
and reaches the same weights as a run that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from msd_builder import make_msd_dataset
from safetensors.torch import save_file

from SegNetsLib.core.errors import Cancelled, SegNetsError
from SegNetsLib.core.progress import CancelToken
from SegNetsLib.models.library import ModelLibrary
from SegNetsLib.training.checkpoint import load_checkpoint, save_checkpoint
from SegNetsLib.training.trainer import LAST, TrainOptions, train

EPOCHS, ITERATIONS = 2, 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, data_dir):
    return make_msd_dataset(tmp_path_factory.mktemp("resume") / "Tiny", data_dir, cases=3)


def _options(work_dir, name: str, **changes) -> TrainOptions:
    values = dict(
        save_model=name,
        epochs=EPOCHS,
        iterations_per_epoch=ITERATIONS,
        batch_size=1,
        patch_size=(16, 32, 32),
        learning_rate=1e-2,
        device="cpu",
        augment=True,
        build_args={"base_channels": 4, "levels": 3},
        work_dir=work_dir,
    )
    values.update(changes)
    return TrainOptions(**values)


def _assert_same_weights(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=1e-6, msg=key)


def test_checkpoint_round_trip_without_pickles(tmp_path):
    net = torch.nn.Conv3d(1, 2, 3)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(1, 1, 5, 5, 5)).sum().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "c.safetensors", net.state_dict(), {"epoch": 2}, optimizer.state_dict())
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    checkpoint = load_checkpoint(path)
    assert checkpoint.state == {"epoch": 2}
    restored = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    restored.load_state_dict(checkpoint.optimizer)
    torch.testing.assert_close(
        restored.state_dict()["state"][0]["momentum_buffer"], optimizer.state_dict()["state"][0]["momentum_buffer"]
    )
    assert restored.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize(
    "header",
    [
        "{not json",
        "[1, 2]",
        '{"state": {}}',
        '{"state": [], "scaler": null, "optimizer": null}',
        '{"state": {}, "scaler": null, "optimizer": {"scalars": 1, "param_groups": []}}',
    ],
)
def test_a_damaged_checkpoint_header_is_named(tmp_path, header):
    path = tmp_path / LAST
    save_file({"model.w": torch.zeros(1)}, str(path), metadata={"segnets_checkpoint": header})
    with pytest.raises(SegNetsError, match=f"{LAST}: its SegNets checkpoint metadata is damaged"):
        load_checkpoint(path)


def test_cancel_mid_epoch_then_resume_gives_the_uninterrupted_result(dataset, tmp_path, model_library):
    reference = train(dataset, "unet3d", _options(tmp_path / "reference", "reference"))

    token = CancelToken()

    def cancel_in_second_epoch(fraction: float, stage: str) -> None:
        if fraction >= (ITERATIONS + 2) / (EPOCHS * ITERATIONS):
            token.cancel()

    with pytest.raises(Cancelled):
        train(
            dataset, "unet3d", _options(tmp_path / "run", "interrupted"), progress=cancel_in_second_epoch, cancel=token
        )
    assert load_checkpoint(tmp_path / "run" / LAST).state["epoch"] == 1  # at most one epoch is lost
    assert [entry.card.id for entry in ModelLibrary().list()] == ["reference"]  # no model from the cancelled run

    resumed = train(dataset, "unet3d", _options(tmp_path / "run", "interrupted", resume=True, epochs=None))
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    _assert_same_weights(
        load_checkpoint(tmp_path / "reference" / LAST).model, load_checkpoint(tmp_path / "run" / LAST).model
    )
    _assert_same_weights(reference.net.state_dict(), resumed.net.state_dict())  # the best epoch's weights


def test_resume_goes_on_with_the_checkpoints_architecture(dataset, tmp_path, model_library):
    """`segnets train --resume` without --model (the default unet3d) continues a RU-Net run as a RU-Net."""
    options = _options(tmp_path / "run", "runet run", epochs=2, iterations_per_epoch=1, build_args={"base_channels": 4})
    train(dataset, "runet", options)
    resumed = train(
        dataset, "unet3d", _options(tmp_path / "run", "runet run", epochs=3, iterations_per_epoch=1, resume=True)
    )
    assert resumed.card.architecture == "runet" and [row["epoch"] for row in resumed.history] == [1, 2, 3]


@pytest.mark.slow
def test_sigkill_then_resume_from_the_command_line(dataset, tmp_path, model_library):
    work = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "SegNetsLib.cli",
        "train",
        "--dataset",
        str(dataset),
        "--save-model",
        "killed",
        "--epochs",
        "4",
        "--iterations",
        "6",
        "--batch-size",
        "1",
        "--patch-size",
        "16",
        "32",
        "32",
        "--learning-rate",
        "0.01",
        "--base-channels",
        "4",
        "--build-args",
        '{"levels": 3}',
        "--device",
        "cpu",
        "--work-dir",
        str(work),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "SEGNETS_MODELS": str(model_library)}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not (work / LAST).is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stdout.read().decode()
    assert load_checkpoint(work / LAST).state["epoch"] < 4
    assert ModelLibrary().list() == []
    finished = subprocess.run(command + ["--resume"], env=environment, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    assert load_checkpoint(work / LAST).state["epoch"] == 4
    assert [entry.card.id for entry in ModelLibrary().list()] == ["killed"]
    reference = train(
        dataset,
        "unet3d",
        TrainOptions(
            save_model="reference",
            epochs=4,
            iterations_per_epoch=6,
            batch_size=1,
            patch_size=(16, 32, 32),
            learning_rate=0.01,
            device="cpu",
            build_args={"base_channels": 4, "levels": 3},
            work_dir=tmp_path / "ref",
        ),
    )
    _assert_same_weights(load_checkpoint(work / LAST).model, load_checkpoint(reference.work_dir / LAST).model)


def test_resuming_a_finished_run_adds_no_second_model(dataset, tmp_path, model_library):
    options = _options(tmp_path / "done", "done", epochs=1, iterations_per_epoch=1, augment=False)
    train(dataset, "unet3d", options)
    options.resume = True
    with pytest.raises(SegNetsError, match="already finished and saved model done 1.0.0"):
        train(dataset, "unet3d", options)
    assert len(ModelLibrary().list()) == 1
