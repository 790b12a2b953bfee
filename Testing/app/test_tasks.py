"""The warm model of a worker (TaskState): kept between jobs, reloaded for another model file or device; the
warnings a task logs kept as its notes."""

from __future__ import annotations

import logging
import os
import threading

import numpy as np
import pytest

pytest.importorskip("torch")

from SegNetsLib.app.selftest import add_tiny_model  # noqa: E402
from SegNetsLib.app.tasks import TaskState, collected_warnings  # noqa: E402
from SegNetsLib.card.card import RoiSettings  # noqa: E402
from SegNetsLib.inference.locate import boxes_from_masks  # noqa: E402
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


def test_warnings_logged_during_a_segment_become_its_notes_and_no_other_threads():
    """The worker child's warnings went to its log file alone: a panel user never read that RoIs left structures
    out. What SegNetsLib warns on the job's thread inside the block is kept, in order; other threads' are not."""
    mask = np.zeros((4, 40, 40), bool)
    for index in range(12):  # twelve 2 x 2 x 2 components: the two beyond the 10 largest are left out
        y, x = 3 * (index // 4) * 4, 3 * (index % 4) * 3
        mask[1:3, y : y + 2, x : x + 2] = True
    other = threading.Thread(target=logging.getLogger("SegNetsLib.web").warning, args=("another thread's warning",))
    with collected_warnings() as warned:
        boxes_from_masks([mask], (1.0, 1.0, 1.0), mask.shape, (1.0, 1.0, 1.0), RoiSettings(padding_mm=0.0), "ct")
        other.start()
        other.join()
        logging.getLogger("SegNetsLib.models").info("an info line")
    assert len(warned) == 1 and warned[0].startswith("ct: RoI localization left out 2 component(s)")
    logging.getLogger("SegNetsLib").warning("after the block")
    assert len(warned) == 1  # the handler is gone
