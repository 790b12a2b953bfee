"""SegNets Web's panel actions on a real worker and a real MRML scene, without a browser."""

from __future__ import annotations

import types

import pytest

from SegNetsLib.models.library import ModelLibrary


def test_a_failed_finetune_leaves_no_loss_curve_on_the_page(mrml, tmp_path):
    pytest.importorskip("trame_slicer")
    from SegNetsLib.app.logic import SegmentationLogic
    from SegNetsLib.app.worker import ThreadWorker
    from SegNetsLib.web.actions import PanelActions
    from SegNetsLib.web.state import PanelState

    worker = ThreadWorker("test worker")
    job = worker.submit("finetune", description="Fine-tune")  # no volume: the task itself fails
    assert job.wait(30)
    actions = PanelActions.__new__(PanelActions)  # the page's server is not needed to finish a job
    actions._panel = types.SimpleNamespace(
        data=PanelState(busy=True, job_kind="finetune", losses=[0.9, 0.5], iteration=2, validation_dice=0.7)
    )
    actions.logic = SegmentationLogic(mrml.scene, library=ModelLibrary(tmp_path), worker=worker)
    actions._finish(job, "finetune")
    worker.shutdown()
    page = actions.data
    assert page.error.startswith("Finetune failed") and not page.busy
    assert (page.losses, page.iteration, page.validation_dice) == ([], 0, None)
