"""The worker interface with the thread implementation: one persistent thread, progress merged, errors
re-raised on the caller's thread, unknown tasks and closed workers refused (the child process worker:
test_process_worker.py)."""

from __future__ import annotations

import threading

import pytest

from SegNetsLib.app.process_worker import ProcessWorker
from SegNetsLib.app.worker import Job, JobState, ThreadWorker
from SegNetsLib.core.errors import Cancelled, SegNetsError


@pytest.fixture
def worker():
    worker = ThreadWorker()
    yield worker
    worker.shutdown()


def test_every_job_runs_on_the_same_persistent_thread(worker):
    jobs = [worker.submit("hello") for _ in range(3)]
    for job in jobs:
        assert job.wait(60)
    assert {job.result()["thread"] for job in jobs} == {worker.thread.name}
    assert worker.thread is not threading.current_thread()


def test_progress_extras_are_merged_and_fractions_clamped():
    job = Job("train")
    job.report(0.5, "training", iteration=7, loss=0.5)
    job.report(1.5, "validating", dice=0.9)
    snapshot = job.progress()
    assert (snapshot.fraction, snapshot.stage) == (1.0, "validating")
    assert snapshot.extra == {"iteration": 7, "loss": 0.5, "dice": 0.9}
    assert job.state is JobState.RUNNING and not job.done
    with pytest.raises(RuntimeError, match="still running"):
        job.result()
    job.cancel()
    job._finish(JobState.CANCELLED)
    with pytest.raises(Cancelled):
        job.result()


def test_errors_are_re_raised_on_the_polling_thread(worker, tmp_path):
    import numpy as np

    from SegNetsLib.core.volume import Volume

    job = worker.submit(
        "segment",
        model_path=tmp_path / "no-model",
        device="cpu",
        volume=Volume(np.zeros((4, 4, 4), np.int16)),
        roi="off",
        box=None,
        name="volume 'x'",
    )
    assert job.wait(60)
    assert job.state is JobState.FAILED
    with pytest.raises((SegNetsError, OSError)):
        job.result()


@pytest.mark.parametrize("cls", [ThreadWorker, ProcessWorker])
def test_unknown_tasks_and_closed_workers_are_refused(cls):
    worker = cls()
    with pytest.raises(ValueError, match="unknown worker task 'train'"):
        worker.submit("train")
    worker.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        worker.submit("hello")
