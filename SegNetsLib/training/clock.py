"""The time limit of a training run, kept between iterations, and progress reported while an epoch runs.

A run with ``time_limit_s`` ends within a few percent of it whatever the epoch length: before each
iteration :class:`TimeLimit` asks whether one more iteration, the epoch's validation and checkpoint,
and the final save still fit; when they do not, the epoch ends early (the log says so) and the run
finishes. Durations are measured as the run goes (iterations, validation, the end of an epoch); before
the first epoch, validation and the end of an epoch are timed once so that the first epoch budgets them too.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from torch import nn

from SegNetsLib.training.checkpoint import save_checkpoint
from SegNetsLib.training.log import TrainingLog

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 30.0  # a log line (and log.json's "running" entry) at least this often during an epoch
_MARGIN = 1.2  # estimates of what is still to come are stretched by this much
_WEIGHT_WRITES = 4  # an epoch's checkpoints hold about four copies of the weights: weights, two optimizer moments, best


class TimeLimit:
    """Deadline ``started + limit_s`` (monotonic seconds); ``limit_s`` None means no limit."""

    def __init__(self, limit_s: float | None, started: float) -> None:
        self.limit_s, self.started = limit_s, started
        self.iteration_s = 0.0  # the slower of the last iteration and the mean so far
        self.validation_s = 0.0  # the last validation pass
        self.epoch_end_s = 0.0  # checkpoint, log and curves of the last epoch
        self._total = 0.0
        self.durations: list[float] = []  # seconds of each iteration timed so far

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return float("inf") if self.limit_s is None else self.limit_s - self.elapsed()

    def record_iteration(self, seconds: float) -> None:
        self.durations.append(seconds)
        self._total += seconds
        self.iteration_s = max(seconds, self._total / len(self.durations))

    def still_needed(self) -> float:
        """Seconds the end of an epoch and of the run take after the last iteration (validation, checkpoint,
        the final save, which writes about what an epoch's end writes)."""
        return _MARGIN * (self.validation_s + 2 * self.epoch_end_s)

    def room_for_iteration(self) -> bool:
        """True when one more iteration and everything after it still end before the deadline."""
        return self.left() >= _MARGIN * self.iteration_s + self.still_needed()

    def rehearse_epoch_end(self, folder: Path, net: nn.Module, label_names: list[str], is_main: bool) -> None:
        """Before the first epoch, with a limit, on the main rank (the one that writes and decides): set
        :attr:`epoch_end_s` from one timed write of ``net``'s weights (times :data:`_WEIGHT_WRITES`) and one
        drawing of the curves, both in a temporary folder inside ``folder`` that is then removed."""
        if self.limit_s is None or not is_main:
            return
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".epoch-end-", dir=folder) as scratch:
            timed = time.monotonic()
            save_checkpoint(Path(scratch) / "weights.safetensors", net.state_dict(), {})
            written = time.monotonic() - timed
            timed = time.monotonic()
            TrainingLog(scratch, label_names).plot()
            self.epoch_end_s = _WEIGHT_WRITES * written + time.monotonic() - timed


class EpochProgress:
    """Reports iterations as an epoch runs: ``report(step, loss)`` at most every :data:`PROGRESS_EVERY_S`
    seconds to the log and to ``write`` (e.g. the training log's "running" entry)."""

    def __init__(self, epoch: int, epochs: int, iterations: int, clock: TimeLimit, write: Callable[[dict], None]):
        self.epoch, self.epochs, self.iterations, self.clock, self.write = epoch, epochs, iterations, clock, write
        self._last = time.monotonic()

    def report(self, step: int, loss: float, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        entry = {
            "epoch": self.epoch,
            "epochs": self.epochs,
            "iteration": step,
            "iterations": self.iterations,
            "loss": round(loss, 5),
            "seconds": round(self.clock.elapsed(), 1),
        }
        if self.clock.limit_s is not None:
            entry["seconds_left"] = round(max(self.clock.left(), 0.0), 1)
        log.info(
            "epoch %d/%d: iteration %d/%d, loss %.4f, %.0f s elapsed",
            self.epoch,
            self.epochs,
            step,
            self.iterations,
            loss,
            entry["seconds"],
        )
        self.write(entry)
