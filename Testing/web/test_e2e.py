"""SegNets Web end to end in a real browser: Debian's Chromium driven by Playwright.

The browser test (marker ``web``) starts ``segnets web --data FOLDER`` (a CT, a DICOM series and a broken file), uploads
a bad file (refused, nothing changes), picks the series in the page's volume selector (then the broken file: refused,
nothing changes), uploads a real CT crop, Segments with a tiny model, paints the liver on three
axial slices (plus Undo, Redo, Erase), cancels one Fine-tune and runs another, downloads the
.seg.nrrd, goes to the slice the result suggests, paints it and runs the next round, and checks what the server holds (voxel counts, Dice against the reference liver) and a
screenshot. It installs Chromium with apt-get when it is missing; every wait polls the server's state.
The unmarked tests check the server side without a browser (command line, rendering choice, loading).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from dicom_helpers import ct_crop, write_series
from scipy.ndimage import binary_erosion
from web_helpers import (
    WebServer,
    dice,
    ijk_to_ras,
    ras_to_view_xy,
    serpentine_path,
)

SCREENSHOT = Path(__file__).resolve().parents[2] / "Resources" / "Screenshots" / "web.png"
BRUSH_VOXELS = 7  # brush diameter in voxels of the test volume
ROW_STEP = 5  # voxels between the rows of a painting stroke (less than the brush, so rows overlap)
FINETUNE_SECONDS = 30
MIN_FINETUNED_DICE = 0.5  # whole-volume Dice vs the reference liver; it must also beat the untrained model's
STEP_TIMEOUT = 240  # s; a 2-core machine shared with other work lags several seconds per action


@pytest.fixture
def case(tmp_path, data_dir):
    """A 30 x 64 x 64 CT crop around the liver as a NIfTI file, its reference liver and a tiny model library; the
    --data folder holding that file (listed first), a 16 x 32 x 32 DICOM series and a broken .nii.gz."""
    from SegNetsLib.app.selftest import LIVER, add_tiny_model, load_case
    from SegNetsLib.imageio.volumes import write_volume
    from SegNetsLib.models.library import ModelLibrary

    image, liver = load_case(data_dir)
    data = tmp_path / "data"
    path = write_volume(image, data / "ct_crop.nii.gz")
    write_series(ct_crop(data_dir / "ts_ct_sm" / "image.nii.gz"), data, names="slice{:03d}")
    (data / "zz_broken.nii.gz").write_bytes(b"cut short")
    library = ModelLibrary(tmp_path / "models")
    entry = add_tiny_model(library, "web-tiny")
    return {
        "image": Path(path), "data": data, "liver": liver, "library": library.root, "model": entry,
        "segment": LIVER.name,
    }  # fmt: skip


@pytest.fixture
def server(tmp_path, case):
    server = WebServer(
        tmp_path / "server.log",
        env={"SEGNETS_MODELS": str(case["library"]), "OMP_NUM_THREADS": "2"},
        extra_args=["--data", str(case["data"])],
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()  # by its process id, even when the test failed


class Clock:
    """Seconds spent in each phase, for the test's printed summary."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def mark(self, phase: str) -> None:
        now = time.monotonic()
        self.laps[phase] = round(now - self._last, 1)
        self._last = now


def view_index(page, dimensions) -> int:
    """Index, among the view images, of the one whose size is ``dimensions`` pixels."""
    return page.evaluate(
        """([w, h]) => Array.from(document.querySelectorAll('img.image-display-area')).findIndex(img => {
            const r = img.getBoundingClientRect();
            return Math.round(r.width) === w && Math.round(r.height) === h;
        })""",
        dimensions[:2],
    )


def next_frame(page, view, move) -> None:
    """Do ``move`` (a mouse action), then wait until the view shows a new frame (the server handled it).

    The remote view sends the next mouse event only once the previous one is handled, so a drag
    faster than the server loses its corners; pacing each step on a new frame keeps every point.
    """
    before = view.get_attribute("src")
    move()
    try:
        page.wait_for_function("([img, src]) => img.src !== src", arg=[view.element_handle(), before], timeout=15000)
    except Exception:  # noqa: BLE001 - a step that needed no new frame; the stroke goes on
        pass


