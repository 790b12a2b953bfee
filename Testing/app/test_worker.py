"""BackgroundWorker: one persistent thread, progress and results polled from the caller's thread, cancel."""

from __future__ import annotations

import threading
import time

import pytest

from SegNetsLib.app.worker import BackgroundWorker, JobState
from SegNetsLib.core.errors import Cancelled, SegNetsError


@pytest.fixture
def worker():
    worker = BackgroundWorker()
    yield worker
    worker.shutdown()


def _thread_name(*, progress, cancel) -> str:
    return threading.current_thread().name


def test_every_job_runs_on_the_same_persistent_thread(worker):
    jobs = [worker.submit(_thread_name) for _ in range(3)]
    for job in jobs:
        assert job.wait(5)
    names = {job.result() for job in jobs}
    assert names == {worker.thread.name}
    assert worker.thread is not threading.current_thread()


def test_progress_is_seen_by_the_polling_thread_and_result_returned(worker):
    reached = threading.Event()
    release = threading.Event()

    def train(steps, *, progress, cancel, scale=1.0):
        progress(0.5, "training", iteration=steps, loss=0.25 * scale)
        reached.set()
        release.wait(5)
        progress(1.0, "done", dice=0.9)
        return steps * scale

    job = worker.submit(train, 7, scale=2.0, description="train")
    assert reached.wait(5)
    snapshot = job.progress()
    assert (snapshot.fraction, snapshot.stage, snapshot.extra) == (0.5, "training", {"iteration": 7, "loss": 0.5})
    assert job.state is JobState.RUNNING and not job.done
    with pytest.raises(RuntimeError, match="still running"):
        job.result()
    release.set()
    assert job.wait(5)
    assert job.result() == 14.0
    assert job.progress().extra == {"iteration": 7, "loss": 0.5, "dice": 0.9}


def test_cancel_stops_a_running_job_quickly(worker):
    started = threading.Event()

    def long_loop(*, progress, cancel):
        started.set()
        for step in range(10_000):
            cancel.raise_if_cancelled()
            progress(step / 10_000, "step")
            time.sleep(0.01)
        return "finished"

    job = worker.submit(long_loop)
    assert started.wait(5)
    began = time.monotonic()
    job.cancel()
    assert job.wait(5)
    assert time.monotonic() - began < 1.0
    assert job.cancelled
    with pytest.raises(Cancelled):
        job.result()
    # the worker is still alive for the next job
    assert worker.submit(_thread_name).wait(5)


def test_a_job_cancelled_while_queued_never_runs(worker):
    release = threading.Event()
    ran = []
    blocker = worker.submit(lambda *, progress, cancel: release.wait(5))
    queued = worker.submit(lambda *, progress, cancel: ran.append(True))
    queued.cancel()
    release.set()
    assert blocker.wait(5) and queued.wait(5)
    assert queued.state is JobState.CANCELLED and ran == []


def test_errors_are_re_raised_on_the_polling_thread(worker):
    def bad_input(*, progress, cancel):
        raise SegNetsError("model 'x' is not in the library.")

    job = worker.submit(bad_input)
    assert job.wait(5)
    assert job.state is JobState.FAILED
    with pytest.raises(SegNetsError, match="not in the library"):
        job.result()


def test_submit_after_shutdown_is_refused():
    worker = BackgroundWorker()
    worker.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        worker.submit(_thread_name)
