"""SegNets Web while a job runs, as several people use one server: the whole app on a real scene and worker,
driven from Python on an asyncio loop as the server's event loop drives it (no browser)."""

from __future__ import annotations

import asyncio
import re

import pytest

from SegNetsLib.models.library import ModelLibrary


@pytest.fixture
def web_app(tmp_path, monkeypatch, data_dir):
    """A SegNetsWebApp (not serving) whose library holds a tiny liver model; the 30 x 64 x 64 CT crop's path."""
    pytest.importorskip("trame_slicer")
    from trame.app import get_server

    from SegNetsLib.app.selftest import add_tiny_model, load_case
    from SegNetsLib.imageio.volumes import write_volume
    from SegNetsLib.web.app import SegNetsWebApp

    monkeypatch.setenv("SEGNETS_MODELS", str(tmp_path / "models"))
    add_tiny_model(ModelLibrary(tmp_path / "models"), "tiny")
    image, _ = load_case(data_dir)
    crop = write_volume(image, tmp_path / "crop.nii.gz")
    app = SegNetsWebApp(get_server(f"segnets-jobs-{tmp_path.name}", client_type="vue3"))
    yield app, crop
    app.actions.logic.worker.shutdown(wait=False)


def paint(actions, labels) -> None:
    """Write ``labels`` (uint8 [k, j, i] on the volume shown) into the page's annotation, as the Segment Editor does."""
    from SegNetsLib.mrml import segmentation_from_labelmap, volume_from_node

    volume = volume_from_node(actions.volume_node)
    card = actions._card(actions.data.model_key)
    segmentation_from_labelmap(
        actions.scene, volume.with_array(labels), card.labels, actions.volume_node, "Annotation",
        segmentation_node=actions.annotation_node,
    )  # fmt: skip


def paint_square(actions, slices) -> None:
    """Paint a 20 x 20 voxel square of label 1 on axial ``slices`` (an index or a list) of the volume shown."""
    import numpy as np

    from SegNetsLib.mrml import volume_from_node

    painted = np.zeros(volume_from_node(actions.volume_node).shape_kji, np.uint8)
    painted[slices, 20:40, 20:40] = 1
    paint(actions, painted)


def test_fine_tune_takes_the_budget_its_click_sent(web_app):
    """A budget typed just before Fine-tune reached the server after the click, which ran with the old one; the click
    now sends it. An emptied field (the page sends "") raised TypeError in the click's handler: the page said nothing."""

    app, crop = web_app
    actions = app.actions
    budget = actions._panel.name.time_budget_s

    async def scenario() -> list[str]:
        app._show_volume(app.loader.load_path(crop))
        paint_square(actions, 20)
        errors = []
        for typed in (0, ""):  # the server still holds the default, 60 s
            actions.finetune({budget: typed})
            assert not actions.data.busy
            errors.append(actions.data.error)
        return errors

    assert asyncio.run(scenario()) == [
        "time budget 0.0 s is not positive; give fine-tuning some seconds.",
        "time budget '' is not a number of seconds.",
    ]


def test_an_upload_after_a_segment_ends_but_before_its_result_is_shown_is_refused(web_app, data_dir):
    """The job has ended on the worker and the page has not taken its result yet: an upload in that gap
    replaced the volume (the new node got the old one's id) and the CT's result was shown on the new volume."""
    app, crop = web_app
    actions = app.actions
    other = data_dir / "ts_ct_full" / "image.nii.gz"

    async def scenario() -> None:
        app._show_volume(app.loader.load_path(crop))
        actions.segment()
        assert actions.data.busy and actions.data.error == ""
        assert actions._job.wait(120)  # ended on the worker; the page's poll has not run yet
        await app._on_upload([{"name": "other.nii.gz", "content": other.read_bytes()}])
        assert "working on the current volume" in actions.data.error
        while actions.data.busy:
            await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert actions.volume_node.GetName() == "crop", "the upload replaced the volume the job was working on"
    assert actions.data.message.startswith("Segmented 'crop'"), actions.data.message
    assert actions.result_node.GetName() == "crop Tiny test 3D U-Net"


