"""``--time-limit`` holds whatever the epoch length; CPU defaults a CPU can finish; progress while an epoch runs."""

from __future__ import annotations

import json
import logging
import time

import pytest
import torch
from msd_builder import make_msd_dataset
from robustness_cases import expect

from SegNetsLib.cli import build_parser
from SegNetsLib.training.options import DEVICE_DEFAULTS, TrainOptions, with_device_defaults
from SegNetsLib.training.trainer import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LIMIT_S = 20.0


def allowed_overshoot(limit_s: float) -> float:
    """Within 5 % of the limit, or 2 s, whichever is larger."""
    return max(0.05 * limit_s, 2.0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, data_dir):
    return make_msd_dataset(tmp_path_factory.mktemp("limit") / "Tiny", data_dir, cases=3)


def timed_train(dataset, tmp_path, progress=None, **given) -> tuple:
    """train() of a small 3D U-Net on the CPU (batch 1, no augmentation, work folder ``tmp_path/work``) with the
    TrainOptions ``given``: (its result, seconds it took)."""
    options = TrainOptions(
        batch_size=1, device="cpu", augment=False, work_dir=tmp_path / "work", **{"patch_size": (16, 32, 32), **given}
    )
    began = time.monotonic()
    result = train(dataset, "unet3d", options, progress=progress)
    return result, time.monotonic() - began


@pytest.mark.timeout(150)
def test_time_limit_holds_when_one_epoch_is_longer_than_the_limit(dataset, tmp_path, model_library, caplog):
    """An epoch of 100 000 iterations and a 20 s limit: the epoch is cut short, validated, saved, on time."""
    seen_running = []
    work = tmp_path / "work"

    def watch(fraction: float, message: str) -> None:
        log_file = work / "log.json"
        if not seen_running and log_file.is_file():
            entry = json.loads(log_file.read_text()).get("running")
            if entry:
                seen_running.append(entry)

    caplog.set_level(logging.INFO, logger="SegNetsLib")  # an in-process `segnets segment --quiet` may have raised it
    result, took = timed_train(
        dataset,
        tmp_path,
        watch,
        save_model="limited",
        time_limit_s=LIMIT_S,
        iterations_per_epoch=100_000,
        build_args={"base_channels": 4, "levels": 3},
    )
    print(f"time limit {LIMIT_S} s: train() returned after {took:.2f} s")
    expect("train-time-limit", f"returned after {took:.2f} s")
    assert abs(took - LIMIT_S) <= allowed_overshoot(LIMIT_S), took
    rows = result.history
    assert len(rows) == 1 and 0 < rows[0]["iterations"] < 100_000
    assert result.card.provenance.iterations == rows[0]["iterations"] == len(result.iteration_losses)
    assert "cut short by the time limit" in result.card.provenance.notes
    assert any("was cut short after" in record.getMessage() for record in caplog.records)
    # progress while the epoch ran: a log line at its first iteration, log.json's "running" entry
    assert any("iteration 1/100000" in record.getMessage() for record in caplog.records)
    assert seen_running and seen_running[0]["iterations"] == 100_000 and seen_running[0]["epoch"] == 1
    assert result.model_path is not None and result.model_path.is_dir()


@pytest.mark.timeout(150)
def test_time_limit_holds_across_short_epochs(dataset, tmp_path, model_library):
    """Many short epochs: the run goes on from epoch to epoch and stops at the epoch or iteration that keeps it
    within the limit. How many epochs fit is the machine's: the expectations follow the iterations it timed."""
    limit_s, per_epoch = 15.0, 15
    result, took = timed_train(
        dataset,
        tmp_path,
        save_model="limited short",
        time_limit_s=limit_s,
        iterations_per_epoch=per_epoch,
        build_args={"base_channels": 4, "levels": 3},
    )
    done = [row["iterations"] for row in result.history]
    slowest = max(result.iteration_seconds)
    print(
        f"time limit {limit_s:.0f} s, {per_epoch}-iteration epochs: train() returned after {took:.2f} s, "
        f"{len(done)} epochs of {done} iterations, slowest iteration {slowest:.2f} s"
    )
    assert len(result.iteration_seconds) == len(result.iteration_losses) == sum(done) > 0
    # across epochs: every epoch but the last ran whole; only the time limit cuts one short, and the run then ends
    assert all(n == per_epoch for n in done[:-1]) and 0 < done[-1] <= per_epoch, done
    # never past the limit (within 5 % or 2 s), and not stopped while a few more iterations fitted: it stops when one
    # more iteration (estimated at 1.2 times the slower of the last one and the mean) and the run's end do not fit
    assert took - limit_s <= allowed_overshoot(limit_s), took
    assert limit_s - took <= max(allowed_overshoot(limit_s), 1.5 * slowest), (took, slowest)


