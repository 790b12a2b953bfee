"""The worker child process as the Slicer panel uses it: progress while the caller holds the GIL, cancel
within 2 s with nothing written, a killed child reported in one sentence, the model kept warm.

The GIL test is why the panel's model work left the thread: inside Slicer the main thread holds the
GIL while Qt's event loop runs, which the test imitates with libc's ``sleep`` called through
``ctypes.PyDLL`` (a PyDLL call keeps the GIL). The thread worker is run through the same test and
must fail it: its training loop cannot take one step meanwhile.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("slicer")

from SegNetsLib import mrml as bridge  # noqa: E402
from SegNetsLib.app.logic import SegmentationLogic  # noqa: E402
from SegNetsLib.app.process_worker import CANCEL_GRACE_S, ProcessWorker  # noqa: E402
from SegNetsLib.app.selftest import add_tiny_model, load_case  # noqa: E402
from SegNetsLib.app.worker import JobState, ThreadWorker, WorkerError  # noqa: E402
from SegNetsLib.core.volume import Volume  # noqa: E402
from SegNetsLib.models.library import ModelLibrary  # noqa: E402

CANCEL_LIMIT_S = 2.0
HOLD_S = 3
posix_only = pytest.mark.skipif(os.name == "nt", reason="libc sleep through ctypes.PyDLL and SIGKILL are POSIX")


@pytest.fixture(scope="module")
def worker():
    worker = ProcessWorker()
    yield worker
    worker.shutdown()


@pytest.fixture
def library(tmp_path) -> ModelLibrary:
    library = ModelLibrary(tmp_path / "models")
    add_tiny_model(library, "all-liver", foreground_bias=20.0, patch_size=(16, 32, 32))
    return library


@pytest.fixture
def painted(mrml, data_dir):
    """(volume node, annotation node, segment id): the self-test CT with "liver" painted on 2 axial slices."""
    import slicer.util

    image, reference = load_case(data_dir)
    volume_node = bridge.volume_node_from_volume(mrml.scene, image, "CT")
    mask = np.zeros(image.shape_kji, np.uint8)
    mask[[10, 20]] = reference[[10, 20]]
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "annotation")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segment_id = node.GetSegmentation().AddEmptySegment("", "liver", [0.1, 0.8, 0.2])
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, node, segment_id, volume_node)
    return volume_node, node, segment_id


@pytest.fixture
def large_ct(mrml, data_dir):
    """The self-test CT at 1 mm (each voxel repeated 3 x 3 x 3): a Segment that runs for seconds."""
    image, _ = load_case(data_dir)
    array = image.array.repeat(3, axis=0).repeat(3, axis=1).repeat(3, axis=2)
    volume = Volume(array, tuple(s / 3 for s in image.spacing), image.origin, image.direction)
    return bridge.volume_node_from_volume(mrml.scene, volume, "CT 1 mm")


def _nodes(scene) -> Counter:
    names = Counter(scene.GetNthNode(i).GetClassName() for i in range(scene.GetNumberOfNodes()))
    names.pop("vtkMRMLSubjectHierarchyNode", None)
    return names


def _start_training(logic, painted):
    """A fine-tune from the library model with a long budget; returns the job once it reports iterations."""
    volume_node, annotation, segment_id = painted
    job = logic.start_finetune(volume_node, annotation, [segment_id], "all-liver", 120.0, device="cpu")
    deadline = time.monotonic() + 120
    while job.progress().extra.get("iteration", 0) < 2:
        assert not job.done, f"the fine-tune ended before training: {job.state}"
        assert time.monotonic() < deadline, "no training iteration within 120 s"
        job.wait(0.05)
    return job


def _cancel_and_time(job) -> float:
    began = time.monotonic()
    job.cancel()
    job.wait(10)
    return time.monotonic() - began


def _start_segmenting(logic, volume_node):
    """A Segment of ``volume_node``; returns the job once its sliding windows run."""
    job = logic.start_segment(volume_node, "all-liver", device="cpu", roi="off")
    deadline = time.monotonic() + 120
    while job.progress().stage != "segmenting" or job.progress().fraction <= 0.2:
        assert not job.done, f"Segment ended before its windows were seen: {job.state}"
        assert time.monotonic() < deadline, "Segment did not start within 120 s"
        job.wait(0.02)
    return job


@posix_only
@pytest.mark.parametrize(
    "kind",
    [
        "process",
        pytest.param(
            "thread",
            marks=pytest.mark.xfail(
                strict=True, reason="a thread worker cannot run while the caller holds the GIL (Slicer's main thread)"
            ),
        ),
    ],
)
def test_segment_advances_while_the_main_thread_holds_the_gil(kind, request, mrml, library, large_ct):
    """About 13 s of sliding windows; the main thread holds the GIL for 3 s of them, then cancels."""
    worker = request.getfixturevalue("worker") if kind == "process" else ThreadWorker()
    logic = SegmentationLogic(mrml.scene, library, worker)
    job = _start_segmenting(logic, large_ct)
    try:
        before = job.progress().fraction
        ctypes.PyDLL(None).sleep(HOLD_S)  # libc sleep through PyDLL: the GIL stays held, as in Slicer's event loop
        after = job.progress().fraction
        assert after >= before + 0.01, f"progress {before:.3f} -> {after:.3f} while the GIL was held {HOLD_S} s"
    finally:
        seconds = _cancel_and_time(job)
        if kind == "thread":
            worker.shutdown()
    assert seconds < CANCEL_LIMIT_S, f"cancel mid-segment took {seconds:.2f} s"


def test_cancel_mid_finetune_returns_within_2_s_and_saves_nothing(mrml, worker, library, painted):
    logic = SegmentationLogic(mrml.scene, library, worker)
    nodes_before = _nodes(mrml.scene)
    job = _start_training(logic, painted)
    seconds = _cancel_and_time(job)
    assert seconds < CANCEL_LIMIT_S, f"cancel took {seconds:.2f} s"
    assert job.state is JobState.CANCELLED
    assert logic.finish_finetune(job) is None
    assert library.versions("all-liver") == ["1.0.0"]
    assert _nodes(mrml.scene) == nodes_before
    assert not any(worker._private_root().glob("job-*")), "the cancelled job's files are removed"


def test_cancel_mid_segment_returns_within_2_s_and_creates_nothing(mrml, worker, library, large_ct):
    logic = SegmentationLogic(mrml.scene, library, worker)
    nodes_before = _nodes(mrml.scene)
    job = _start_segmenting(logic, large_ct)
    seconds = _cancel_and_time(job)
    assert seconds < CANCEL_LIMIT_S, f"cancel took {seconds:.2f} s"
    assert logic.finish_segment(job) is None
    assert _nodes(mrml.scene) == nodes_before
    assert worker.pid is not None, "a cancel the child answered keeps the warm child"
    assert not any(worker._private_root().glob("job-*")), "the cancelled job's files are removed"


def test_an_unanswered_cancel_terminates_the_child_within_2_s(mrml, worker, library, large_ct):
    logic = SegmentationLogic(mrml.scene, library, worker)
    job = _start_segmenting(logic, large_ct)
    first, starts = worker.pid, worker.starts
    worker.cancel_grace_s = 0.0  # as if the child were stuck in one long operation
    try:
        assert _cancel_and_time(job) < CANCEL_LIMIT_S and job.cancelled
    finally:
        worker.cancel_grace_s = CANCEL_GRACE_S
    assert worker.pid is None, "the child that did not answer was terminated"
    job = worker.submit("hello")
    assert job.wait(120) and job.result()["pid"] != first and worker.starts == starts + 1


def _running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie waiting to be reaped counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_terminated_child_behind_a_launcher_leaves_no_interpreter_running(mrml, library, large_ct, tmp_path):
    """Inside Slicer the child is PythonSlicer, a launcher that runs the interpreter as a process of its own and
    forwards no signal (CTKAppLauncher): terminating the launcher alone left the interpreter segmenting on."""
    launcher = tmp_path / "PythonSlicer"
    launcher.write_text(f'#!/bin/sh\n"{sys.executable}" "$@"\n')  # like the launcher: a child, no exec
    launcher.chmod(0o755)
    worker = ProcessWorker(python=str(launcher), cancel_grace_s=0.0)  # every cancel terminates the child
    try:
        hello = worker.submit("hello")
        assert hello.wait(120)
        interpreter = hello.result()["pid"]
        assert interpreter != worker.pid and _running(interpreter)
        job = _start_segmenting(SegmentationLogic(mrml.scene, library, worker), large_ct)
        job.cancel()
        assert job.wait(10) and job.cancelled and worker.pid is None
        deadline = time.monotonic() + 2.0  # a signal takes effect when the process is next scheduled
        while _running(interpreter) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not _running(interpreter), "the interpreter behind the launcher still runs"
    finally:
        worker.shutdown()


def test_cancelling_a_queued_job_leaves_the_running_one_in_its_child(mrml, worker, library, large_ct):
    logic = SegmentationLogic(mrml.scene, library, worker)
    running = _start_segmenting(logic, large_ct)
    pid, starts = worker.pid, worker.starts
    queued = worker.submit("hello")
    assert _cancel_and_time(queued) < CANCEL_LIMIT_S and queued.state is JobState.CANCELLED
    assert running.wait(120) and running.state is JobState.DONE
    assert worker.pid == pid and worker.starts == starts, "the running job's child was not stopped"
    assert logic.finish_segment(running).segmentation_node is not None


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
def test_a_killed_child_is_one_clear_error_and_the_next_job_succeeds(mrml, worker, library, painted, large_ct):
    logic = SegmentationLogic(mrml.scene, library, worker)
    nodes_before = _nodes(mrml.scene)
    job = _start_segmenting(logic, large_ct)
    starts = worker.starts  # read once the child runs: a fresh worker starts its first child on the first job
    os.kill(worker.pid, signal.SIGKILL)  # what the kernel's out-of-memory killer does
    assert job.wait(10)
    assert job.state is JobState.FAILED
    with pytest.raises(WorkerError) as error:
        logic.finish_segment(job)
    message = str(error.value)
    assert "killed by SIGKILL" in message and "nothing was written" in message
    assert message.count(".") == 1 and "\n" not in message, "one sentence"
    assert _nodes(mrml.scene) == nodes_before
    assert not any(worker._private_root().glob("job-*")), "the dead job's files are removed"

    job = logic.start_segment(painted[0], "all-liver", device="cpu", roi="off")
    assert job.wait(120)
    assert logic.finish_segment(job).segmentation_node is not None, "the next job runs in a fresh child"
    assert worker.starts == starts + 1


def test_the_model_stays_loaded_between_jobs_and_a_changed_model_reloads(mrml, worker, library, painted):
    volume_node = painted[0]
    other = add_tiny_model(library, "other-liver", foreground_bias=20.0, patch_size=(16, 32, 32))
    logic = SegmentationLogic(mrml.scene, library, worker)

    def loaded() -> dict:
        job = worker.submit("hello")
        assert job.wait(60)
        return job.result()

    pid = worker.pid or loaded()["pid"]
    for model in ("all-liver", "all-liver", "other-liver"):
        job = logic.start_segment(volume_node, model, device="cpu", roi="off")
        assert job.wait(120)
        assert logic.finish_segment(job).segmentation_node is not None
        info = loaded()
        assert info["model"] == {"path": str(logic.model_path(model)), "device": "cpu"}
    assert info["pid"] == pid, "one warm child served every job"
    assert info["model"]["path"] == str(other.path)
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))


def test_errors_in_the_child_reach_the_caller_as_one_sentence(mrml, worker, library, painted, tmp_path):
    volume_node = painted[0]
    logic = SegmentationLogic(mrml.scene, library, worker)
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "card.json").write_text("{}")
    job = logic.start_segment(volume_node, str(broken), device="cpu", roi="off")
    assert job.wait(60) and job.state is JobState.FAILED
    with pytest.raises(Exception) as error:
        logic.finish_segment(job)
    assert "\n" not in str(error.value) and str(error.value)
    assert worker.submit("hello").wait(30), "the child lives on after a failed job"


def test_a_worker_that_cannot_start_is_one_sentence(tmp_path):
    worker = ProcessWorker(python=str(tmp_path / "no-such-python"))
    try:
        with pytest.raises(WorkerError, match="could not start with .*no-such-python"):
            worker.submit("hello")
        assert not any(worker._private_root().glob("job-*"))
    finally:
        worker.shutdown()


@posix_only
def test_a_child_that_exits_at_start_says_why(tmp_path):
    """A Python without torch, say: its last line on stderr becomes part of the one sentence."""
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n")
    python.chmod(0o755)
    worker = ProcessWorker(python=str(python))
    try:
        job = worker.submit("hello")
        assert job.wait(30) and job.state is JobState.FAILED
        with pytest.raises(WorkerError, match=r"exited with code 1 \(ModuleNotFoundError: No module named 'torch'\)"):
            job.result()
    finally:
        worker.shutdown()


@posix_only
def test_an_interpreter_killed_behind_the_launcher_is_reported_as_killed_not_as_exit_code_1(tmp_path):
    """Inside Slicer the child is PythonSlicer (CTKAppLauncher): when the out-of-memory killer ends its interpreter,
    the launcher prints "error: [<interpreter>] exit abnormally - Report the problem." and exits 1 (ctkAppLauncher.cpp,
    applicationFinished on QProcess::CrashExit); this stand-in launcher does the same."""
    launcher = tmp_path / "PythonSlicer"
    launcher.write_text(
        f"#!{sys.executable}\nimport subprocess, sys\ncode = subprocess.call([{sys.executable!r}, *sys.argv[1:]])\n"
        "if code < 0:\n"
        "    print(f'error: [{sys.argv[0]}-real] exit abnormally - Report the problem.', file=sys.stderr)\n"
        "    sys.exit(1)\nsys.exit(code)\n"
    )
    launcher.chmod(0o755)
    worker = ProcessWorker(python=str(launcher))
    try:
        hello = worker.submit("hello")
        assert hello.wait(120)
        interpreter = hello.result()["pid"]
        os.kill(interpreter, signal.SIGSTOP)  # busy, so the next job is in flight when it dies
        job = worker.submit("hello")
        os.kill(interpreter, signal.SIGKILL)
        assert job.wait(30) and job.state is JobState.FAILED
        with pytest.raises(WorkerError) as error:
            job.result()
        message = str(error.value)
        assert "was killed or crashed, often the system running out of memory" in message, message
        assert "Report the problem" not in message and "code 1" not in message
        assert message.count(".") == 1 and "\n" not in message, "one sentence"
    finally:
        worker.shutdown()