def drag_through(page, view, points) -> None:
    """A left-button drag through ``points`` (page pixels), one server-acknowledged step at a time."""
    next_frame(page, view, lambda: page.mouse.move(*points[0]))
    next_frame(page, view, page.mouse.down)
    for point in points[1:]:
        next_frame(page, view, lambda point=point: page.mouse.move(*point))
    page.mouse.up()


def download_result(page, path: Path) -> np.ndarray:
    """Click Download, save the .seg.nrrd and return its labelmap [k, j, i]."""
    from SegNetsLib.imageio.segmentations import read_labelmap

    with page.expect_download() as download_info:
        page.click("#segnets-download")
    download_info.value.save_as(path)
    return read_labelmap(path).array


def set_state(page, name: str, value) -> None:
    """Set a trame state value from the page, as its slider would."""
    page.evaluate("([name, value]) => window.trame.state.set(name, value)", [name, value])


def erase_through(page, server, k: int, mask_ji: np.ndarray) -> None:
    """Drag the active effect along the (single-row) mask on the shown axial slice ``k``."""
    status = server.status()
    volume, axial = status["volume"], status["views"]["axial"]
    view = page.locator("img.image-display-area").nth(view_index(page, axial["dimensions"]))
    ijk = np.array([[i, j, k] for i, j in serpentine_path(mask_ji, 1)], dtype=float)
    drag_through(page, view, page_points(view, axial, ras_to_view_xy(axial, ijk_to_ras(volume, ijk))))


def page_points(view, axial: dict, xy: np.ndarray) -> list[tuple[float, float]]:
    """Slice-view pixels (origin bottom-left) -> page coordinates on the view's image."""
    box = view.bounding_box()
    width, height = axial["dimensions"][:2]
    return [(box["x"] + x * box["width"] / width, box["y"] + (height - y) * box["height"] / height) for x, y in xy]


def paint_slice(page, server, k: int, mask_ji: np.ndarray, row_step: int) -> dict:
    """Show axial slice ``k`` and paint ``mask_ji`` there with one serpentine drag; return the new status."""
    status = server.status()
    volume, axial = status["volume"], status["views"]["axial"]
    z = ijk_to_ras(volume, np.array([[0, 0, k]]))[0, 2]
    set_state(page, axial["slider_state"], z)
    status = server.wait_for(
        lambda s: abs(s["views"]["axial"]["slice_value"] - z) < 1e-3, STEP_TIMEOUT, f"axial slice {k}"
    )
    axial = status["views"]["axial"]
    index = view_index(page, axial["dimensions"])
    assert index >= 0, "the axial view is not on the page"
    view = page.locator("img.image-display-area").nth(index)
    ijk = np.array([[i, j, k] for i, j in serpentine_path(mask_ji, row_step)], dtype=float)
    points = page_points(view, axial, ras_to_view_xy(axial, ijk_to_ras(volume, ijk)))
    painted = status["annotation"]["slices"]["0"]
    drag_through(page, view, points)
    return server.wait_for(
        lambda s: k in s["annotation"]["slices"]["0"] and s["annotation"]["slices"]["0"] != painted,
        STEP_TIMEOUT,
        f"the stroke on slice {k}",
    )


DATA_VOLUME = ".v-select:has(#segnets-data-volume)"  # the selector (its id is on the input inside)


def pick_data_volume(page, name: str) -> None:
    """Open the --data folder's volume selector and click the volume listed as ``name`` (the start of it is enough)."""
    page.locator(f"{DATA_VOLUME} .v-field").click()
    page.get_by_role("option", name=name).click()
    page.wait_for_selector("[role=listbox]", state="hidden")


