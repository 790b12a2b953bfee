"""The warm model of a worker (TaskState): kept between jobs, reloaded for another model file or device."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("torch")

from SegNetsLib.app.selftest import add_tiny_model  # noqa: E402
from SegNetsLib.app.tasks import TaskState  # noqa: E402
from SegNetsLib.models.library import ModelLibrary  # noqa: E402


def test_the_model_stays_loaded_and_reloads_for_another_file_device_or_a_reimport(tmp_path):
    library = ModelLibrary(tmp_path / "models")
    first = add_tiny_model(library, "first", patch_size=(16, 32, 32)).path
    second = add_tiny_model(library, "second", patch_size=(16, 32, 32)).path
    state = TaskState()
    warm = state.predictor(first, "cpu")
    assert state.predictor(first, "cpu") is warm and state.loaded == (str(first), "cpu")
    assert state.predictor(first, "auto") is not warm, "another device reloads"
    assert state.predictor(second, "auto").card.id == "second" and state.loaded == (str(second), "auto")
    again = state.predictor(second, "auto")
    stat = os.stat(second)
    os.utime(second, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # the model was imported again
    assert state.predictor(second, "auto") is not again
    state.release()
    assert state.loaded is None
