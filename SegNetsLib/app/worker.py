"""One persistent background thread for model work, polled from the GUI's main thread.

All inference and fine-tuning run on the same thread: PyTorch's cuDNN autotuning caches are
per thread, so a fresh thread per job would re-benchmark every convolution. The main thread
submits a function, then polls the returned :class:`Job` (a Qt timer in Slicer, a loop in batch
runs) for progress and, once it is done, for its result; the worker never touches MRML.
"""

from __future__ import annotations

import enum
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from SegNetsLib.core.errors import Cancelled
from SegNetsLib.core.progress import CancelToken


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class ProgressSnapshot:
    """What a job last reported: fraction in [0, 1], stage name, extra values (loss, dice, iteration)."""

    fraction: float = 0.0
    stage: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Job:
    """A unit of background work: thread-safe progress, a cancel token and the outcome.

    ``context`` is free for the submitter (main thread only), e.g. the node ids the result belongs to.
    """

    def __init__(self, description: str) -> None:
        self.description = description
        self.cancel_token = CancelToken()
        self.context: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._state = JobState.QUEUED
        self._progress = ProgressSnapshot()
        self._result: Any = None
        self._error: BaseException | None = None

    # --- called on the worker thread -------------------------------------------------------------
    def report(self, fraction: float, stage: str, **extra: Any) -> None:
        """A ``ProgressFn``: record progress; keyword values are merged into ``extra``."""
        with self._lock:
            merged = {**self._progress.extra, **extra}
            self._progress = ProgressSnapshot(min(max(float(fraction), 0.0), 1.0), stage, merged)

    def _run(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        if self.cancel_token.cancelled:
            self._finish(JobState.CANCELLED)
            return
        with self._lock:
            self._state = JobState.RUNNING
        try:
            result = fn(*args, progress=self.report, cancel=self.cancel_token, **kwargs)
        except Cancelled:
            self._finish(JobState.CANCELLED)
        except BaseException as error:  # reported to the main thread, which re-raises it
            self._finish(JobState.FAILED, error=error)
        else:
            self._finish(JobState.DONE, result=result)

    def _finish(self, state: JobState, result: Any = None, error: BaseException | None = None) -> None:
        with self._lock:
            self._state, self._result, self._error = state, result, error
        self._finished.set()

    # --- called on the main thread ---------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the job to stop at its next check (within a second or two for inference and training)."""
        self.cancel_token.cancel()

    @property
    def state(self) -> JobState:
        with self._lock:
            return self._state

    @property
    def done(self) -> bool:
        """True once the job finished, failed or was cancelled."""
        return self._finished.is_set()

    @property
    def cancelled(self) -> bool:
        return self.state is JobState.CANCELLED

    def progress(self) -> ProgressSnapshot:
        with self._lock:
            return self._progress

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is done (for headless use); returns whether it is."""
        return self._finished.wait(timeout)

    def result(self) -> Any:
        """The function's return value; re-raises its exception; raises Cancelled if it was cancelled."""
        if not self.done:
            raise RuntimeError(f"job {self.description!r} is still {self.state.value}")
        if self._state is JobState.CANCELLED:
            raise Cancelled(f"{self.description} was cancelled")
        if self._error is not None:
            raise self._error
        return self._result


class BackgroundWorker:
    """One persistent daemon thread running submitted jobs in order."""

    def __init__(self, name: str = "SegNets worker") -> None:
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any, description: str = "", **kwargs: Any) -> Job:
        """Queue ``fn(*args, progress=job.report, cancel=job.cancel_token, **kwargs)``; return its Job."""
        if not self._thread.is_alive():
            raise RuntimeError("the background worker was shut down")
        job = Job(description or getattr(fn, "__name__", "job"))
        self._queue.put((job, fn, args, kwargs))
        return job

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def shutdown(self, wait: bool = True) -> None:
        """Stop the thread after the queued jobs (cancel them first to stop sooner)."""
        self._queue.put(None)
        if wait:
            self._thread.join()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job, fn, args, kwargs = item
            job._run(fn, args, kwargs)
