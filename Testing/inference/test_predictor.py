"""The Predictor on real CT (ts_ct_sm): geometry, RoI versus whole volume, determinism, cancel, bad input."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
from inference_helpers import (
    LIVER_CARD,
    ThresholdNet,
    dice,
    hounsfield,
    oblique,
    threshold_card,
    tiny_unet,
    train_tiny_liver_unet,
)
from scipy import ndimage

from SegNetsLib import nets
from SegNetsLib.card.card import Normalization, Postprocessing, RoiSettings
from SegNetsLib.core.errors import Cancelled, SegNetsError
from SegNetsLib.core.progress import CancelToken
from SegNetsLib.core.volume import Volume
from SegNetsLib.imageio.volumes import read_volume
from SegNetsLib.inference.predictor import Predictor

BONE_HU = 250.0


@pytest.fixture(scope="module")
def ct(data_dir) -> Volume:
    return read_volume(data_dir / "ts_ct_sm" / "image.nii.gz")


@pytest.fixture(scope="module")
def reference(data_dir) -> Volume:
    return read_volume(data_dir / "ts_ct_sm" / "label.nii.gz")


@pytest.fixture(scope="module")
def unet():
    """An untrained tiny 3D U-Net: arbitrary labels, but real sliding windows, RoIs and resampling."""
    return tiny_unet()


def _inside(shape, boxes) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for box in boxes:
        mask[box.slices] = True
    return mask


def test_roi_and_whole_volume_agree_exactly_inside_the_rois(ct):
    predictor = Predictor(ThresholdNet(hounsfield(BONE_HU)), threshold_card(2), device="cpu")
    whole = predictor.predict(ct, roi="off")
    roi = predictor.predict(ct, roi="auto")

    assert whole.rois == [] and len(roi.rois) >= 1
    inside = _inside(ct.shape_kji, roi.rois)
    assert inside.mean() < 0.9  # the RoIs really skip part of the volume
    expected = np.where(ct.array > BONE_HU, 2, 0)
    assert np.array_equal(whole.labelmap.array, expected)
    assert np.array_equal(roi.labelmap.array[inside], expected[inside])
    assert not roi.labelmap.array[~inside].any()
    assert (roi.labelmap.array == 2).any()


def test_roi_mode_on_a_resampled_grid_feeds_the_network_only_coarse_and_box_sized_inputs(ct):
    """RoI mode never builds whole network-grid inputs: the net sees the coarse volume and the boxes only,
    and inside the RoIs the labels match the whole-volume pass (which does build the whole grid)."""
    from SegNetsLib.inference.preprocess import preprocess

    card = threshold_card(2, target_spacing=(4.0, 4.0, 4.0), patch_size=(128, 128, 128))
    net = ThresholdNet(hounsfield(BONE_HU))
    seen: list[tuple[int, ...]] = []
    net.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[2:])))
    predictor = Predictor(net, card, device="cpu")
    grid_shape = preprocess(ct, card).shape

    whole = predictor.predict(ct, roi="off")
    assert seen == [grid_shape]  # windows as large as the grid: one window, the whole grid
    seen.clear()
    roi = predictor.predict(ct, roi="auto")
    assert len(seen) == 1 + len(roi.rois)  # the coarse pass, then one window per box
    assert all(np.prod(shape) < 0.9 * np.prod(grid_shape) for shape in seen)
    inside = _inside(ct.shape_kji, roi.rois)
    a, b = whole.labelmap.array[inside] == 2, roi.labelmap.array[inside] == 2
    # not exact: at a box's rim the way back interpolates the RoI labels with the unsegmented outside
    assert a.sum() > 0 and 2.0 * (a & b).sum() / (a.sum() + b.sum()) > 0.97


def test_oblique_input_gives_the_same_voxels_in_its_own_geometry(ct, unet):
    predictor = Predictor(unet, LIVER_CARD, device="cpu")
    straight = predictor.predict(ct)
    tilted_input = oblique(ct)
    tilted = predictor.predict(tilted_input)
    assert tilted.labelmap.same_geometry(tilted_input)
    # the same voxels up to round-off of physical coordinates in the two resamplings
    assert np.mean(tilted.labelmap.array != straight.labelmap.array) < 1e-3
    assert tilted.rois == straight.rois


def test_predictions_are_deterministic_and_probabilities_consistent(ct, unet):
    predictor = Predictor(unet, LIVER_CARD, device="cpu")
    first = predictor.predict(ct, probabilities=True)
    second = predictor.predict(ct, probabilities=True)
    assert np.array_equal(first.labelmap.array, second.labelmap.array)
    assert np.array_equal(first.probabilities.array, second.probabilities.array)

    probs = first.probabilities
    assert probs.array.shape == (2, *ct.shape_kji) and probs.same_geometry(ct)
    total = probs.array.sum(axis=0)
    assert np.allclose(total, 1.0, atol=1e-4)  # every voxel, the last planes of the extent too
    decided = np.abs(probs.array[1] - 0.5) > 1e-3
    assert decided.sum() > 10_000
    assert np.mean((probs.array[1] > 0.5)[decided] == (first.labelmap.array == 5)[decided]) > 0.99


def test_multi_label_card_labels_each_voxel_with_its_most_probable_label(ct):
    card = threshold_card(3, 7, multi_label=True)
    net = ThresholdNet(hounsfield(0.0), hounsfield(BONE_HU), background=False, gain=10.0)
    labels = Predictor(net, card, device="cpu").predict(ct, roi="off").labelmap.array
    assert np.array_equal(labels == 0, ct.array < 0.0)
    # above 250 HU both sigmoids pass 0.5 and the first (0 HU) is the more probable one
    assert np.all(labels[ct.array >= 1.0] == 3)


def test_postprocessing_from_the_card_keeps_the_largest_bone(ct):
    card = threshold_card(2, postprocessing=Postprocessing(keep_largest_component=True, fill_holes=True))
    labels = Predictor(ThresholdNet(hounsfield(BONE_HU)), card, device="cpu").predict(ct, roi="off").labelmap.array
    _, count = ndimage.label(labels == 2, structure=np.ones((3, 3, 3)))
    _, raw_count = ndimage.label(ct.array > BONE_HU, structure=np.ones((3, 3, 3)))
    assert raw_count > 1 and count == 1
    assert 0 < (labels == 2).sum() < (ct.array > BONE_HU).sum()


def test_nothing_found_by_the_coarse_pass_falls_back_to_the_whole_volume(ct, caplog):
    predictor = Predictor(ThresholdNet(hounsfield(5000.0)), threshold_card(1), device="cpu")
    with caplog.at_level(logging.INFO, logger="SegNetsLib"):
        result = predictor.predict(ct, roi="auto", name="ct.nii.gz")
    assert result.rois == []
    assert "ct.nii.gz: the coarse pass found no structure; segmenting the whole volume" in caplog.text


def test_runet_card_locates_with_its_global_image_encoder(ct):
    torch.manual_seed(0)
    net = nets.build("runet", 1, 2, base_channels=2, max_rois_test=2)
    card = replace(
        LIVER_CARD,
        architecture="runet",
        target_spacing=(12.0, 12.0, 12.0),
        patch_size=(8, 16, 16),
        roi=RoiSettings(locator="runet", extension="official"),
    )
    # the coarse pass must go through the encoder and locator head, and the fine pass through forward
    calls = {"encode": 0}
    original = net.encode

    def counting_encode(x):
        calls["encode"] += 1
        return original(x)

    net.encode = counting_encode
    result = Predictor(net, card, device="cpu").predict(ct)
    assert result.labelmap.same_geometry(ct)
    assert set(np.unique(result.labelmap.array)) <= {0, 5}
    assert calls["encode"] > 0


@pytest.mark.parametrize(
    ("architecture", "options"),
    [("conresnet", {"width_divisor": 4, "shape": (8, 16, 16)}), ("runet", {"base_channels": 2})],
)
def test_paper_presets_take_windows_of_the_input_sizes_they_accept(architecture, options):
    """ConResNet's fixed input size and RU-Net's (2, 4, 4) multiples (paper presets pad nothing) set the windows;
    MONAI pads the regions smaller than them: whole volume, coarse pass and RoIs of any size."""
    torch.manual_seed(0)
    net = nets.build(architecture, 1, 2, "paper", **options).eval()
    card = threshold_card(1, architecture=architecture, normalization=Normalization("none"), patch_size=(8, 32, 32))
    volume = Volume(np.random.default_rng(0).random((6, 10, 14)).astype(np.float32))
    for roi in ("off", "auto"):
        assert Predictor(net, card, device="cpu").predict(volume, roi=roi).labelmap.array.shape == (6, 10, 14)


def test_runet_windows_reach_the_network_one_at_a_time():
    """RU-Net proposes one set of RoIs for all samples of a forward: a window batched with another would be
    decoded in the other's RoIs, so its labels would depend on its neighbour."""
    torch.manual_seed(0)
    net = nets.build("runet", 1, 2, base_channels=2).eval()
    card = threshold_card(1, architecture="runet", normalization=Normalization("none"), roi=RoiSettings(mode="off"))
    batches: list[int] = []
    original = net.forward
    net.forward = lambda x: batches.append(x.shape[0]) or original(x)
    volume = Volume(np.random.default_rng(0).random((16, 64, 64)).astype(np.float32))
    Predictor(net, card, device="cpu").predict(volume, roi="off")
    assert len(batches) > 1 and set(batches) == {1}


