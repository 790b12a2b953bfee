"""``segnets web`` on an install without the ``web`` extra says so in one line instead of a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("absent", ["trame", "trame_slicer", "slicer"])
def test_web_without_the_web_extra_is_one_line_naming_the_package_and_the_extra(absent):
    """``sys.modules[name] = None`` makes ``import name`` fail as it does where the package is not installed."""
    code = (
        "import sys\n"
        f"sys.modules[{absent!r}] = None\n"
        "from SegNetsLib.cli import main\n"
        "sys.exit(main(['web', '--port', '0']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segnets web: error: "), result.stderr
    assert repr(absent) in lines[0] and "segnets[web]" in lines[0]


def test_a_missing_module_of_segnets_itself_is_not_reported_as_a_missing_extra():
    code = (
        "import sys\n"
        "sys.modules['SegNetsLib.web.app'] = None\n"
        "from SegNetsLib.cli import main\n"
        "sys.exit(main(['web', '--port', '0']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" in result.stderr and "segnets[web]" not in result.stderr