def test_a_second_segment_after_the_first_ends_waits_until_its_result_is_shown(web_app):
    """A second click in the same gap started a job that the page then showed as finished (busy off) while it ran."""
    app, crop = web_app
    actions = app.actions

    async def scenario() -> None:
        app._show_volume(app.loader.load_path(crop))
        actions.segment()
        first = actions._job
        assert first.wait(120)
        actions.segment()  # another tab's click
        assert actions._job is first and "already running" in actions.data.error
        while actions.data.busy:
            await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert actions._job is None and not actions.busy
    assert actions.data.message.startswith("Segmented 'crop'") and actions.data.has_result
    # the page says which mode ran: RoI localization (the page's default, auto) or the whole volume
    assert re.match(r"Segmented 'crop' \((in \d+ RoI\(s\)|whole volume)\) with ", actions.data.message), (
        actions.data.message
    )


def test_a_cancelled_finetune_keeps_slice_is_empty_checked(web_app):
    """The user checked *Slice is empty* for the suggested slice, clicked Fine-tune and cancelled it: the page said
    nothing was changed and still suggested that slice, but had unchecked the box, so the next Fine-tune would not
    learn the slice as empty."""
    app, crop = web_app
    actions = app.actions

    async def scenario() -> None:
        app._show_volume(app.loader.load_path(crop))
        paint_square(actions, 20)
        actions.data.round, actions.data.suggested_slice, actions.data.suggested_axis = 1, 3, 0  # as round 1 left it
        actions.data.suggested_empty, actions.data.time_budget_s = True, 600
        actions.finetune()
        assert actions.data.busy, actions.data.error
        actions.cancel()
        while actions.data.busy:
            await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert "cancelled; nothing was changed" in actions.data.message, actions.data.message
    assert actions.data.suggested_slice == 3 and actions.data.suggested_empty, "the cancel unchecked Slice is empty"


STOP_DURING_FINETUNE = """
import asyncio, os, signal
import numpy as np
from SegNetsLib.web.rendering import configure_offscreen_rendering
configure_offscreen_rendering()
from trame.app import get_server
from SegNetsLib.commands.web import serve
from SegNetsLib.mrml import segmentation_from_labelmap, volume_from_node
from SegNetsLib.web.app import SegNetsWebApp

app = SegNetsWebApp(get_server("segnets_web", client_type="vue3"))
actions = app.actions

async def finetune_then_stop():
    with app.server.state:
        app._show_volume(app.loader.load_path({crop!r}))
        volume = volume_from_node(actions.volume_node)
        painted = np.zeros(volume.shape_kji, np.uint8)
        painted[[10, 20], 20:40, 20:40] = 1  # two painted slices, as the user paints them
        card = actions._card(actions.data.model_key)
        segmentation_from_labelmap(actions.scene, volume.with_array(painted), card.labels, actions.volume_node,
                                   "Annotation", segmentation_node=actions.annotation_node)
        actions.data.time_budget_s = 600
        actions.finetune()
    while actions._job.progress().extra.get("iteration", 0) < 1:
        await asyncio.sleep(0.1)
    print("TRAINING", repr(actions.data.error), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)  # as systemd or kill stops the server

app.server.controller.on_server_ready.add(lambda **_: asyncio.ensure_future(finetune_then_stop()))
serve(app, "127.0.0.1", 0)
print("STOPPED", flush=True)
"""


