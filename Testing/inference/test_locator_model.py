"""RoI localization by a locator model named in the card (``roi.locator = "id"``, ``"id@version"``, folder or zip)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_helpers import ThresholdNet, hounsfield, oblique, threshold_card
from torch import nn

from SegNetsLib import nets
from SegNetsLib.card.card import ChannelInfo, ModelCard, RoiSettings
from SegNetsLib.core.box import Box
from SegNetsLib.core.errors import Cancelled, SegNetsError
from SegNetsLib.core.progress import CancelToken
from SegNetsLib.core.volume import Volume
from SegNetsLib.inference.predictor import Predictor
from SegNetsLib.inference.preprocess import preprocess
from SegNetsLib.models.library import ModelLibrary
from SegNetsLib.models.store import save

UNET_ARGS = {"preset": "default", "base_channels": 1, "levels": 2, "norm": "batch"}
SPACING = (3.0, 3.0, 2.0)  # (i, j, k) mm
PADDING_MM = 6.0  # -> 3 voxels along k, 2 along j and i
BRIGHT = (slice(6, 9), slice(8, 12), slice(10, 15))  # 1000 HU: what the locator marks
DIM = (slice(11, 14), slice(2, 5), slice(2, 5))  # 300 HU: above the main model's threshold, not the locator's
BRIGHT_ROI = Box(6 - 3, 8 - 2, 10 - 2, 9 + 3, 12 + 2, 15 + 2)


def threshold_unet(threshold: float, in_channels: int = 1) -> nn.Module:
    """A real 2-level 3D U-Net (batch norm, eval mode) that labels 1 exactly where its first normalized input
    channel exceeds ``threshold``: only centre taps of the first encoder level, the decoder and the head are
    nonzero, so a voxel's label depends on that voxel alone (no context, no pooled path)."""
    net = nets.build("unet3d", in_channels, 2, **UNET_ARGS).eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.zero_()
        for module in net.modules():
            if isinstance(module, nn.BatchNorm3d):  # running mean 0, variance 1: the identity
                module.weight.fill_(1.0)
        first, second = net.encoders[0][0], net.encoders[0][3]
        first.weight[0, 0, 1, 1, 1] = 1.0
        first.bias[0] = -threshold  # ReLU(x - threshold) from here on
        for conv in (second, net.decoders[0][0], net.decoders[0][3]):
            conv.weight[0, 0, 1, 1, 1] = 1.0
        net.head.weight[1, 0] = 1000.0
        net.head.bias[1] = -1.0  # label 1 where x > threshold + 0.001
    return net


def locator_card(version: str = "1.0.0", **changes) -> ModelCard:
    card = threshold_card(1, id="loc", name="locator", version=version, architecture="unet3d", build_args=UNET_ARGS)
    return replace(card, **changes)


def add_locator(threshold_hu: float, version: str = "1.0.0", **changes) -> Path:
    """A locator model (label 1 above ``threshold_hu``) saved into the library of $SEGNETS_MODELS."""
    card = locator_card(version, **changes)
    return ModelLibrary().add(threshold_unet(hounsfield(threshold_hu), len(card.in_channels)), card)


def main_card(locator: str, **changes) -> ModelCard:
    """A threshold model (label 2 above 0 HU) whose RoIs a locator model finds, padded by :data:`PADDING_MM`."""
    roi = RoiSettings(mode="auto", locator=locator, extension="padding", padding_mm=PADDING_MM)
    return threshold_card(2, id="main", roi=roi, **changes)


def watched_net() -> tuple[nn.Module, list[tuple[int, ...]]]:
    """The main network (label 2 above 0 HU) and the list of input window shapes it is run on."""
    net = ThresholdNet(hounsfield(0.0))
    seen: list[tuple[int, ...]] = []
    net.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[2:])))
    return net, seen


@pytest.fixture
def volume() -> Volume:
    array = np.full((16, 20, 24), -500.0, np.float32)
    array[BRIGHT] = 1000.0
    array[DIM] = 300.0
    return Volume(array, SPACING, (-20.0, 35.0, 7.0))


