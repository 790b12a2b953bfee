"""``segnets`` stopped by a signal as a real program: one line, its exit status, nothing half-written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from SegNetsLib.core.volume import Volume
from SegNetsLib.imageio.volumes import write_volume

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM ends a Windows process without running any handler")
def test_sigterm_mid_finetune_says_so_in_one_line_and_leaves_no_file(tmp_path):
    rng = np.random.default_rng(0)
    image = Volume(rng.normal(size=(12, 24, 24)).astype(np.float32), spacing=(2, 2, 2))
    labels = np.zeros((12, 24, 24), np.uint8)
    labels[3, 6:16, 6:16] = labels[8, 8:18, 6:16] = 1
    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, "-m", "SegNetsLib.cli", "finetune", "--device", "cpu", "--time-limit", "60"]
    command += ["--input", str(write_volume(image, tmp_path / "image.nii.gz"))]
    command += ["--annotations", str(write_volume(image.with_array(labels), tmp_path / "ann.nii.gz"))]
    command += ["--output", str(out / "seg.seg.nrrd")]
    env = dict(os.environ, SEGNETS_MODELS=str(tmp_path / "lib"), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stderr:  # progress lines, one per step
        lines.append(line.rstrip("\n"))
        if "training: iteration" in line:
            process.send_signal(signal.SIGTERM)
            break
    started = time.monotonic()
    lines += process.stderr.read().splitlines()
    code = process.wait(timeout=60)
    assert time.monotonic() - started < 30
    assert code == 128 + signal.SIGTERM, lines
    assert lines[-1] == "segnets finetune: terminated; no file was left half-written.", lines
    assert not any("Traceback" in line for line in lines)
    assert not list(out.iterdir()) and not (tmp_path / "lib").exists()
