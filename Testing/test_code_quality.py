"""The code base keeps its shape: ruff's lint and format, the import layers, no torch under the card, small files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (pip install '.[test]')")
    return found


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_passes(args):
    result = subprocess.run([_tool("ruff"), *args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_layers_contract_is_kept():
    result = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_import_layers_name_every_subpackage_and_module_of_the_library():
    """A subpackage left out of the layers contract could import anything: every package and top-level module of
    SegNetsLib stands on one layer."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c["layers"] for c in config["contracts"] if c["type"] == "layers")
    named = {name.strip() for layer in layers for name in layer.split("|")}
    library = ROOT / "SegNetsLib"
    parts = {p.name for p in library.iterdir() if (p / "__init__.py").is_file()}
    parts |= {p.stem for p in library.glob("*.py") if p.name != "__init__.py"}
    assert {f"SegNetsLib.{part}" for part in parts} - named == set()


def test_reading_a_card_does_not_import_torch():
    code = (
        "import sys, SegNetsLib.card.card, SegNetsLib.card.schema, SegNetsLib.card.factory, SegNetsLib.core.box;"
        "print(sorted(m for m in ('torch', 'monai', 'SimpleITK') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_no_library_or_module_file_is_over_the_size_limit():
    files = [p for folder in ("SegNetsLib", "SegNets") for p in (ROOT / folder).rglob("*.py")]
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in files}
    assert {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES} == {}