def test_cpu_defaults_are_an_epoch_and_patch_a_cpu_finishes():
    cpu = with_device_defaults(TrainOptions(save_model="m"), torch.device("cpu"))
    gpu = with_device_defaults(TrainOptions(save_model="m"), torch.device("cuda", 0))
    assert (cpu.iterations_per_epoch, cpu.max_patch_size) == DEVICE_DEFAULTS["cpu"] == (50, (32, 64, 64))
    assert (gpu.iterations_per_epoch, gpu.max_patch_size) == (250, (64, 128, 128))
    given = with_device_defaults(TrainOptions(save_model="m", iterations_per_epoch=7), torch.device("cpu"))
    assert given.iterations_per_epoch == 7  # what the user asks for stays
    args = build_parser().parse_args(["train", "--dataset", "d", "--save-model", "m"])
    assert args.iterations is None  # the device decides


@pytest.mark.slow  # a 170-million-weight network: a few GB and about 15 s
@pytest.mark.timeout(200)
def test_time_limit_budgets_a_costly_epoch_end_before_the_first_epoch_ends(dataset, tmp_path, model_library):
    """A network of ~170 M weights (a checkpoint of ~2 GB with its optimizer state) and a limit shorter than one
    epoch: the end of the epoch and of the run (checkpoint, curves, the library save) is budgeted from the first
    iteration, with the margin the clock keeps, so the run ends before the limit, not after it."""
    limit_s = 15.0
    result, took = timed_train(
        dataset,
        tmp_path,
        save_model="limited heavy",
        time_limit_s=limit_s,
        iterations_per_epoch=100_000,
        patch_size=(16, 32, 16),
        validation_fraction=0.0,  # no validation: the end of the epoch is its writing
        build_args={"base_channels": 48, "levels": 5},
    )
    print(f"time limit {limit_s:.0f} s, heavy network: train() returned after {took:.2f} s")
    assert len(result.history) == 1 and 0 < result.history[0]["iterations"] < 100_000
    assert took <= limit_s + 0.25, took  # without the estimate the writing came after the limit
    assert not list((tmp_path / "work").glob(".epoch-end-*"))  # the rehearsal leaves nothing behind


def test_epoch_end_is_estimated_before_the_first_epoch(tmp_path):
    """The clock knows what an epoch's end costs before any epoch ended: a timed weight write and curve drawing."""
    from SegNetsLib import nets
    from SegNetsLib.training.clock import TimeLimit

    net = nets.build("unet3d", 1, 2, base_channels=4, levels=3)
    clock = TimeLimit(10.0, time.monotonic())
    clock.rehearse_epoch_end(tmp_path, net, ["liver"], is_main=False)
    assert clock.epoch_end_s == 0.0  # other ranks neither write nor decide
    clock.rehearse_epoch_end(tmp_path, net, ["liver"], is_main=True)
    assert clock.epoch_end_s > 0.0 and clock.still_needed() > 0.0
    assert list(tmp_path.iterdir()) == []  # written in a temporary folder, then removed
    unlimited = TimeLimit(None, time.monotonic())
    unlimited.rehearse_epoch_end(tmp_path, net, ["liver"], is_main=True)
    assert unlimited.epoch_end_s == 0.0