def test_the_locator_model_boxes_what_it_marks_and_the_model_runs_only_there(model_library, volume):
    add_locator(800.0)
    net, seen = watched_net()
    reports = []
    result = Predictor(net, main_card("loc"), device="cpu").predict(
        volume, progress=lambda f, s: reports.append((f, s))
    )

    assert result.rois == [BRIGHT_ROI]  # the marked block, padded 6 mm (3 voxels along k, 2 along j and i)
    expected = np.zeros(volume.shape_kji, np.uint8)
    expected[BRIGHT] = 2  # the 300 HU block is above the main threshold but outside every RoI
    assert np.array_equal(result.labelmap.array, expected)
    assert seen and all(all(w <= b for w, b in zip(shape, BRIGHT_ROI.shape)) for shape in seen)
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    locating = [f for f, s in reports if s == "locating RoIs"]
    assert len(locating) > 2 and 0.05 <= min(locating) and max(locating) <= 0.2  # the locator's own reports


@pytest.mark.parametrize("reference", ["loc@1.0.0", "folder", "zip"])
def test_a_version_folder_or_zip_names_that_locator(model_library, volume, tmp_path, reference):
    older = add_locator(800.0, "1.0.0")
    add_locator(200.0, "2.0.0")  # the latest: marks both blocks
    if reference == "zip":
        reference = str(ModelLibrary().export("loc", tmp_path / "loc.zip", version="1.0.0"))
    elif reference == "folder":
        reference = str(older)
    assert Predictor(ThresholdNet(hounsfield(0.0)), main_card(reference), device="cpu").predict(volume).rois == [
        BRIGHT_ROI
    ]
    latest = Predictor(ThresholdNet(hounsfield(0.0)), main_card("loc"), device="cpu").predict(volume)
    assert len(latest.rois) == 2 and BRIGHT_ROI in latest.rois


def test_the_locator_is_loaded_once_and_kept(model_library, volume):
    add_locator(800.0)
    predictor = Predictor(ThresholdNet(hounsfield(0.0)), main_card("loc"), device="cpu")
    first = predictor.predict(volume)
    ModelLibrary().remove("loc")  # a second load would fail now
    assert predictor.predict(volume).rois == first.rois == [BRIGHT_ROI]


def test_nothing_found_by_the_locator_segments_the_whole_volume(model_library, volume, caplog):
    add_locator(5000.0)
    with caplog.at_level(logging.INFO, logger="SegNetsLib"):
        result = Predictor(ThresholdNet(hounsfield(0.0)), main_card("loc"), device="cpu").predict(
            volume, name="ct.nrrd"
        )
    assert result.rois == []
    assert np.array_equal(result.labelmap.array, np.where(volume.array > 0.0, 2, 0))
    assert "ct.nrrd: the coarse pass found no structure; segmenting the whole volume" in caplog.text


def test_the_locator_runs_on_its_own_grid_and_boxes_map_onto_the_models_grid(model_library, volume):
    """Locator on a 6 x 6 x 4 mm grid, main model on 4 x 4 x 4 mm: the RoI holds the padded block and stays near it."""
    add_locator(800.0, target_spacing=(6.0, 6.0, 4.0))
    net, seen = watched_net()
    card = main_card("loc", target_spacing=(4.0, 4.0, 4.0))
    result = Predictor(net, card, device="cpu").predict(volume)

    assert len(result.rois) == 1
    roi = result.rois[0]
    assert all(a <= s and e <= b for a, b, s, e in zip(roi.start, roi.stop, BRIGHT_ROI.start, BRIGHT_ROI.stop))
    # on each side at most a locator voxel, a model voxel and the interpolation margin of the way back (input voxels)
    slack = 6
    assert all(
        a >= s - slack and b <= e + slack for a, b, s, e in zip(roi.start, roi.stop, BRIGHT_ROI.start, BRIGHT_ROI.stop)
    )
    assert np.all(result.labelmap.array[BRIGHT][1:-1, 1:-1, 1:-1] == 2)  # inside the block, away from resampled rims
    grid = preprocess(volume, card).shape
    assert len(seen) == 1 and np.prod(seen[0]) < 0.5 * np.prod(grid)  # one window over the box, no coarse pass


