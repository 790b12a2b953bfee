"""What the panel, the web page and the batch script show of a finished job (SegNetsLib.app.outcomes)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("slicer")

from SegNetsLib import mrml as bridge  # noqa: E402
from SegNetsLib.app.logic import SegmentationLogic  # noqa: E402
from SegNetsLib.app.selftest import add_tiny_model, load_case  # noqa: E402
from SegNetsLib.app.tasks import SegmentOutput  # noqa: E402
from SegNetsLib.app.worker import Job, JobState, ThreadWorker  # noqa: E402
from SegNetsLib.models.library import ModelLibrary  # noqa: E402


def test_a_segment_jobs_notes_reach_what_the_panel_and_web_page_show(mrml, data_dir, tmp_path):
    """The worker's notes (a warning that RoIs left structures out, a device fallback) were dropped by
    finish_segment: the panel said only "Done"."""
    small_ct, _ = load_case(data_dir)
    library = ModelLibrary(tmp_path / "models")
    entry = add_tiny_model(library, "tiny", patch_size=(16, 32, 32))
    logic = SegmentationLogic(mrml.scene, library, ThreadWorker())
    try:
        volume_node = bridge.volume_node_from_volume(mrml.scene, small_ct, "CT")
        job = Job("Segment volume 'CT'")
        job.context.update(kind="segment", volume_node=volume_node)
        said = "volume 'CT': RoI localization left out 2 component(s) the coarse pass found"
        labels = small_ct.with_array(np.zeros(small_ct.shape_kji, np.uint8))
        job._finish(JobState.DONE, result=SegmentOutput(labels, [], entry.card, [said]))
        result = logic.finish_segment(job)
    finally:
        logic.worker.shutdown()
    assert result.notes == [said]
    assert result.summary("Done: CT (whole volume).") == f"Done: CT (whole volume). Note: {said}."
