"""The parent side of the worker child process: the worker Slicer's panel, the batch script and the
self-test use (see :mod:`SegNetsLib.app.worker` for the interface, :mod:`SegNetsLib.app.protocol`).

The child (``python -m SegNetsLib.app.worker_child`` with Slicer's own Python) starts on the first
job and stays warm, keeping the last model loaded. Volumes travel through ``.npy`` files in a private
temporary folder (one subfolder per job, removed when the job ends). No thread runs here: the caller's
polls (``job.progress()``, ``job.done``, ``job.wait()``) read the child's replies without blocking, so
the work advances even while the caller's thread holds the GIL. A cancel the child does not answer
within ``cancel_grace_s`` terminates it; a child that dies fails its jobs with one sentence, and the
next job starts a fresh child.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from SegNetsLib.app import protocol
from SegNetsLib.app.worker import Job, JobState, WorkerError, task_function
from SegNetsLib.core.errors import SegNetsError

log = logging.getLogger(__name__)

CANCEL_GRACE_S = 0.8  # a cancel unanswered this long terminates the child (cancel must return within 2 s)
PYTHON_ENV = "SEGNETS_WORKER_PYTHON"  # overrides the child's Python executable
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding SegNetsLib/
# PythonSlicer (CTKAppLauncher) exits 1 with this line when its interpreter dies by a signal (ctkAppLauncher.cpp)
LAUNCHER_CRASH_LINE = re.compile(r"^error: \[.*\] exit abnormally")


def child_python() -> str:
    """The Python that runs the child: $SEGNETS_WORKER_PYTHON, Slicer's PythonSlicer inside Slicer, else
    this interpreter (``sys.executable``)."""
    configured = os.environ.get(PYTHON_ENV)
    if configured:
        return configured
    app = getattr(sys.modules.get("slicer"), "app", None)
    if app is not None:
        name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
        candidates = [shutil.which(name), str(Path(str(getattr(app, "slicerHome", ""))) / "bin" / name)]
        for candidate in candidates:
            if candidate and Path(candidate).is_file():
                return candidate
    return sys.executable


@dataclass
class _Pending:
    job: Job
    folder: Path
    line: bytes
    cancel_deadline: float | None = None


class ProcessWorker:
    """Runs tasks in one warm child process; the same interface as ThreadWorker."""

    def __init__(self, python: str | None = None, cancel_grace_s: float = CANCEL_GRACE_S) -> None:
        self._python = python
        self.cancel_grace_s = cancel_grace_s
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._process: subprocess.Popen | None = None
        self._buffer = b""
        self._log_start = 0
        self._root: Path | None = None
        self._closed = False
        self.info: dict[str, Any] = {}  # the child's "ready" message (pid, Python version)
        self.starts = 0  # how many children were started (a fresh one after each death)

    # --- the interface ---------------------------------------------------------------------------
    def submit(self, task: str, *, description: str = "", **arguments: Any) -> Job:
        task_function(task)
        with self._lock:
            if self._closed:
                raise RuntimeError("the background worker was shut down")
            job_id = next(self._ids)
            folder = self._private_root() / f"job-{job_id}"
            folder.mkdir()
            try:
                encoded = protocol.Encoder(folder).encode(arguments)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            message = {"type": "run", "id": job_id, "task": task, "folder": str(folder), "arguments": encoded}
            job = Job(description or task, pump=self._pump, on_cancel=lambda j, i=job_id: self._cancel(i))
            try:
                self._ensure_child()  # before the job is pending: a dead child's death is not this job's
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            self._pending[job_id] = _Pending(job, folder, protocol.dumps(message))
            self._send(self._pending[job_id].line)
            return job

    def shutdown(self, wait: bool = True) -> None:
        """Cancel every job, stop the child (terminated after 2 s) and remove the private folder."""
        with self._lock:
            self._closed = True
            for job_id in list(self._pending):
                self._end(job_id, JobState.CANCELLED)
            process, self._process = self._process, None
            if process is not None:
                self._stop(process, wait)
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None

    @property
    def pid(self) -> int | None:
        """The running child's process id (None before the first job or after it died)."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    # --- the child -------------------------------------------------------------------------------
    def _private_root(self) -> Path:
        if self._root is None or not self._root.is_dir():
            self._root = Path(tempfile.mkdtemp(prefix="segnets-worker-"))  # readable by this user only
            weakref.finalize(self, shutil.rmtree, self._root, True)  # a worker dropped without shutdown
        return self._root

    def _ensure_child(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        if self._process is not None:
            self._child_gone()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(_PACKAGE_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        python = self._python or child_python()
        log_path = self._private_root() / "worker.log"
        with open(log_path, "ab") as stderr:
            self._log_start = stderr.tell()
            try:
                self._process = subprocess.Popen(
                    [python, "-m", protocol.CHILD_MODULE],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    env=env,
                    creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0)
                    | getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
                    start_new_session=os.name != "nt",  # its own process group: see _end
                )
            except OSError as error:
                self._process = None
                raise WorkerError(f"the SegNets worker process could not start with {python}: {error}.") from None
        os.set_blocking(self._process.stdout.fileno(), False)
        self._buffer = b""
        self.starts += 1

    def _send(self, line: bytes) -> None:
        try:
            self._process.stdin.write(line)
            self._process.stdin.flush()
        except (BrokenPipeError, OSError, AttributeError):
            self._child_gone()

    def _stop(self, process: subprocess.Popen, wait: bool) -> None:
        try:
            process.stdin.write(protocol.dumps({"type": "shutdown"}))
            process.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        if wait:
            try:
                process.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                _end(process, force=True)
                process.wait()
        process.stdout.close()

    def _terminate(self) -> None:
        """End the child now (a cancel it did not answer); queued jobs go to the next child."""
        process, self._process = self._process, None
        if process is None:
            return
        _end(process, force=False)
        if not _ended_by(process, time.monotonic() + 0.5):  # the interpreter behind a launcher too
            _end(process, force=True)
        process.wait()
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass

    # --- replies ---------------------------------------------------------------------------------
    def _pump(self, timeout: float) -> None:
        """Read every reply that has arrived (waiting up to ``timeout`` s for one); enforce cancel deadlines."""
        with self._lock:
            process = self._process
            if process is not None and timeout > 0:
                self._wait_readable(process, timeout)
            elif process is None and timeout > 0:
                time.sleep(min(timeout, 0.05))
            if process is not None:
                eof = self._read(process)
                if eof or process.poll() is not None:
                    self._read(process)
                    self._child_gone()
            self._check_cancel_deadlines()

    @staticmethod
    def _wait_readable(process: subprocess.Popen, timeout: float) -> None:
        if os.name == "nt":  # select() does not take pipes on Windows
            time.sleep(min(timeout, 0.05))
            return
        import select

        select.select([process.stdout], [], [], timeout)

    def _read(self, process: subprocess.Popen) -> bool:
        """Handle the complete lines available now; True at end of file (the child is gone)."""
        eof = False
        while True:
            try:
                chunk = os.read(process.stdout.fileno(), 1 << 16)
            except BlockingIOError:
                break
            except (OSError, ValueError):
                eof = True
                break
            if not chunk:
                eof = True
                break
            self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self._handle(line)
        return eof

    def _handle(self, line: bytes) -> None:
        try:
            message = protocol.loads(line)
        except SegNetsError as error:
            log.warning("SegNets worker: %s", error)
            return
        kind, job_id = message["type"], message.get("id")
        if kind == "ready":
            self.info = message
            if message.get("protocol") != protocol.PROTOCOL_VERSION:
                self._terminate()
                self._fail_all(f"the SegNets worker speaks protocol {message.get('protocol')!r}, not 1.")
            return
        pending = self._pending.get(job_id)
        if pending is None:
            return
        if kind == "progress":
            pending.job.report(message.get("fraction", 0.0), message.get("stage", ""), **message.get("extra", {}))
        elif kind == "done":
            try:
                result = protocol.decode(message.get("result"), pending.folder)
            except Exception as error:  # noqa: BLE001 - a broken result fails its job, nothing else
                self._end(job_id, JobState.FAILED, error=WorkerError(protocol.one_sentence(error)))
            else:
                self._end(job_id, JobState.DONE, result=result)
        elif kind == "cancelled":
            self._end(job_id, JobState.CANCELLED)
        elif kind == "failed":
            if message.get("detail"):
                log.info("SegNets worker: %s failed:\n%s", pending.job.description, message["detail"])
            text = str(message.get("error") or "the task failed.")
            error = SegNetsError(text) if message.get("error_type") == "SegNetsError" else WorkerError(text)
            self._end(job_id, JobState.FAILED, error=error)

    def _end(self, job_id: int, state: JobState, result: Any = None, error: BaseException | None = None) -> None:
        pending = self._pending.pop(job_id, None)
        if pending is None:
            return
        shutil.rmtree(pending.folder, ignore_errors=True)
        pending.job._finish(state, result=result, error=error)

    # --- cancel and death ------------------------------------------------------------------------
    def _cancel(self, job_id: int) -> None:
        with self._lock:
            pending = self._pending.get(job_id)
            if pending is None or pending.cancel_deadline is not None:
                return
            if self._process is None or self._process.poll() is not None:
                self._end(job_id, JobState.CANCELLED)
                return
            self._pump(0.0)  # replies already sent: a job that ended meanwhile is not the running one
            if job_id not in self._pending:
                return
            if job_id != min(self._pending):  # queued: the child runs jobs in order
                self._send(protocol.dumps({"type": "cancel", "id": job_id}))  # it skips this one at its turn
                self._end(job_id, JobState.CANCELLED)
                return
            pending.cancel_deadline = time.monotonic() + self.cancel_grace_s
            self._send(protocol.dumps({"type": "cancel", "id": job_id}))
            self._pump(0.0)

    def _check_cancel_deadlines(self) -> None:
        now = time.monotonic()
        late = [i for i, p in self._pending.items() if p.cancel_deadline is not None and p.cancel_deadline <= now]
        if not late:
            return
        log.warning("SegNets worker: a cancel was not answered within %.1f s; stopping the worker", self.cancel_grace_s)
        self._terminate()
        for job_id in late:
            self._end(job_id, JobState.CANCELLED)
        if self._pending and not self._closed:  # jobs queued behind the cancelled one run in a fresh child
            self._ensure_child()
            for job_id in sorted(self._pending):
                self._send(self._pending[job_id].line)

    def _child_gone(self) -> None:
        """The child exited on its own (killed, out of memory, crashed): fail its jobs in one sentence."""
        process, self._process = self._process, None
        if process is None:
            return
        code = process.poll()
        if code is None:
            _end(process, force=True)
            code = process.wait()
        self._fail_all(_death_sentence(code, self._log_tail()))

    def _fail_all(self, sentence: str) -> None:
        for job_id in list(self._pending):
            pending = self._pending[job_id]
            state = JobState.CANCELLED if pending.cancel_deadline is not None else JobState.FAILED
            self._end(job_id, state, error=WorkerError(sentence))

    def _log_tail(self) -> str:
        """Log what the dead child wrote to stderr; return its last line ("" when it wrote nothing)."""
        path = self._root / "worker.log" if self._root is not None else None
        if path is None or not path.is_file():
            return ""
        with open(path, "rb") as handle:
            handle.seek(max(self._log_start, path.stat().st_size - 4000))
            tail = handle.read().decode("utf-8", "replace").strip()
        if tail:
            log.warning("SegNets worker process output before it stopped:\n%s", tail)
        return tail.splitlines()[-1].strip() if tail else ""


def _ended_by(process: subprocess.Popen, deadline: float) -> bool:
    """Whether the child and (POSIX) every process of its group have ended by ``deadline`` (time.monotonic)."""
    while True:
        if process.poll() is not None:
            if os.name == "nt":
                return True
            try:
                os.killpg(process.pid, 0)  # any process left in the child's group (an exited one not yet reaped too)
            except ProcessLookupError:
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _death_sentence(code: int | None, last_line: str = "") -> str:
    """One sentence for a child that stopped by itself with exit code ``code`` (negative: a signal);
    ``last_line``, its last line on stderr, says why when it exited with an error (or that the interpreter
    behind the PythonSlicer launcher died by a signal)."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = {"SIGKILL": ", often the system running out of memory", "SIGSEGV": ", a crash in native code"}
        cause = f"was killed by {name}{why.get(name, '')}"
    elif LAUNCHER_CRASH_LINE.match(last_line):  # behind PythonSlicer: the signal is not passed on
        cause = "was killed or crashed, often the system running out of memory"
    else:
        cause = f"exited with code {code}" + (f" ({last_line.rstrip('.')[:200]})" if last_line else "")
    return f"The SegNets worker process {cause}; nothing was written, and the next job starts a fresh worker."


def _end(process: subprocess.Popen, force: bool) -> None:
    """Terminate (SIGTERM: the child unwinds its job) or, with ``force``, kill the child and every process it
    started. Inside Slicer the child is PythonSlicer, a launcher (CTKAppLauncher) that runs the interpreter as a
    process of its own and forwards no signal: ending the launcher alone would leave the interpreter running
    with its model. The child leads its own process group (POSIX) or is ended with its tree (Windows)."""
    if os.name == "nt":
        subprocess.run(["taskkill", "/T", *(["/F"] if force else []), "/PID", str(process.pid)], capture_output=True)
        if force:
            process.kill()
        return
    try:
        os.killpg(process.pid, signal.SIGKILL if force else signal.SIGTERM)
    except ProcessLookupError:  # the group is gone already
        pass
