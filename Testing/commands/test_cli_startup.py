"""The ``segnets`` command line builds its parser (and prints --help) without importing heavy libraries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "monai", "SimpleITK")


def test_build_parser_imports_no_heavy_library():
    code = (
        "import sys\n"
        "import SegNetsLib.cli\n"
        "SegNetsLib.cli.build_parser()\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"building the parser imported {result.stdout.strip()}"