def test_cancel_stops_within_a_window_and_returns_nothing(ct, unet):
    token = CancelToken()
    forwards, at_cancel = [], []
    hook = unet.register_forward_pre_hook(lambda module, args: forwards.append(args[0].shape[0]))

    def progress(fraction: float, stage: str) -> None:
        if stage.startswith("segmenting") and forwards and not token.cancelled:
            token.cancel()
            at_cancel.append(len(forwards))

    try:
        with pytest.raises(Cancelled):
            Predictor(unet, LIVER_CARD, device="cpu").predict(ct, roi="off", progress=progress, cancel=token)
    finally:
        hook.remove()
    assert at_cancel and len(forwards) <= at_cancel[0] + 1  # at most the batch of windows already under way


def test_progress_reports_increase_to_one(ct, unet):
    reports = []
    Predictor(unet, LIVER_CARD, device="cpu").predict(ct, progress=lambda f, s: reports.append((f, s)))
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {"preprocessing", "locating RoIs"} <= {s for _, s in reports}


@pytest.mark.parametrize(
    "volume, problem",
    [
        (
            Volume(np.zeros((2, 10, 12, 14), np.float32) + np.arange(14)),
            r"has 2 channel\(s\) but model 'threshold' expects 1",
        ),
        (Volume(np.full((10, 12, 14), 7.0)), "constant"),
        (Volume(np.where(np.arange(14) == 3, np.inf, 1.0) * np.ones((10, 12, 1))), "NaN or infinite"),
        (Volume(np.arange(10 * 12 * 14, dtype=float).reshape(10, 12, 14), spacing=(1.0, -1.0, 1.0)), "spacing"),
    ],
)
def test_bad_input_is_a_clear_error(volume, problem):
    predictor = Predictor(ThresholdNet(0.5), threshold_card(1), device="cpu")
    with pytest.raises(SegNetsError, match=f"scan.nrrd: .*{problem}"):
        predictor.predict(volume, name="scan.nrrd")