def test_cancel_during_the_locator_pass_stops_before_the_model_runs(model_library, volume):
    add_locator(800.0)
    net, seen = watched_net()
    token = CancelToken()
    locating = []

    def progress(fraction: float, stage: str) -> None:
        if stage == "locating RoIs":
            locating.append(fraction)
            if len(locating) == 2:  # the locator's own first report: it is running
                token.cancel()

    with pytest.raises(Cancelled):
        Predictor(net, main_card("loc"), device="cpu").predict(volume, progress=progress, cancel=token)
    assert len(locating) == 2 and seen == []


@pytest.mark.parametrize(
    "reference, problem",
    [
        (
            "missing",
            r"RoI locator 'missing' is not self, runet or a usable model \(model 'missing' is not in the library",
        ),
        (
            "loc@9.0.0",
            r"RoI locator 'loc@9.0.0' .*\(model 'loc' has no version 9.0.0 in the library; it has 1.0.0\)\.$",
        ),
        ("not a model!", r"RoI locator 'not a model!' .*\(model 'not a model!' is not in the library"),
        ("loc/", r"RoI locator 'loc/' .*\(loc/: no such model folder or \.zip\)\.$"),  # a path: never the id 'loc'
    ],
)
def test_a_locator_that_cannot_be_found_is_refused_when_the_predictor_is_built(model_library, reference, problem):
    add_locator(800.0)
    with pytest.raises(SegNetsError, match=f"^model 'main': {problem}") as error:
        Predictor(ThresholdNet(0.5), main_card(reference), device="cpu")
    assert "\n" not in str(error.value)


def test_a_locator_that_cannot_be_loaded_or_takes_other_channels_is_refused_on_first_use(
    model_library, volume, tmp_path
):
    mr = [ChannelInfo("T1", "MR"), ChannelInfo("T2", "MR")]
    two_channels = save(threshold_unet(0.5, in_channels=2), locator_card(in_channels=mr), tmp_path / "mr-locator")
    predictor = Predictor(ThresholdNet(0.5), main_card(str(two_channels)), device="cpu")
    with pytest.raises(
        SegNetsError,
        match=r"^model 'main': RoI locator '.*mr-locator' takes input channels \(MR, MR\) "
        r"but the model takes \(CT\)\.$",
    ):
        predictor.predict(volume)

    broken = add_locator(800.0)
    (broken / "weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(
        SegNetsError, match=r"^model 'main': RoI locator 'loc' is not self, runet or a usable model \(.*\)\.$"
    ):
        Predictor(ThresholdNet(0.5), main_card("loc"), device="cpu").predict(volume)


def test_box_from_source_is_exact_on_an_axis_aligned_grid():
    """Network voxels 2 x 4 x 1 source voxels large (i, j, k): source voxels 2n and 2n + 1 make network voxel n along i."""
    source = Volume(np.arange(20 * 24 * 20, dtype=np.float32).reshape(20, 24, 20), (1.0, 1.0, 1.0), (3.0, -4.0, 5.0))
    pre = preprocess(source, threshold_card(1, target_spacing=(2.0, 4.0, 1.0)))
    assert pre.shape == (20, 6, 10)
    assert pre.box_from_source(Box(3, 5, 5, 7, 9, 9)) == Box(3, 1, 2, 7, 3, 5)
    assert pre.box_from_source(Box(3, 4, 4, 7, 8, 10)) == Box(3, 1, 2, 7, 2, 5)
    assert pre.box_from_source(Box(0, 0, 0, 20, 24, 20)) == Box(0, 0, 0, *pre.shape)
    same = preprocess(source, threshold_card(1))
    assert same.box_from_source(Box(3, 5, 5, 7, 9, 9)) == Box(3, 5, 5, 7, 9, 9)


