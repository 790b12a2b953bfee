"""What a field of SegNets Web shows is what the server holds, in a real browser (Debian's Chromium, Playwright).

A click of Segment or Fine-tune sends the fields it reads with it; the server must not push them back to the page,
where they could arrive after the user typed again and replace the newer value (the page then sends it as the user's).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from web_helpers import WebServer

STEP_TIMEOUT = 240  # s; a 2-core machine shared with other work lags several seconds per action
ANNOTATED_SLICES = "PanelState__annotated_slices"  # the page's state key of PanelState.annotated_slices

# In one task of the page: type 0 s, click Fine-tune, type 30 s. The page's updates of the field go out before the
# click (whose fields, read at the click, say 0 s), as when the click waits on an answer to an earlier message: the
# server hears 30 s, then 0 s from the click.
TYPE_CLICK_TYPE = """() => {
    const input = document.querySelector('#segnets-time-budget');
    const type = (text) => { input.value = text; input.dispatchEvent(new Event('input', {bubbles: true})); };
    type('0');
    document.querySelector('#segnets-finetune').click();
    type('30');
}"""


@pytest.fixture
def server(tmp_path, data_dir):
    """``segnets web --data`` a CT crop, with a tiny model library (the Fine-tune button needs a model)."""
    from SegNetsLib.app.selftest import add_tiny_model, load_case
    from SegNetsLib.imageio.volumes import write_volume
    from SegNetsLib.models.library import ModelLibrary

    image, _liver = load_case(data_dir)
    path = write_volume(image, tmp_path / "ct_crop.nii.gz")
    library = ModelLibrary(tmp_path / "models")
    add_tiny_model(library, "web-tiny")
    server = WebServer(
        tmp_path / "server.log",
        env={"SEGNETS_MODELS": str(library.root), "OMP_NUM_THREADS": "1"},
        extra_args=["--data", str(Path(path))],
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()  # by its process id, even when the test failed


@pytest.mark.web
def test_a_budget_typed_after_a_click_is_not_replaced_by_the_one_the_click_sent(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(server.url)
    page.wait_for_selector("#segnets-segment")
    server.wait_for(lambda s: s["volume"] and s["model_key"], STEP_TIMEOUT, "the --data volume and a model")
    # The button wants a painted slice; the server then refuses the click (nothing painted), which is all this needs.
    page.evaluate("([name, value]) => window.trame.state.set(name, value)", [ANNOTATED_SLICES, 1])
    page.wait_for_selector("#segnets-finetune:not([disabled])")

    page.evaluate(TYPE_CLICK_TYPE)

    # The server's answer reaches the page in one message with anything the click made it push.
    page.wait_for_selector("#segnets-error:has-text('Nothing is painted')", timeout=STEP_TIMEOUT * 1000)
    assert page.input_value("#segnets-time-budget") == "30", "the field lost the 30 s typed after the click"
    page.click("#segnets-finetune")  # what the field shows is what the next click uses
    server.wait_for(lambda s: s["time_budget_s"] == 30, STEP_TIMEOUT, "the server to hold the 30 s shown")