def assert_ids_unique(page) -> None:
    """Every id on the page names one element (the brush slider's id was on its label and its input both)."""
    ids = page.evaluate("() => Array.from(document.querySelectorAll('[id]'), element => element.id)")
    repeated = sorted({name for name in ids if ids.count(name) > 1})
    assert not repeated, f"ids on more than one element: {repeated}"


@pytest.mark.web
def test_upload_segment_paint_finetune_download(browser, server, case, tmp_path):
    clock = Clock()
    liver, segment = case["liver"], case["segment"]
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(STEP_TIMEOUT * 1000)
    page.goto(server.url)
    page.wait_for_selector("#segnets-segment")
    upload = page.locator("input[type=file]").first

    # --data is loaded once the browser is there.
    status = server.wait_for(lambda s: s["volume"], STEP_TIMEOUT, "the --data volume")
    assert status["volume"]["name"] == "ct_crop"

    # A file that is not a volume: a clear message, and nothing changes on the server.
    bad = tmp_path / "notes.nii.gz"
    bad.write_bytes(b"this is not a NIfTI file")
    upload.set_input_files(str(bad))
    page.wait_for_selector("#segnets-error")
    assert "notes.nii.gz" in page.inner_text("#segnets-error")
    assert_ids_unique(page)
    assert server.status()["volume"] == status["volume"]

    # --data named a folder of three volumes: the page's selector loads the series in place of the CT; the broken
    # file is refused in one sentence, with the series and the selector as they were.
    assert "ct_crop.nii.gz" in page.inner_text(DATA_VOLUME)
    pick_data_volume(page, "CT_abdomen_3_")
    status = server.wait_for(lambda s: s["volume"]["name"].startswith("CT_abdomen_3_"), STEP_TIMEOUT, "the series")
    assert status["volume"]["shape_kji"] == [16, 32, 32] and not status["error"], status
    assert status["annotation"] and segment in status["annotation"]["voxels"]
    page.wait_for_selector(f"{DATA_VOLUME}:has-text('CT_abdomen_3_')")
    pick_data_volume(page, "zz_broken.nii.gz")
    page.wait_for_selector("#segnets-error:has-text('zz_broken.nii.gz')")
    assert server.status()["volume"] == status["volume"]
    assert "CT_abdomen_3_" in page.inner_text(DATA_VOLUME), "the selector shows a volume that was not loaded"
    assert_ids_unique(page)

    # Upload the real volume (under another name) in its place.
    uploaded = tmp_path / "ct_upload.nii.gz"
    uploaded.write_bytes(Path(case["image"]).read_bytes())
    upload.set_input_files(str(uploaded))
    status = server.wait_for(
        lambda s: s["volume"]["name"] == "ct_upload" and s["annotation"] and segment in s["annotation"]["voxels"],
        STEP_TIMEOUT,
        "the uploaded volume and its annotation segmentation",
    )
    assert status["volume"]["shape_kji"] == list(liver.shape)
    assert status["model_key"] == f"{case['model'].id}@{case['model'].version}"
    assert not status["error"]

    # Segment with the tiny model.
    page.click("#segnets-segment")
    status = server.wait_for(lambda s: s["result"] and not s["job"]["busy"], STEP_TIMEOUT, "Segment to finish")
    assert not status["error"], status["error"]
    assert segment in status["result"]["voxels"]
    untrained = download_result(page, tmp_path / "untrained.seg.nrrd") > 0
    assert int(untrained.sum()) == status["result"]["voxels"][segment]
    untrained_dice = dice(untrained, liver)
    clock.mark("upload and segment")

    # Paint the liver on three axial slices spread over its extent, with a brush of BRUSH_VOXELS voxels
    # (its size is a percentage of the view height) along rows one brush radius inside the liver.
    axial = status["views"]["axial"]
    millimetres_per_pixel = abs(axial["xy_to_ras"][1][1])
    voxel_mm = abs(status["volume"]["ijk_to_ras"][1][1])
    brush_percent = round(100 * BRUSH_VOXELS * voxel_mm / (axial["dimensions"][1] * millimetres_per_pixel), 2)
    set_state(page, status["brush"]["diameter_state"], brush_percent)
    page.click("#segnets-paint")
    server.wait_for(
        lambda s: s["active_effect"].endswith("Paint") and s["brush"]["diameter_percent"] == brush_percent,
        STEP_TIMEOUT,
        "the Paint effect",
    )
    present = np.flatnonzero(liver.any(axis=(1, 2)))
    chosen = [int(present[round(q * (len(present) - 1))]) for q in (0.2, 0.5, 0.8)]
    for k in chosen:
        inside = binary_erosion(liver[k], iterations=BRUSH_VOXELS // 2)
        status = paint_slice(page, server, k, inside, ROW_STEP)
    painted = status["annotation"]
    assert painted["slices"] == {"0": chosen, "1": [], "2": []}

    # Undo takes the last stroke away, Redo puts it back.
    last = painted["voxels"][segment]
    page.click("#segnets-undo")
    server.wait_for(lambda s: s["annotation"]["voxels"][segment] < last, STEP_TIMEOUT, "Undo")
    page.click("#segnets-redo")
    status = server.wait_for(lambda s: s["annotation"]["voxels"][segment] == last, STEP_TIMEOUT, "Redo")

    # Erase a stroke across the last slice, then undo the erasing.
    page.click("#segnets-erase")
    server.wait_for(lambda s: s["active_effect"].endswith("Erase"), STEP_TIMEOUT, "the Erase effect")
    middle = np.zeros_like(liver[chosen[-1]])
    row = int(np.flatnonzero(liver[chosen[-1]].any(axis=1)).mean())
    middle[row] = liver[chosen[-1]][row]
    erase_through(page, server, chosen[-1], middle)
    server.wait_for(lambda s: s["annotation"]["voxels"][segment] < last, STEP_TIMEOUT, "the erase stroke")
    page.click("#segnets-undo")
    status = server.wait_for(lambda s: s["annotation"]["voxels"][segment] == last, STEP_TIMEOUT, "Undo of the erase")
    page.click("#segnets-no-tool")
    clock.mark("paint 3 slices, undo, redo, erase, undo")

    # What was painted matches the liver on those slices.
    reference_on_slices = int(liver[chosen].sum())
    assert 0.5 * reference_on_slices < last < 1.6 * reference_on_slices, (last, reference_on_slices)

    # A budget typed and Fine-tune clicked at once: the click uses the budget typed (0 s is refused), not the one
    # the server heard of before (the page sends a changed field only once no other message of it is pending).
    models_before = status["models"]
    page.fill("#segnets-time-budget", "0")
    page.click("#segnets-finetune")
    status = server.wait_for(lambda s: s["error"] or s["job"]["busy"], STEP_TIMEOUT, "the 0 s Fine-tune's answer")
    assert "time budget 0.0 s is not positive" in status["error"] and not status["job"]["busy"], status

    # Cancel a fine-tune once it trains: nothing is saved, nothing changes.
    page.fill("#segnets-time-budget", str(FINETUNE_SECONDS))
    page.click("#segnets-finetune")
    server.wait_for(
        lambda s: s["job"]["kind"] == "finetune" and s["job"]["iteration"] > 0, STEP_TIMEOUT, "fine-tuning iterations"
    )
    page.click("#segnets-cancel")
    status = server.wait_for(lambda s: not s["job"]["busy"], STEP_TIMEOUT, "the cancelled fine-tune to stop")
    assert "cancelled" in status["message"] and not status["error"], status
    assert status["models"] == models_before and status["annotation"]["voxels"][segment] == last
    assert sorted((Path(case["library"]) / case["model"].id).iterdir()) == [case["model"].path]
    clock.mark("fine-tune, cancelled")

    # Fine-tune on the painted slices; the page shows live loss.
    page.click("#segnets-finetune")
    server.wait_for(
        lambda s: s["job"]["kind"] == "finetune" and s["job"]["iteration"] > 0, STEP_TIMEOUT, "fine-tuning iterations"
    )
    page.wait_for_selector("#segnets-finetune-status:has-text('loss')")
    assert_ids_unique(page)  # with Cancel, the progress bar and its stage
    status = server.wait_for(
        lambda s: not s["job"]["busy"] and "Fine-tuned" in s["message"],
        STEP_TIMEOUT + FINETUNE_SECONDS,
        "Fine-tune to finish",
    )
    assert not status["error"], status["error"]
    assert status["model_key"] != f"{case['model'].id}@{case['model'].version}"
    assert status["job"]["losses"], "no loss was reported"
    assert status["annotation"]["voxels"][segment] == last, "fine-tuning modified the annotation"

    clock.mark("fine-tune")

    # Download the fine-tuned result as .seg.nrrd and compare it with the reference liver.
    result = download_result(page, tmp_path / "finetuned.seg.nrrd") > 0
    assert result.shape == liver.shape
    assert int(result.sum()) == status["result"]["voxels"][segment]
    finetuned_dice = dice(result, liver)
    print(
        json.dumps(
            {
                "annotated_voxels": last,
                "reference_on_slices": reference_on_slices,
                "untrained_dice": round(untrained_dice, 3),
                "finetuned_dice": round(finetuned_dice, 3),
                "validation_dice": status["job"]["validation_dice"],
                "seconds": clock.laps,
            }
        )
    )
    assert finetuned_dice >= MIN_FINETUNED_DICE, finetuned_dice
    assert finetuned_dice > untrained_dice, (finetuned_dice, untrained_dice)

    # The result names the slice to paint next; Go to slice moves the axial view there.
    suggestion = status["job"]["suggestion"]
    assert status["job"]["round"] == 1 and suggestion is not None and suggestion["axis"] == 0, status["job"]
    k = suggestion["index"]
    assert k not in chosen and 0 <= k < liver.shape[0]
    page.wait_for_selector(f"#segnets-round:has-text('slice {k}')")
    page.click("#segnets-go-to-suggestion")
    z = ijk_to_ras(status["volume"], np.array([[0, 0, k]]))[0, 2]
    server.wait_for(lambda s: abs(s["views"]["axial"]["slice_value"] - z) < 1e-3, STEP_TIMEOUT, "the suggested slice")
    clock.mark("suggested slice")

    # The user paints the liver there and clicks Fine-tune once more: the next round continues the new model.
    inside = binary_erosion(liver[k], iterations=BRUSH_VOXELS // 2)
    if inside.any():
        page.click("#segnets-paint")
        server.wait_for(lambda s: s["active_effect"].endswith("Paint"), STEP_TIMEOUT, "the Paint effect")
        status = paint_slice(page, server, k, inside, ROW_STEP)
        page.click("#segnets-no-tool")
    else:  # a slice past the liver's end: the user says it is empty
        page.click("#segnets-suggested-empty")
    painted_now = status["annotation"]["voxels"][segment]
    first_model = status["model_key"]
    page.click("#segnets-finetune")
    status = server.wait_for(
        lambda s: not s["job"]["busy"] and s["job"]["round"] == 2, STEP_TIMEOUT + FINETUNE_SECONDS, "the next round"
    )
    assert not status["error"], status["error"]
    assert status["model_key"] != first_model and status["model_key"] in status["models"]
    assert first_model in status["models"], "the earlier round's model is kept"
    page.wait_for_selector("#segnets-round:has-text('Round 2')")
    assert status["annotation"]["voxels"][segment] == painted_now, "the round modified the annotation"
    corrected = download_result(page, tmp_path / "round2.seg.nrrd") > 0
    corrected_dice = dice(corrected, liver)
    print(json.dumps({"round_1_dice": round(finetuned_dice, 3), "round_2_dice": round(corrected_dice, 3)}))
    assert corrected_dice >= MIN_FINETUNED_DICE, corrected_dice
    clock.mark("correction round")

    # Back one round: the first round's model is selected again and its result shown, voxel for voxel.
    page.click("#segnets-back-round")
    status = server.wait_for(
        lambda s: s["job"]["round"] == 1 and s["model_key"] == first_model, STEP_TIMEOUT, "the first round again"
    )
    page.wait_for_selector("#segnets-round:has-text('Back at round 1')")
    assert_ids_unique(page)  # with the round, Go to slice, Slice is empty and Back one round
    again = download_result(page, tmp_path / "back.seg.nrrd") > 0
    assert np.array_equal(again, result), "stepping back did not show the first round's result"
    assert status["annotation"]["voxels"][segment] == painted_now, "stepping back modified the annotation"
    clock.mark("back one round")

    # The page shows the volume with the liver colour in the slice views.
    page.wait_for_function("() => !document.querySelector('#segnets-progress')")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    from PIL import Image

    pixels = np.asarray(Image.open(SCREENSHOT).convert("RGB")).astype(float)
    assert pixels.std() > 20, "the screenshot is nearly uniform"
    liver_rgb = np.array([0.87, 0.51, 0.41]) * 255
    near_liver = np.all(np.abs(pixels - liver_rgb) < 40, axis=-1)
    assert near_liver.sum() > 200, "the liver segment's colour is not visible"


def test_segnets_web_listens_on_localhost_unless_told_otherwise():
    from SegNetsLib.cli import build_parser
    from SegNetsLib.commands.web import run_web

    args = build_parser().parse_args(["web"])
    assert (args.host, args.handler, args.data, args.status_endpoint) == ("127.0.0.1", run_web, None, False)
    args = build_parser().parse_args(["web", "--host", "0.0.0.0", "--port", "9000", "--data", "ct.nii.gz"])
    assert (args.host, args.port, args.data) == ("0.0.0.0", 9000, Path("ct.nii.gz"))


def test_offscreen_rendering_is_chosen_without_a_display():
    from SegNetsLib.web.rendering import EGL_WINDOW, OSMESA_WINDOW, choose_render_window

    assert choose_render_window({"VTK_DEFAULT_OPENGL_WINDOW": "vtkXOpenGLRenderWindow"}) == "vtkXOpenGLRenderWindow"
    assert choose_render_window({"DISPLAY": ":0"}) is None
    assert choose_render_window({}) in (EGL_WINDOW, OSMESA_WINDOW)


def test_an_unreadable_upload_leaves_the_scene_as_it_was(data_dir):
    pytest.importorskip("trame_slicer")
    from trame_slicer.core import SlicerApp

    from SegNetsLib.core.errors import SegNetsError
    from SegNetsLib.web.loading import VolumeLoader, volume_files_in

    image = data_dir / "ts_ct_sm" / "image.nii.gz"
    loader = VolumeLoader(SlicerApp())
    node = loader.load_uploaded([{"name": "ct.nii.gz", "content": image.read_bytes()}])
    assert node.GetName() == "ct" and node.GetImageData().GetDimensions() == (122, 101, 30)
    scene = node.GetScene()
    nodes_before = scene.GetNumberOfNodes()
    for name, content in (("../../notes.nii.gz", b"not an image"), ("report.pdf", b"%PDF-1.4"), ("empty.nrrd", b"")):
        with pytest.raises(SegNetsError) as refused:
            loader.load_uploaded([{"name": name, "content": content}])
        assert Path(name).name in str(refused.value) and "/tmp" not in str(refused.value)
        assert scene.GetNumberOfNodes() == nodes_before and scene.GetNodeByID(node.GetID()) is node
    temporary = Path(tempfile.gettempdir())
    assert not (temporary / "notes.nii.gz").exists() and not (temporary.parent / "notes.nii.gz").exists()
    assert volume_files_in(data_dir / "ts_ct_sm") == [
        data_dir / "ts_ct_sm" / "image.nii.gz",
        data_dir / "ts_ct_sm" / "label.nii.gz",
    ]
    with pytest.raises(SegNetsError, match="holds no volume file"):
        volume_files_in(Path(__file__).resolve().parents[1] / "Data")
