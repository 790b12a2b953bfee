"""Fixtures of the fuzzing suite; the frame and the shared strategies are in Testing/helpers/fuzzing.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def workspace(tmp_path) -> Path:
    """The folder the examples' own folders go in (nothing else may appear in it)."""
    folder = tmp_path / "fuzz"
    folder.mkdir()
    return folder
