"""Ctrl-C and SIGTERM stop SegNets/Scripts/segnets_batch.py (its own process, slicer-core) with one line and exit
code 130 or 143, leaving no half-written file, wherever they land (inputs and library: conftest.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("slicer")

SCRIPT = Path(__file__).resolve().parents[2] / "SegNets" / "Scripts" / "segnets_batch.py"


@pytest.mark.parametrize(("stop", "code", "said"), [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_a_stopped_batch_says_so_and_leaves_only_whole_files(inputs, library, tmp_path, stop, code, said):
    """Ctrl-C printed 'error: KeyboardInterrupt: ' and exited 1; kill ended it with no word (and no clean-up)."""
    output = tmp_path / "out"
    arguments = [sys.executable, str(SCRIPT), "--input", str(inputs), "--model", "all-liver", "--output", str(output)]
    arguments += ["--device", "cpu", "--roi", "off", "--library", str(library.root)]
    process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in process.stdout:  # broken.nii.gz fails at once; then ct_a.nii.gz's model work reports progress
            lines.append(line)
            if line.startswith("  ct_a.nii.gz: "):
                break
        process.send_signal(getattr(signal, stop))
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert lines[-1].startswith("  ct_a.nii.gz: "), (lines, err)  # stopped while the first volume was under way
    assert process.returncode == code, err
    assert f"segnets_batch: {said}; no file was left half-written." in err.splitlines(), err
    assert all(p.name.endswith(".seg.nrrd") and not p.name.startswith(".") for p in output.iterdir())


# Runs the batch script and, at the first VTK module it imports, sends itself the signal named by argv[1] ("none":
# none) from inside VTK's module initialisation (on_vtk_module_init, a Python function VTK's C code calls while it
# imports a module); reports on stderr each VTK module first imported while a volume is under way.
WATCH_VTK_IMPORTS = """
import os, runpy, signal, sys, traceback
import vtkmodules

stop, initialise = sys.argv[1], vtkmodules.on_vtk_module_init


def initialise_and_watch(module_name):
    global stop
    if any(frame.name == "segment_file" for frame in traceback.extract_stack()):
        print(f"VTK module imported during a volume: {module_name}", file=sys.stderr, flush=True)
    if stop != "none":
        os.kill(os.getpid(), getattr(signal, stop))
        stop = "none"
    return initialise(module_name)


vtkmodules.on_vtk_module_init = initialise_and_watch
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _watched_batch(stop: str, inputs: Path, library, output: Path) -> subprocess.CompletedProcess:
    arguments = [sys.executable, "-c", WATCH_VTK_IMPORTS, stop, str(SCRIPT), "--input", str(inputs)]
    arguments += ["--model", "all-liver", "--output", str(output), "--device", "cpu", "--roi", "off"]
    return subprocess.run([*arguments, "--library", str(library.root)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("stop", "code", "said"), [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_a_stop_while_vtk_is_imported_says_so_instead_of_crashing(inputs, library, tmp_path, stop, code, said):
    """Ctrl-C or kill while VTK's modules were imported ended the batch with a segmentation fault (-11): VTK's C
    code does not survive an exception raised inside its module initialisation."""
    completed = _watched_batch(stop, inputs, library, tmp_path / "out")
    assert completed.returncode == code, completed.stderr[-3000:]
    assert f"segnets_batch: {said}; no file was left half-written." in completed.stderr.splitlines()
    assert not (tmp_path / "out").exists(), "stopped before the first volume"


def test_no_vtk_module_is_imported_while_a_volume_is_under_way(inputs, library, tmp_path):
    """The first volume's loading imported some 200 VTK modules (slicer.util.arrayFromVolume's 'import vtk'): a
    Ctrl-C then crashed the batch (the test above). They are imported with the scene, with stops held."""
    completed = _watched_batch("none", inputs / "ct_a.nii.gz", library, tmp_path / "out")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "VTK module imported during a volume" not in completed.stderr, completed.stderr[-3000:]
