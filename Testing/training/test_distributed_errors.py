"""Bad input to ``segnets train`` under ``torchrun --nproc_per_node=2`` (CPU, gloo): one error line for the run,
said by rank 0, not one per rank; torchrun's exit status says the run failed and nothing is written."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from msd_builder import make_msd_dataset


def _command(*arguments: str, library: Path) -> tuple[list[str], dict[str, str]]:
    """``segnets train ARGUMENTS`` under torchrun with 2 CPU processes, and its environment."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "SegNetsLib.cli", "train", "--save-model", "Tiny", "--device", "cpu", *arguments]
    return command, {**os.environ, "OMP_NUM_THREADS": "1", "SEGNETS_MODELS": str(library)}


def _torchrun(*arguments: str, library: Path) -> subprocess.CompletedProcess:
    command, environment = _command(*arguments, library=library)
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, data_dir) -> Path:
    return make_msd_dataset(tmp_path_factory.mktemp("ddp_errors") / "Tiny", data_dir, cases=3)


def test_missing_image_is_one_line(dataset, tmp_path, model_library):
    """A case without its image (the same problem on every rank): one sentence naming the file."""
    (dataset / "imagesTr" / "case_001_0000.nii.gz").rename(tmp_path / "moved.nii.gz")
    try:
        finished = _torchrun("--dataset", str(dataset), "--work-dir", str(tmp_path / "work"), library=model_library)
    finally:
        (tmp_path / "moved.nii.gz").rename(dataset / "imagesTr" / "case_001_0000.nii.gz")
    assert finished.returncode != 0
    lines = [line for line in finished.stderr.splitlines() if line.startswith("segnets train:")]
    assert lines == [
        f"segnets train: error: {dataset / 'labelsTr' / 'case_001.nii.gz'}: no image for this case in "
        "imagesTr (expected case_001_0000.nii.gz or case_001.nii.gz)."
    ], finished.stderr[-3000:]
    assert "Traceback" not in finished.stderr.split("torch/distributed")[0]  # no Python traceback of ours
    assert not (tmp_path / "work").exists() and not list(model_library.iterdir())


def test_too_many_ranks_an_unknown_model_and_a_bad_option_are_one_line(dataset, tmp_path, data_dir, model_library):
    """Two ranks for one training case (refused after the ranks joined), a model the library lacks, and an
    option argparse refuses."""
    two = make_msd_dataset(tmp_path / "Two", data_dir, cases=2)
    finished = _torchrun("--dataset", str(two), "--work-dir", str(tmp_path / "work"), library=model_library)
    assert finished.returncode != 0
    assert finished.stderr.count("start at most as many processes as training cases") == 1, finished.stderr[-3000:]

    finished = _torchrun("--dataset", str(dataset), "--model", "no-such-model", library=model_library)
    assert finished.returncode != 0
    assert finished.stderr.count("model 'no-such-model' is not in the library") == 1, finished.stderr[-3000:]

    finished = _torchrun("--dataset", str(two), "--epochs", "0", library=model_library)
    assert finished.returncode != 0
    assert finished.stderr.count("argument --epochs: 0 is not a positive integer") == 1, finished.stderr[-3000:]
    assert finished.stderr.count("usage: segnets train") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_gpu_this_machine_lacks_is_one_line(dataset, tmp_path, model_library):
    """'--device cuda' without a CUDA GPU: each rank printed the same sentence, one line per process."""
    work = tmp_path / "work"
    finished = _torchrun("--dataset", str(dataset), "--work-dir", str(work), "--device", "cuda", library=model_library)
    assert finished.returncode != 0
    lines = [line for line in finished.stderr.splitlines() if line.startswith("segnets train:")]
    assert lines == ["segnets train: error: device 'cuda' is not available: this machine has no usable CUDA GPU."], (
        finished.stderr[-3000:]
    )
    assert not work.exists() and not list(model_library.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize(("stop", "said"), [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated")])
def test_a_stopped_run_says_so_once(dataset, tmp_path, model_library, stop, said):
    """Ctrl-C (SIGINT to torchrun's process group) once training runs, or SIGTERM: every rank said it stopped."""
    arguments = ("--dataset", str(dataset), "--work-dir", str(tmp_path / "work"), "--base-channels", "4")
    command, environment = _command(*arguments, "--epochs", "50", library=model_library)
    process = subprocess.Popen(
        command, env=environment, stderr=subprocess.PIPE, text=True, start_new_session=True, stdout=subprocess.DEVNULL
    )
    guard = threading.Timer(240, os.killpg, (process.pid, signal.SIGKILL))  # a run that never starts fails, not hangs
    guard.start()
    try:
        said_before = []
        while "iteration 1/" not in (line := process.stderr.readline()):  # the first epoch is under way
            assert line, "".join(said_before)[-3000:]
            said_before.append(line)
        os.killpg(process.pid, stop)
        err = "".join(said_before) + process.communicate(timeout=120)[1]
    finally:
        guard.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode != 0
    lines = [line for line in err.splitlines() if line.startswith("segnets train:")]
    assert lines == [f"segnets train: {said}; no file was left half-written."], err[-3000:]
    assert not list(model_library.iterdir())