def test_box_from_source_covers_the_box_on_an_oblique_reoriented_grid():
    source = oblique(Volume(np.random.default_rng(0).random((18, 22, 26)).astype(np.float32), (1.5, 1.0, 2.0)))
    pre = preprocess(source, threshold_card(1, target_spacing=(2.5, 2.0, 3.0), orientation="LPS"))
    to_network = np.linalg.inv(pre.grid.ijk_to_lps()) @ source.ijk_to_lps()
    for box in (Box(4, 6, 8, 9, 14, 15), Box(0, 0, 0, 3, 4, 5), Box(10, 3, 17, 18, 9, 26)):
        found = pre.box_from_source(box)
        centres = np.array(
            [
                [i, j, k, 1.0]
                for k in range(box.z0, box.z1)
                for j in range(box.y0, box.y1)
                for i in range(box.x0, box.x1)
            ]
        ).T
        kji = np.round((to_network @ centres)[2::-1]).astype(int)  # the network voxel holding each source centre
        inside = np.all((kji >= 0) & (kji < np.array(pre.shape)[:, None]), axis=0)
        assert inside.any()
        assert np.all(
            (kji[:, inside] >= np.array(found.start)[:, None]) & (kji[:, inside] < np.array(found.stop)[:, None])
        )
        back = pre.box_to_source(found)  # the way back reaches every source voxel of the box
        assert all(a <= s and e <= b for a, b, s, e in zip(back.start, back.stop, box.start, box.stop))


def test_a_locator_id_is_looked_up_in_the_library_the_model_came_from(model_library, volume, tmp_path):
    """The panel's library folder need not be $SEGNETS_MODELS: a locator id is found beside the main model."""
    from SegNetsLib.app.tasks import TaskState

    chosen = ModelLibrary(tmp_path / "chosen library")
    chosen.add(threshold_unet(hounsfield(800.0), 1), locator_card())
    with pytest.raises(SegNetsError, match="is not self, runet or a usable model"):
        Predictor(ThresholdNet(hounsfield(0.0)), main_card("loc"), device="cpu")  # $SEGNETS_MODELS holds none
    card = main_card("loc", architecture="unet3d", build_args=UNET_ARGS)
    main = save(threshold_unet(hounsfield(0.0), 1), card, tmp_path / "main")
    assert TaskState().predictor(main, "cpu", chosen.root).predict(volume).rois == [BRIGHT_ROI]


def test_a_fine_tune_finds_the_locator_id_in_the_library_the_model_came_from(model_library, volume, tmp_path):
    """The panel's Fine-tune segments the whole volume and suggests a slice with the fine-tuned model: a locator id
    its card names is found in the library the model was chosen from, as when segmenting."""
    from SegNetsLib.app.tasks import TaskState, finetune
    from SegNetsLib.finetune.options import FinetuneOptions

    chosen = ModelLibrary(tmp_path / "chosen library")
    chosen.add(threshold_unet(hounsfield(800.0), 1), locator_card())
    card = main_card("loc", architecture="unet3d", build_args=UNET_ARGS)
    main = chosen.add(threshold_unet(hounsfield(0.0), 1), card)
    annotation = np.full(volume.shape_kji, 255, np.int16)
    for k in (6, 8):
        annotation[k] = np.where(volume.array[k] > 0, 2, 0)
    options = FinetuneOptions(iterations=2, device="cpu", refine=False, validation=False)
    result = finetune(
        TaskState(),
        library_root=chosen.root,
        volume=volume,
        annotation=volume.with_array(annotation),
        start=str(main),
        labels=card.labels,
        options=options,
        progress=lambda *args, **values: None,
        cancel=CancelToken(),
    )
    assert (result.entry.id, result.entry.version) == (
        "main",
        "1.1.0",
    ) and result.entry.path.parent.parent == chosen.root
