"""The wheel that ``pip install`` builds holds everything the installed ``segnets`` reads at run time, and the license.

The wheel is built from a copy of the files pyproject.toml packages, with the setuptools of this environment, so no
network is needed and nothing is written into the repository.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LICENSE = "LICENSE.txt"
NOT_RUNTIME = {".md"}  # SegNetsLib/README.md is for developers; nothing reads it


def build_wheel(tmp_path: Path) -> zipfile.ZipFile:
    pytest.importorskip("setuptools")
    source, out = tmp_path / "source", tmp_path / "dist"
    shutil.copytree(ROOT / "SegNetsLib", source / "SegNetsLib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", LICENSE):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, source / name)
    code = "import sys\nfrom setuptools import build_meta\nprint(build_meta.build_wheel(sys.argv[1]))"
    result = subprocess.run(
        [sys.executable, "-c", code, str(out)], cwd=source, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return zipfile.ZipFile(out / result.stdout.strip().splitlines()[-1])


def test_the_wheel_holds_every_module_and_data_file_of_the_library_and_the_license(tmp_path):
    wheel = build_wheel(tmp_path)
    names = set(wheel.namelist())
    library = [p for p in (ROOT / "SegNetsLib").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    expected = {p.relative_to(ROOT).as_posix() for p in library if p.suffix not in NOT_RUNTIME}
    assert "SegNetsLib/card/card.schema.json" in expected
    assert expected - names == set(), "files the installed library needs are missing from the wheel"
    licenses = [n for n in names if ".dist-info/licenses/" in n]
    assert [Path(n).name for n in licenses] == [LICENSE], f"license files in the wheel: {licenses}"
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    text = wheel.read(metadata).decode()
    assert "License-Expression: Apache-2.0" in text
    assert f"License-File: {LICENSE}" in text
