"""Sparse-annotation fine-tuning (SegNetsLib.finetune.run): user labels kept, nothing modified, cancel, keep-the-better."""

from __future__ import annotations

import dataclasses
import hashlib
import re

import numpy as np
import pytest
import torch
from finetune_helpers import TINY, ellipsoid_phantom

from SegNetsLib.card.factory import make_card
from SegNetsLib.core.errors import Cancelled, SegNetsError
from SegNetsLib.core.progress import CancelToken
from SegNetsLib.core.volume import Volume
from SegNetsLib.finetune.options import FinetuneOptions
from SegNetsLib.finetune.run import choose_kept, finetune
from SegNetsLib.finetune.save import save_result
from SegNetsLib.finetune.start import extend_head
from SegNetsLib.models.library import ModelLibrary
from SegNetsLib.nets import build


def _annotation(image: Volume, truth: np.ndarray, slices=(3, 5, 8, 10, 12)) -> Volume:
    labels = np.zeros_like(truth)
    labels[list(slices)] = truth[list(slices)]
    return image.with_array(labels)


def _weights_digest(net: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(net.state_dict().items()):
        digest.update(key.encode() + value.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def test_annotated_voxels_keep_the_user_label_and_the_annotation_is_untouched():
    image, truth = ellipsoid_phantom()
    annotation = _annotation(image, truth)
    annotation.array[8, 0, 0] = 255  # an ignored voxel inside an annotated slice
    before = annotation.array.copy()
    result = finetune(image, annotation, "unet3d", TINY)
    assert np.array_equal(annotation.array, before)
    out = result.labelmap.array
    assert out.shape == truth.shape and result.labelmap.same_geometry(image)
    for z in (3, 5, 8, 10, 12):
        keep = before[z] != 255
        assert np.array_equal(out[z][keep], before[z][keep])
    assert out[8, 0, 0] in (0, 1)  # the ignored voxel is predicted, not copied
    assert result.kept == "fine-tuned" and result.slices == {0: [3, 5, 8, 10, 12], 1: [], 2: []}
    assert result.validation_slices == [(0, 8)]  # the middle slice is held out
    record = result.card.provenance.trained_on[0]
    assert record["shape"] == list(truth.shape) and len(record["sha256"]) == 64
    assert result.card.provenance.annotated_slices == {"0": [3, 5, 8, 10, 12], "1": [], "2": []}


@pytest.mark.parametrize("iterations", [1, 2])
def test_a_fixed_iteration_count_is_trained_exactly_with_a_held_out_slice(iterations):
    """``iterations`` is the whole run's training, split between the validated part (3/4) and the final part on
    every slice: a count too small to split is not read as "no limit"."""
    image, truth = ellipsoid_phantom()
    result = finetune(image, _annotation(image, truth), "unet3d", dataclasses.replace(TINY, iterations=iterations))
    assert result.validation_slices == [(0, 8)]  # a held-out slice: the budget is split
    assert result.iterations == iterations


def test_three_slices_from_scratch_train_on_all_of_them():
    image, truth = ellipsoid_phantom()
    result = finetune(image, _annotation(image, truth, (4, 8, 12)), "unet3d", TINY)
    assert result.validation_slices == [] and result.validation_dice is None


def test_a_two_channel_image_trains_from_scratch_on_both_channels():
    """FLAIR and T1c, say, on very different scales: the new network takes both channels, each z-scored on its own
    (one intensity window cannot fit both)."""
    image, truth = ellipsoid_phantom()
    two = Volume(np.stack([image.array, 1000.0 + 50.0 * image.array]), image.spacing)
    result = finetune(two, _annotation(image, truth), "unet3d", TINY)
    assert len(result.card.in_channels) == 2 and result.card.normalization.kind == "zscore"
    assert result.labelmap.array.shape == truth.shape and result.labelmap.same_geometry(image)


def test_the_same_seed_trains_the_same_network_and_another_seed_does_not():
    """Patches, augmentation and initial weights all follow ``FinetuneOptions.seed``: a rerun on as many threads
    repeats the run (the threads fixed: sums over another count of threads round differently)."""
    image, truth = ellipsoid_phantom()
    annotation = _annotation(image, truth, (4, 8, 12))
    options = dataclasses.replace(TINY, iterations=6, refine=False, threads=1)
    first, again = (finetune(image, annotation, "unet3d", options) for _ in range(2))
    other = finetune(image, annotation, "unet3d", dataclasses.replace(options, seed=1))
    assert _weights_digest(first.net) == _weights_digest(again.net) != _weights_digest(other.net)
    assert [h["loss"] for h in first.history] == [h["loss"] for h in again.history]


def test_refinement_that_would_overrun_the_time_limit_is_skipped_and_said():
    image, truth = ellipsoid_phantom()
    options = dataclasses.replace(TINY, iterations=None, time_limit_s=0.01)  # spent before training starts
    result = finetune(image, _annotation(image, truth, (4, 8, 12)), "unet3d", options)
    skipped = [note for note in result.notes if note.startswith("boundary refinement skipped")]
    # the run is over its 0.01 s limit before the check (training takes at least a second): said so, not "0 s left"
    assert len(skipped) == 1 and "none of the 0.01 s time limit was left" in skipped[0], skipped
    needed = re.search(r"it would take about (\d+(?:\.\d+)?) s", skipped[0])
    assert needed and float(needed.group(1)) > 0 and not re.search(r"\b0 s\b", skipped[0]), skipped
    # from scratch the result is then the random walker's own from the painted slices, in the known box
    from SegNetsLib.finetune.cleanup import known_box
    from SegNetsLib.finetune.refine import walker_alone

    painted = _annotation(image, truth, (4, 8, 12)).array
    box = known_box(truth.shape, result.slices, painted, image.spacing)
    assert np.array_equal(result.labelmap.array, walker_alone(image.array, painted, result.slices, box, image.spacing))


def test_progress_reports_iteration_loss_and_validation():
    image, truth = ellipsoid_phantom()
    records = []
    finetune(image, _annotation(image, truth), "unet3d", TINY, callback=records.append)
    assert records and all({"iteration", "loss", "validation_dice"} <= set(r) for r in records)
    assert any(r["validation_dice"] is not None for r in records)


def test_the_last_iteration_is_reported_without_validation():
    """One painted slice (nothing to validate on) and fewer than 10 iterations: the web page and the panel showed no
    iteration and no loss for the whole Fine-tune (and, after more, the count of the last multiple of 10)."""
    image, truth = ellipsoid_phantom()
    records = []
    finetune(image, _annotation(image, truth, (8,)), "unet3d", TINY, callback=records.append)
    assert records and records[-1]["iteration"] == TINY.iterations, records
    assert all(r["validation_dice"] is None for r in records)


def _base_model(library: ModelLibrary) -> str:
    card = make_card(
        "unet3d",
        {1: "ball"},
        modality="MR",
        id="ball",
        build_args={"base_channels": 2, "levels": 2},
        patch_size=(8, 16, 16),
    )
    net = build("unet3d", 1, 2, base_channels=2, levels=2)
    library.add(net, card)
    return "ball"


def test_cancel_leaves_the_base_model_and_the_library_untouched(model_library):
    library = ModelLibrary(model_library)
    model_id = _base_model(library)
    net_before, _ = library.load(model_id)
    files_before = sorted(p.relative_to(model_library) for p in model_library.rglob("*"))
    cancel = CancelToken()
    image, truth = ellipsoid_phantom()
    options = FinetuneOptions(iterations=50, device="cpu", patch_size=(8, 16, 16), batch_size=1)
    with pytest.raises(Cancelled):
        finetune(
            image, _annotation(image, truth), model_id, options, cancel=cancel, callback=lambda record: cancel.cancel()
        )
    assert sorted(p.relative_to(model_library) for p in model_library.rglob("*")) == files_before
    net_after, _ = library.load(model_id)
    assert _weights_digest(net_after) == _weights_digest(net_before)


def test_fine_tuned_model_is_a_new_version_with_provenance(model_library):
    library = ModelLibrary(model_library)
    model_id = _base_model(library)
    image, truth = ellipsoid_phantom()
    options = FinetuneOptions(iterations=4, device="cpu", patch_size=(8, 16, 16), batch_size=1, validation=False)
    result = finetune(image, _annotation(image, truth), model_id, options)
    saved = save_result(result, library=library)
    assert saved == "ball@1.1.0"
    assert library.versions("ball") == ["1.0.0", "1.1.0"]
    card = library.card("ball", "1.1.0")
    assert card.provenance.base_model_id == "ball" and card.provenance.iterations == 4


def test_keep_the_better_model():
    assert choose_kept(0.8, 0.7) == "base"
    assert choose_kept(0.7, 0.8) == "fine-tuned"
    assert choose_kept(0.8, 0.8) == "fine-tuned"
    assert choose_kept(None, 0.5) == "fine-tuned"


@pytest.mark.slow
def test_a_worse_fine_tune_keeps_the_base_model(model_library):
    """A base that already segments well, fine-tuned with a learning rate that wrecks it: the base is kept."""
    library = ModelLibrary(model_library)
    image, truth = ellipsoid_phantom()
    dense = image.with_array(truth.copy())
    trained = finetune(
        image,
        dense,
        "unet3d",
        FinetuneOptions(
            iterations=40,
            device="cpu",
            patch_size=(8, 16, 16),
            batch_size=2,
            scratch_downsample=1,
            validation=False,
            scratch_build_args={"base_channels": 2, "levels": 2},
        ),
    )
    save_result(trained, "ball", library)
    base_digest = _weights_digest(library.load("ball")[0])
    options = FinetuneOptions(iterations=6, device="cpu", patch_size=(8, 16, 16), batch_size=1, learning_rate=5.0)
    result = finetune(image, _annotation(image, truth), "ball", options)
    assert result.base_validation_dice is not None and result.base_validation_dice > 0.5
    assert result.kept == "base" and result.validation_dice < result.base_validation_dice
    assert _weights_digest(result.net) == base_digest
    assert save_result(result, library=library) is None and library.versions("ball") == ["1.0.0"]


def test_unknown_classes_need_head_extension(model_library):
    library = ModelLibrary(model_library)
    model_id = _base_model(library)
    image, truth = ellipsoid_phantom()
    annotation = _annotation(image, truth)
    annotation.array[annotation.array == 1] = 3
    with pytest.raises(SegNetsError, match="extend-head"):
        finetune(image, annotation, model_id, FinetuneOptions(iterations=1, device="cpu"))


def test_extend_head_keeps_old_classes_and_adds_new_ones():
    net = build("unet3d", 1, 2, base_channels=2, levels=2).eval()
    card = make_card("unet3d", {1: "ball"}, modality="MR", build_args={"base_channels": 2, "levels": 2})
    wider, wider_card = extend_head(net, card, [3])
    x = torch.randn(1, 1, 8, 16, 16)
    with torch.no_grad():
        old, new = net(x).logits, wider.eval()(x).logits
    assert new.shape[1] == 3 and [label.value for label in wider_card.labels] == [1, 3]
    assert torch.allclose(new[:, :2], old, atol=1e-5)
    assert net.head.out_channels == 2  # the original is untouched


def test_no_annotated_slice_is_refused():
    image, truth = ellipsoid_phantom()
    with pytest.raises(SegNetsError, match="no annotated slice"):
        finetune(image, image.with_array(np.zeros_like(truth)), "unet3d", TINY)


def test_geometry_mismatch_is_refused():
    image, truth = ellipsoid_phantom()
    other = Volume(_annotation(image, truth).array, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(SegNetsError, match="different geometry"):
        finetune(image, other, "unet3d", TINY)


@pytest.mark.slow
def test_short_fine_tune_on_real_ct_beats_the_untrained_start(data_dir):
    from SegNetsLib.app.demo import bin_centre_slices, dice
    from SegNetsLib.imageio.volumes import read_volume

    image = read_volume(data_dir / "ts_ct_sm" / "image.nii.gz")
    liver = read_volume(data_dir / "ts_ct_sm" / "label.nii.gz").array == 5
    slices = bin_centre_slices(liver, 3)
    labels = np.zeros(liver.shape, np.uint8)
    labels[slices] = liver[slices]
    torch.manual_seed(0)
    untrained = finetune(
        image,
        image.with_array(labels),
        "unet3d",
        FinetuneOptions(iterations=1, device="cpu", learning_rate=1e-9, refine=False),
    )
    trained = finetune(
        image, image.with_array(labels), "unet3d", FinetuneOptions(iterations=60, device="cpu", refine=False)
    )
    not_annotated = np.ones(liver.shape, bool)
    not_annotated[slices] = False
    # the network's own output (no random-walker refinement), outside the annotated slices
    before = dice((untrained.network_labelmap == 1) & not_annotated, liver & not_annotated)
    after = dice((trained.network_labelmap == 1) & not_annotated, liver & not_annotated)
    assert after > before + 0.2 and after > 0.6


def test_from_scratch_predictions_stay_near_the_annotated_slices():
    from SegNetsLib.finetune.cleanup import limit_to_annotated_range

    labelmap = np.ones((40, 4, 4), np.uint8)
    limit_to_annotated_range(labelmap, {0: [10, 20, 24], 1: [], 2: []})
    assert labelmap[:, 0, 0].nonzero()[0].tolist() == list(range(1, 34))  # largest gap 10: 9 slices beyond
    every_slice = np.ones((40, 4, 4), np.uint8)  # consecutive painted slices: all of it painted
    limit_to_annotated_range(every_slice, {0: [8, 9, 10], 1: [], 2: []})
    assert every_slice[:, 0, 0].nonzero()[0].tolist() == [8, 9, 10]
    lone = np.ones((40, 4, 4), np.uint8)
    limit_to_annotated_range(lone, {0: [20], 1: [], 2: []})
    assert lone[:, 0, 0].nonzero()[0].tolist() == list(range(17, 24))
    mixed = np.ones((40, 4, 4), np.uint8)
    limit_to_annotated_range(mixed, {0: [10], 1: [2], 2: []})
    assert mixed.all()


def test_only_components_holding_the_annotation_are_kept():
    from SegNetsLib.finetune.cleanup import keep_annotated_components

    labelmap = np.zeros((10, 10, 10), np.uint8)
    labelmap[1:4, 1:4, 1:4] = 1  # painted structure
    labelmap[6:10, 6:10, 6:10] = 1  # a bigger look-alike elsewhere
    labels = np.zeros_like(labelmap)
    weight = np.zeros(labelmap.shape, np.float32)
    labels[2, 2, 2] = 1
    weight[2] = 1
    keep_annotated_components(labelmap, labels, weight)
    assert labelmap[2, 2, 2] == 1 and labelmap[6:, 6:, 6:].sum() == 0


def test_from_scratch_predictions_stay_in_plane_near_the_annotated_structure():
    from SegNetsLib.finetune.cleanup import limit_to_annotated_range

    labelmap = np.ones((10, 100, 100), np.uint8)
    labels = np.zeros_like(labelmap)
    labels[5, 40:60, 40:60] = 1
    limit_to_annotated_range(labelmap, {0: [5], 1: [], 2: []}, labels, spacing=(1.0, 1.0, 1.0))
    assert labelmap[5, 20:80, 20:80].all() and labelmap[:, :19].sum() == 0 and labelmap[:, :, 81:].sum() == 0


def test_from_scratch_the_whole_volume_pass_covers_only_where_the_network_knows_something():
    """Painted slices 10, 14 and 18 of a long volume: the result (and the network's own labelmap) is empty
    outside the known box, and inside it both find the structure between the painted slices."""
    from SegNetsLib.finetune.cleanup import known_box

    rng = np.random.default_rng(0)
    shape = (40, 24, 24)
    truth = np.zeros(shape, np.uint8)
    truth[:, 8:16, 8:16] = 1  # a bar through every slice
    image = Volume((100.0 * truth + rng.normal(0, 10, shape)).astype(np.float32), spacing=(2.0, 2.0, 2.0))
    annotation = _annotation(image, truth, (10, 14, 18))
    result = finetune(image, annotation, "unet3d", dataclasses.replace(TINY, iterations=20))
    box = known_box(shape, result.slices, annotation.array, image.spacing)
    assert box.start[0] == 7 and box.stop[0] == 22
    outside = np.ones(shape, bool)
    outside[box.slices] = False
    for out in (result.labelmap.array, result.network_labelmap):
        assert not out[outside].any()
    assert result.labelmap.array[12, 8:16, 8:16].mean() > 0.9


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_new_network_learns_across_the_painting_axis_whichever_array_axis_it_is(axis):
    """Slices painted along array axis 1 or 2 (coronal or sagittal in an axial scan) get the patch and the grid a
    painting along axis 0 gets: thin along the painting axis, coarsened across it (a patch 8 voxels across a painted
    slice holds a sixth of what one 48 voxels across holds; spleen painted on 3 slices, 150 iterations: the network
    alone reached Dice 0.41-0.81 along axis 2 against 0.77-0.81 along axis 0)."""
    image, truth = ellipsoid_phantom((24, 24, 24))
    labels = np.zeros_like(truth)
    painted = [slice(None)] * 3
    painted[axis] = [6, 12, 18]
    labels[tuple(painted)] = truth[tuple(painted)]
    options = dataclasses.replace(TINY, iterations=1, patch_size=None, scratch_downsample=2, segment=False)
    card = finetune(image, image.with_array(labels), "unet3d", options).card
    assert card.patch_size[axis] == 8 and sorted(card.patch_size) == [8, 48, 48]
    spacing_kji = card.target_spacing[::-1]
    assert spacing_kji[axis] == 2.0 and sorted(spacing_kji) == [2.0, 4.0, 4.0]


def test_a_new_v_net_learns_from_painted_slices():
    """At its default width (base 8, 5 levels) a new V-Net, which has no normalization layer, blew up at the painted
    slices' learning rate (3e-3) within a few steps and segmented nothing but the painted slices (loss stuck at 1.0);
    sized for the budget it learns the ellipsoid."""
    image, truth = ellipsoid_phantom()
    options = dataclasses.replace(
        TINY, iterations=24, batch_size=2, validation=False, refine=False, scratch_build_args=None
    )
    result = finetune(image, _annotation(image, truth, (3, 8, 12)), "vnet", options)
    unpainted = np.ones(truth.shape, dtype=bool)
    unpainted[[3, 8, 12]] = False
    found, wanted = result.network_labelmap[unpainted] == 1, truth[unpainted] == 1
    assert 2 * (found & wanted).sum() / (found.sum() + wanted.sum()) > 0.5
