"""pyproject.toml builds with every build backend its [build-system] allows."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PEP639_SETUPTOOLS = "77.0"  # the first setuptools that reads `license = "<SPDX expression>"`; older ones refuse it


def test_the_build_requires_a_setuptools_that_reads_the_license_field():
    """An older setuptools (68 to 76, which ``setuptools>=68`` allows) stops with "`project.license` must be valid
    exactly by one definition" on a license string, so ``pip install --no-build-isolation`` fails there."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    if not isinstance(config["project"].get("license"), str):
        pytest.skip("the license is not an SPDX expression")
    (setuptools,) = [r for r in map(Requirement, config["build-system"]["requires"]) if r.name == "setuptools"]
    for older in ("68.0", "76.1.0"):
        assert not setuptools.specifier.contains(older), f"{setuptools} allows setuptools {older}"
    assert setuptools.specifier.contains(PEP639_SETUPTOOLS)


GRAD_SCALER_TORCH = "2.3"  # torch.amp.GradScaler, which training builds, is new in torch 2.3


def test_every_place_that_installs_torch_asks_for_one_that_can_train():
    """pip (pyproject.toml) and the Slicer panel (PyTorch extension's installTorch) ask for one torch range, and
    it leaves out torch 2.1 / 2.2, whose torch.amp has no GradScaler (segnets train would fail there)."""
    import ast

    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (torch,) = [r for r in map(Requirement, config["project"]["dependencies"]) if r.name == "torch"]
    source = (ROOT / "SegNets" / "SegNetsPanel" / "dependencies.py").read_text()
    (panel,) = [
        node.value.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "TORCH_REQUIREMENT"
    ]
    assert str(torch.specifier) == panel
    for older in ("2.1.0", "2.2.2"):
        assert not torch.specifier.contains(older), f"{torch} allows torch {older}"
    assert torch.specifier.contains(GRAD_SCALER_TORCH + ".0")
