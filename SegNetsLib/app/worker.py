"""The worker interface for model work, and its thread implementation.

A worker runs named tasks (:data:`SegNetsLib.app.tasks.TASKS`: "segment", "finetune", "hello") one
after another and keeps the last model warm. The caller submits a task with plain arguments and polls
the returned :class:`Job` from its own (main) thread for progress and, once it is done, for its
result; MRML is never touched by a worker.

Two implementations share this interface:

- :class:`~SegNetsLib.app.process_worker.ProcessWorker`: a child process of the same Python (Slicer's
  PythonSlicer inside Slicer). Use it wherever the main thread may hold Python's GIL while work runs:
  inside Slicer the Qt event loop runs with the GIL held, so a thread would only advance while the
  panel happens to run Python. A crash or out-of-memory kill of the model code cannot take the caller
  down with it.
- :class:`ThreadWorker`: one persistent daemon thread, for callers
  whose main thread releases the GIL while it waits (an asyncio web server, ``job.wait`` loops).
"""

from __future__ import annotations

import enum
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from SegNetsLib.core.errors import Cancelled, SegNetsError
from SegNetsLib.core.progress import CancelToken


class WorkerError(SegNetsError):
    """Model work failed in the worker (an unexpected error, or the worker process died); one sentence."""


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
    """A unit of model work: thread-safe progress, cancel and the outcome.

    ``context`` is free for the submitter (main thread only), e.g. the node ids the result belongs to.
    ``pump`` (process worker) reads the worker's messages on the caller's thread: it is called with a
    timeout in seconds whenever the job is asked about; ``on_cancel`` passes a cancel on to the worker.
    """

    def __init__(
        self,
        description: str,
        pump: Callable[[float], None] | None = None,
        on_cancel: Callable[[Job], None] | None = None,
    ) -> None:
        self.description = description
        self.cancel_token = CancelToken()
        self.context: dict[str, Any] = {}
        self._pump = pump
        self._on_cancel = on_cancel
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._state = JobState.QUEUED
        self._progress = ProgressSnapshot()
        self._result: Any = None
        self._error: BaseException | None = None

    # --- called by the worker --------------------------------------------------------------------
    def report(self, fraction: float, stage: str, **extra: Any) -> None:
        """A ``ProgressFn``: record progress; keyword values are merged into ``extra``."""
        with self._lock:
            if self._state is JobState.QUEUED:
                self._state = JobState.RUNNING
            merged = {**self._progress.extra, **extra}
            self._progress = ProgressSnapshot(min(max(float(fraction), 0.0), 1.0), stage, merged)

    def _set_running(self) -> None:
        with self._lock:
            if self._state is JobState.QUEUED:
                self._state = JobState.RUNNING

    def _finish(self, state: JobState, result: Any = None, error: BaseException | None = None) -> None:
        with self._lock:
            if self._finished.is_set():
                return
            self._state, self._result, self._error = state, result, error
        self._finished.set()

    # --- called on the caller's thread -----------------------------------------------------------
    def cancel(self) -> None:
        """Stop the job at its next check (within a second or two); a cancelled job writes nothing.

        A job that had already finished its work (the model saved) when the cancel arrived stays done."""
        if self.done:
            return
        self.cancel_token.cancel()
        if self._on_cancel is not None:
            self._on_cancel(self)

    @property
    def state(self) -> JobState:
        self._poll()
        with self._lock:
            return self._state

    @property
    def done(self) -> bool:
        """True once the job finished, failed or was cancelled."""
        self._poll()
        return self._finished.is_set()

    @property
    def cancelled(self) -> bool:
        return self.state is JobState.CANCELLED

    def progress(self) -> ProgressSnapshot:
        self._poll()
        with self._lock:
            return self._progress

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is done (headless use; the GIL is released meanwhile); returns whether it is."""
        if self._pump is None:
            return self._finished.wait(timeout)
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._finished.is_set():
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                break
            self._pump(left)
        return self._finished.is_set()

    def result(self) -> Any:
        """The task's return value; re-raises its error; raises Cancelled if it was cancelled."""
        if not self.done:
            raise RuntimeError(f"job {self.description!r} is still {self.state.value}")
        if self._state is JobState.CANCELLED:
            raise Cancelled(f"{self.description} was cancelled")
        if self._error is not None:
            raise self._error
        return self._result

    def _poll(self) -> None:
        if self._pump is not None and not self._finished.is_set():
            self._pump(0.0)


class Worker(Protocol):
    """What every worker offers: submit a named task, shut down."""

    def submit(self, task: str, *, description: str = "", **arguments: Any) -> Job:
        """Queue ``TASKS[task](state, progress=..., cancel=..., **arguments)``; return its Job."""
        ...

    def shutdown(self, wait: bool = True) -> None:
        """Cancel what runs and stop; a later submit is refused."""
        ...


def task_function(task: str) -> Callable[..., Any]:
    """The function of a task name; raises ValueError for an unknown one."""
    from SegNetsLib.app.tasks import TASKS

    if task not in TASKS:
        raise ValueError(f"unknown worker task {task!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[task]


class ThreadWorker:
    """One persistent daemon thread running submitted tasks in order (cuDNN's autotuning caches are
    per thread, so one thread for every job keeps them)."""

    def __init__(self, name: str = "SegNets worker") -> None:
        from SegNetsLib.app.tasks import TaskState

        self._state = TaskState()
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, task: str, *, description: str = "", **arguments: Any) -> Job:
        fn = task_function(task)
        if not self._thread.is_alive():
            raise RuntimeError("the background worker was shut down")
        job = Job(description or task)
        self._queue.put((job, fn, arguments))
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
            job, fn, arguments = item
            self._run(job, fn, arguments)

    def _run(self, job: Job, fn: Callable[..., Any], arguments: dict) -> None:
        if job.cancel_token.cancelled:
            job._finish(JobState.CANCELLED)
            return
        job._set_running()
        try:
            result = fn(self._state, progress=job.report, cancel=job.cancel_token, **arguments)
        except Cancelled:
            job._finish(JobState.CANCELLED)
        except BaseException as error:  # reported to the caller's thread, which re-raises it
            job._finish(JobState.FAILED, error=error)
        else:
            job._finish(JobState.DONE, result=result)