def test_unknown_roi_choice_and_locator_are_refused():
    with pytest.raises(SegNetsError, match="roi 'maybe'"):
        Predictor(ThresholdNet(0.5), threshold_card(1), device="cpu").predict(
            Volume(np.eye(4)[None] * np.ones((4, 1, 1))), roi="maybe"
        )
    with pytest.raises(SegNetsError, match="RoI locator 'other-model'"):
        Predictor(ThresholdNet(0.5), threshold_card(1, roi=RoiSettings(locator="other-model")), device="cpu")


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")  # the same weights on every machine: on 2 threads Dice fell to 0.75
def test_trained_unet_finds_the_liver_with_and_without_roi(ct, reference):
    """A tiny U-Net trained for 300 steps (about 40 s on one thread) makes Dice assertions meaningful."""
    predictor = Predictor(train_tiny_liver_unet(ct, reference, iterations=300), LIVER_CARD, device="cpu")
    roi = predictor.predict(ct, roi="auto")
    whole = predictor.predict(ct, roi="off")
    liver = reference.array == 5

    assert roi.labelmap.same_geometry(ct) and roi.labelmap.array.dtype == np.uint8
    assert set(np.unique(roi.labelmap.array)) <= {0, 5}
    assert dice(whole.labelmap.array == 5, liver) > 0.8  # 0.88 measured
    assert dice(roi.labelmap.array == 5, liver) > 0.8  # 0.87
    assert dice(roi.labelmap.array == 5, whole.labelmap.array == 5) > 0.85  # 0.92
    assert len(roi.rois) >= 1
    assert (liver & _inside(ct.shape_kji, roi.rois)).sum() > 0.95 * liver.sum()  # the RoIs hold the liver


def test_a_volume_too_small_for_the_network_is_refused_naming_it_and_a_tiny_coarse_pass_is_skipped(ct, caplog):
    """Instance normalization needs more than one voxel at the network's deepest level."""
    from inference_helpers import TINY_CARD

    build = {"preset": "default", "base_channels": 2, "levels": 3, "norm": "instance"}
    torch.manual_seed(0)
    net = nets.build("unet3d", 1, TINY_CARD.num_classes, **build).eval()
    card = replace(TINY_CARD, build_args=build)
    tiny = Volume(np.random.default_rng(0).normal(size=(3, 3, 3)).astype(np.float32), spacing=(6.0, 6.0, 6.0))
    with pytest.raises(
        SegNetsError, match=r"small\.nii: at the model's spacing the volume is 3 x 3 x 3 voxels, too small"
    ):
        Predictor(net, replace(card, roi=RoiSettings(mode="off")), device="cpu").predict(tiny, name="small.nii")
    coarse = replace(card, roi=replace(card.roi, coarse_factor=16.0))  # the coarse grid: 2 x 6 x 8 voxels
    with caplog.at_level(logging.INFO, logger="SegNetsLib"):
        labels = Predictor(net, coarse, device="cpu").predict(ct, roi="auto").labelmap.array
    assert "coarse pass's grid is too small" in caplog.text
    assert "found no structure" not in caplog.text  # the coarse pass never ran: it cannot have found nothing
    assert labels.shape == ct.shape_kji  # segmented, the whole volume