def test_the_server_stopped_during_a_finetune_exits_cleanly_and_saves_nothing(web_app, tmp_path):
    """SIGTERM while Fine-tune trained on the worker thread: Python aborted on exit ("terminate called without
    an active exception", exit status 134) with the thread inside torch."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    _, crop = web_app
    library = tmp_path / "models"
    before = sorted(path.relative_to(library) for path in library.rglob("*"))
    env = {**os.environ, "SEGNETS_MODELS": str(library), "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[2]
    program = STOP_DURING_FINETUNE.format(crop=str(crop))
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert "TRAINING ''" in done.stdout, done.stdout + done.stderr[-3000:]
    assert done.returncode == 0 and "terminate called" not in done.stderr, done.stderr[-3000:]
    assert "STOPPED" in done.stdout
    assert sorted(path.relative_to(library) for path in library.rglob("*")) == before  # no version, no partial


def test_an_upload_says_that_the_painting_of_the_volume_shown_was_discarded(web_app, data_dir):
    """Uploading another volume cleared the painted slices without a word ("Loaded 'other'; pick a model and click
    Segment."): coming back to the first volume, its correction rounds could not go on without repainting them."""

    app, crop = web_app
    actions = app.actions
    other = data_dir / "ts_mr_sm" / "image.nii.gz"

    async def scenario() -> None:
        app._show_volume(app.loader.load_path(crop))
        paint_square(actions, [10, 20])
        await app._on_upload([{"name": "other.nii.gz", "content": other.read_bytes()}])
        assert actions.data.message.endswith("The painting of 'crop' (2 slices) was discarded with it."), (
            actions.data.message
        )
        await app._on_upload([{"name": "again.nii.gz", "content": other.read_bytes()}])  # nothing painted on 'other'
        assert actions.data.message == "Loaded 'again'; pick a model and click Segment.", actions.data.message

    asyncio.run(scenario())


def test_the_next_round_continues_from_the_result_segment_showed(web_app, data_dir):
    """After round 2 the user clicked Segment, and the page showed round 2's model's own result in place of the round's
    (which keeps round 1's result far from the slice added); the next round started from the round's result all the
    same, and Back one round showed that result, never on screen then, rather than the one the round started from."""
    import numpy as np

    from SegNetsLib.app.selftest import load_case
    from SegNetsLib.mrml import annotation_from_segmentation

    app, crop = web_app
    actions = app.actions
    _, liver = load_case(data_dir)
    present = np.flatnonzero(liver.any(axis=(1, 2)))
    below, middle, upper, above = (int(present[round(q * (len(present) - 1))]) for q in (0.25, 0.5, 0.62, 0.75))

    def paint_liver(slices: list[int]) -> None:
        painted = np.zeros_like(liver)
        painted[slices] = liver[slices]
        paint(actions, painted)

    def shown() -> np.ndarray:
        node = actions.result_node
        ids = [node.GetSegmentation().GetNthSegmentID(i) for i in range(node.GetSegmentation().GetNumberOfSegments())]
        return annotation_from_segmentation(node, ids, actions.volume_node)[0].array > 0

    async def run(action) -> np.ndarray:
        action()
        assert actions.data.busy, actions.data.error
        while actions.data.busy:
            await asyncio.sleep(0.05)
        assert not actions.data.error, actions.data.error
        return shown()

    async def scenario() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        app._show_volume(app.loader.load_path(crop))
        actions.data.time_budget_s = 10
        for slices in ([below, above], [below, middle, above]):
            paint_liver(slices)
            round_2 = await run(actions.finetune)
        assert actions.data.round == 2, actions.data.message
        segmented = await run(actions.segment)  # round 2's model alone, without the round's local update
        paint_liver([below, middle, upper, above])
        await run(actions.finetune)
        assert actions.data.round == 3, actions.data.message
        actions.back_one_round()
        assert actions.data.round == 2, actions.data.message
        return round_2, segmented, shown()

    round_2, segmented, back = asyncio.run(scenario())
    assert not np.array_equal(segmented, round_2), "Segment showed round 2's result again"
    assert np.array_equal(back, segmented), "Back one round did not show the result round 3 started from"
