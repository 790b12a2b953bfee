"""bench/sparse.py on a folder of one's own: volumes the project has never seen, their structures named by label
value (``folder:V`` or ``folder:V+W``), as someone measuring SegNets on their own data would run it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / "sparse.py"), "--k", "2", "--methods", "interp", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_folder_of_ones_own_is_measured_by_label_value(data_dir, tmp_path):
    own = tmp_path / "data" / "mine"
    own.mkdir(parents=True)
    for name in ("image.nii.gz", "label.nii.gz"):
        shutil.copy(data_dir / "ts_mr_sm" / name, own / name)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(own / "label.nii.gz")))
    done = _bench("--data", str(tmp_path / "data"), "--structures", "mine:2+3", "--results", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "out" / "sparse.json").read_text())
    assert [(row["structure"], row["method"], row["k"]) for row in rows] == [("mine:2+3", "interp", 2)]
    assert 0.5 < rows[0]["dice"] <= 1.0  # the two kidneys together, from 2 painted slices
    assert np.isin(labels, [2, 3]).any()

    absent = _bench("--data", str(tmp_path / "data"), "--structures", "mine:200", "--results", str(tmp_path / "o2"))
    assert absent.returncode != 0
    assert absent.stderr.strip().splitlines()[-1] == f"{own / 'label.nii.gz'}: no voxel holds label value(s) [200]."
    unknown = _bench("--data", str(tmp_path / "data"), "--structures", "mine:kidneys")
    assert unknown.returncode == 2 and "unknown structure or method 'mine:kidneys'" in unknown.stderr
