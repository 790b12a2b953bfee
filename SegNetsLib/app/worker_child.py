"""The worker child process: ``python -m SegNetsLib.app.worker_child`` (started by ProcessWorker).

Reads requests from stdin and writes replies to stdout, one JSON object per line
(:mod:`SegNetsLib.app.protocol`). Tasks run one at a time on the main thread, which keeps the
warm model (:class:`~SegNetsLib.app.tasks.TaskState`); a reader thread receives cancels while a task
runs, and a writer thread sends replies, so a parent that does not read for a while never stalls
the work: progress is coalesced into the latest snapshot. Anything printed goes to stderr.
Closing stdin (the parent exited) cancels the running task and ends the process.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, BinaryIO

from SegNetsLib.app import protocol
from SegNetsLib.core.errors import Cancelled
from SegNetsLib.core.progress import CancelToken


class Channel:
    """Sends replies on a writer thread: final replies in order, progress as the latest snapshot per job."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._lock = threading.Condition()
        self._finals: list[dict[str, Any]] = []
        self._progress: dict[str, Any] | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="SegNets worker replies", daemon=True)
        self._thread.start()

    def progress(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._progress = message
            self._lock.notify()

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._finals.append(message)
            self._lock.notify()

    def close(self) -> None:
        """Send what is pending, then stop."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not (self._finals or self._progress or self._closed):
                    self._lock.wait()
                batch = ([self._progress] if self._progress else []) + self._finals
                self._progress, self._finals = None, []
                closing = self._closed
            try:
                for message in batch:
                    self._out.write(protocol.dumps(message))
                self._out.flush()
            except (BrokenPipeError, OSError):  # the parent is gone
                os._exit(0)
            if closing and not batch:
                return


class Requests:
    """Reads stdin on a thread: runs go to a queue, cancels set the running job's token at once."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.runs: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._current: tuple[int, CancelToken] | None = None
        self._cancelled: set[int] = set()
        threading.Thread(target=self._loop, name="SegNets worker requests", daemon=True).start()

    def begin(self, job_id: int) -> CancelToken | None:
        """The cancel token of job ``job_id`` now starting; None when it was cancelled while queued."""
        token = CancelToken()
        with self._lock:
            if job_id in self._cancelled:
                self._cancelled.discard(job_id)
                return None
            self._current = (job_id, token)
        return token

    def end(self) -> None:
        with self._lock:
            self._current = None

    def _cancel(self, job_id: int | None) -> None:
        with self._lock:
            if self._current is not None and job_id in (None, self._current[0]):
                self._current[1].cancel()
            elif job_id is not None:
                self._cancelled.add(job_id)

    def _loop(self) -> None:
        for line in self._source:
            if not line.strip():
                continue
            try:
                message = protocol.loads(line)
            except Exception as error:  # noqa: BLE001 - a bad line is reported, the child keeps going
                print(f"segnets worker: ignored a request: {error}", file=sys.stderr, flush=True)
                continue
            if message["type"] == "run":
                self.runs.put(message)
            elif message["type"] == "cancel":
                self._cancel(message.get("id"))
            elif message["type"] == "shutdown":
                break
        self._cancel(None)  # stdin closed or shutdown: stop the running job, then exit
        self.runs.put(None)


def run_one(state, message: dict[str, Any], token: CancelToken, channel: Channel) -> dict[str, Any]:
    """Run one request; returns its final reply (done, failed or cancelled)."""
    from SegNetsLib.app.worker import task_function

    job_id = message["id"]
    folder = Path(message["folder"])
    extra: dict[str, Any] = {}

    def progress(fraction: float, stage: str, **values: Any) -> None:
        extra.update(values)
        fraction = min(max(float(fraction), 0.0), 1.0)
        channel.progress({"type": "progress", "id": job_id, "fraction": fraction, "stage": stage, "extra": dict(extra)})

    try:
        fn = task_function(message["task"])
        arguments = protocol.decode(message.get("arguments") or {}, folder)
        result = fn(state, progress=progress, cancel=token, **arguments)  # done: a cancel arriving now is too late
        encoded = protocol.Encoder(folder, prefix="result").encode(result)
    except Cancelled:
        return {"type": "cancelled", "id": job_id}
    except Stopped:
        raise
    except BaseException as error:  # noqa: BLE001 - every failure becomes one reply; the child lives on
        return {
            "type": "failed",
            "id": job_id,
            "error": protocol.one_sentence(error),
            "error_type": type(error).__name__,
            "detail": traceback.format_exc(limit=20),
        }
    return {"type": "done", "id": job_id, "result": encoded}


def serve(source: BinaryIO, out: BinaryIO) -> None:
    """Answer requests from ``source`` on ``out`` until stdin closes or a shutdown arrives."""
    from SegNetsLib.app.tasks import TaskState

    channel = Channel(out)
    channel.send(
        {
            "type": "ready",
            "protocol": protocol.PROTOCOL_VERSION,
            "pid": os.getpid(),
            "python": ".".join(map(str, sys.version_info[:3])),
        }
    )
    requests = Requests(source)
    state = TaskState()
    while True:
        message = requests.runs.get()
        if message is None:
            break
        token = requests.begin(message["id"])
        if token is None:
            channel.send({"type": "cancelled", "id": message["id"]})
            continue
        try:
            reply = run_one(state, message, token, channel)
        finally:
            requests.end()
        channel.send(reply)
    channel.close()


class Stopped(BaseException):
    """SIGTERM from the parent (a cancel it gave up waiting for, or its exit): unwinds the running job, so that its
    temporary files and folders (``core.atomic``) are removed, and ends the child."""


def _stop(signum, frame) -> None:
    raise Stopped()


def main() -> None:
    # the protocol owns the original stdout; prints of any library go to stderr from here on
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    signal.signal(signal.SIGTERM, _stop)
    with contextlib.suppress(Stopped):
        serve(sys.stdin.buffer, out)
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown of torch's threads; the replies are flushed


if __name__ == "__main__":
    main()
