"""Shared pytest fixtures: test data paths, a real MRML scene (slicer-core), temporary model libraries."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTING_DIR = Path(__file__).parent
sys.path.insert(0, str(TESTING_DIR / "helpers"))  # shared test helpers (tests run with --import-mode=importlib)
DATA_DIR = TESTING_DIR / "Data"
SHARED_DIR = TESTING_DIR.parent.parent / "shared"  # ../shared beside the checkout; absent in a bare clone

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared/ beside the checkout; tests that need it skip cleanly when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip("../shared is not present beside this checkout")
    return SHARED_DIR


@pytest.fixture(scope="session")
def _mrml_session():
    pytest.importorskip("slicer", reason="slicer-core is not installed (pip install '.[slicer]')")
    from mrml_harness import create_harness

    return create_harness()


@pytest.fixture
def mrml(_mrml_session):
    """A real vtkMRMLScene with Slicer's module logics attached; cleared after each test."""
    yield _mrml_session
    _mrml_session.scene.Clear(False)


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread: on a loaded 2-core machine OpenMP spinning makes 2 threads several times
    slower, and one thread gives the same arithmetic in every run."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def model_library(tmp_path, monkeypatch) -> Path:
    """An empty model library folder, used through the SEGNETS_MODELS environment variable."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("SEGNETS_MODELS", str(folder))
    return folder
