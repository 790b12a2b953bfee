"""Interactive rounds (SegNetsLib.finetune.rounds): warm continuation, budget, clean-up, versions, history."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from robustness_cases import expect

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume
from SegNetsLib.finetune.options import FinetuneOptions
from SegNetsLib.finetune.rounds import (
    ROUND_MAX_ITERATIONS,
    added_slices,
    finetune_round,
    previous_round,
    round_history,
    round_iterations,
    round_options,
)
from SegNetsLib.finetune.save import save_result
from SegNetsLib.finetune.start import Start, round_of, trained_on_volume
from SegNetsLib.finetune.update import local_update
from SegNetsLib.models.library import ModelLibrary, load

TINY = FinetuneOptions(
    iterations=40,
    device="cpu",
    patch_size=(8, 16, 16),
    batch_size=2,
    scratch_downsample=1,
    scratch_build_args={"base_channels": 4, "levels": 2},
    refine=False,
)


def _phantom() -> tuple[Volume, np.ndarray]:
    """Two identical bright boxes in noise, 2 mm voxels; only the first (z 2..9) is the structure."""
    rng = np.random.default_rng(0)
    image = rng.normal(0, 5, (28, 20, 20)).astype(np.float32)
    truth = np.zeros(image.shape, np.uint8)
    truth[2:10, 5:15, 5:15] = 1
    image[truth > 0] += 100.0
    image[20:27, 5:15, 5:15] += 100.0  # a look-alike far beyond the painted slices
    return Volume(image, spacing=(2.0, 2.0, 2.0)), truth


def _painted(image: Volume, truth: np.ndarray, slices) -> Volume:
    labels = np.zeros_like(truth)
    labels[list(slices)] = truth[list(slices)]
    return image.with_array(labels)


def test_a_correction_round_continues_warm_keeps_the_clean_up_and_is_a_new_round(model_library):
    image, truth = _phantom()
    first = finetune_round(image, _painted(image, truth, (3, 8)), "unet3d", TINY)
    assert first.round == 1 and first.added_slices == {0: [3, 8]} and first.card.provenance.round == 1
    annotation = _painted(image, truth, (3, 5, 8))
    before = annotation.array.copy()
    second = finetune_round(image, annotation, (first.net, first.card), TINY)
    assert np.array_equal(annotation.array, before)  # the annotation is never modified
    assert second.round == 2 and second.added_slices == {0: [5]}
    card = second.card
    assert card.provenance.round == 2 and card.provenance.annotated_slices["0"] == [3, 5, 8]
    assert "round 2" in card.provenance.notes and "axis 0: 5" in card.provenance.notes
    assert second.validation_slices == []  # no held-out slice: the new one is trained on
    # the clean-up of a network trained on painted slices alone still applies: nothing beyond the painted range
    out = second.labelmap.array
    assert not out[20:].any()
    assert np.array_equal(out[[3, 5, 8]], truth[[3, 5, 8]])


def test_the_round_budget_scales_with_the_slices_added_and_is_capped():
    assert round_iterations(1) < round_iterations(2) <= ROUND_MAX_ITERATIONS
    assert round_iterations(0) == round_iterations(1) and round_iterations(50) == ROUND_MAX_ITERATIONS


def test_round_options_turn_validation_off_and_keep_earlier_painted_slices():
    image, truth = _phantom()
    first = finetune_round(image, _painted(image, truth, (3, 8)), "unet3d", dataclasses.replace(TINY, iterations=2))
    card = first.card
    card.provenance.annotated_slices = {"0": [3, 8, 12]}  # 12: painted all background in an earlier round
    options = round_options(card, 1, FinetuneOptions(time_limit_s=300.0))
    assert options.iterations == round_iterations(1) and options.time_limit_s is None
    assert options.validation is False and options.slices[0] == [3, 8, 12]
    assert options.augmentation.deform is False and FinetuneOptions().augmentation.deform is True
    assert round_options(card, 1, FinetuneOptions(time_limit_s=5.0)).time_limit_s == 5.0
    assert added_slices({0: [3, 8]}, {0: [3, 5, 8], 1: []}) == {0: [5]}


def test_each_round_is_a_new_version_and_the_user_can_step_back(model_library):
    library = ModelLibrary(model_library)
    image, truth = _phantom()
    options = dataclasses.replace(TINY, iterations=2)
    first = finetune_round(image, _painted(image, truth, (3, 8)), "unet3d", options)
    reference = save_result(first, "r1-ts_phantom", library)
    assert reference.startswith("r1-ts-phantom@")
    second = finetune_round(image, _painted(image, truth, (3, 5, 8)), "r1-ts_phantom", options)  # the name given
    assert second.round == 2
    reference2 = save_result(second, None, library)
    assert reference2.split("@")[0] == "r1-ts-phantom" and reference2 != reference
    history = round_history(library, "r1-ts-phantom")
    assert [(entry.round, entry.slices[0]) for entry in history] == [(1, [3, 8]), (2, [3, 5, 8])]
    back = previous_round(library, library.card("r1-ts-phantom", history[1].version))
    assert back is not None and back.reference == reference
    assert previous_round(library, library.card("r1-ts-phantom", history[0].version)) is None
    # a round saved under a name that already holds a model of the base's version steps back to its base
    save_result(finetune_round(image, _painted(image, truth, (2, 9)), "unet3d", options), "phantom fix", library)
    third = finetune_round(image, _painted(image, truth, (3, 5, 8)), reference2, options)
    reference3 = save_result(third, "phantom fix", library)
    back = previous_round(library, library.card(*reference3.split("@")))
    assert back is not None and back.reference == reference2


def test_a_model_trained_on_painted_slices_of_another_volume_is_a_pretrained_model_there():
    """Every slice of one volume painted (how the sparse benchmark pretrains on BraTS patients), then another
    volume: the model is pretrained for it, not a round continued on it. Its fine-tuning there is round 1 and
    segments the whole volume: a long box painted on two slices near its middle is found from end to end,
    where a new network's clean-up keeps only the slices near the painted ones. On the first volume the same
    model continues as round 2."""
    image, truth = _phantom()
    both = truth.copy()
    both[20:27, 5:15, 5:15] = 1  # every bright box is the structure
    options = dataclasses.replace(TINY, iterations=60)
    dense = finetune_round(image, image.with_array(both), "unet3d", options)  # every slice painted
    other_truth = np.zeros(truth.shape, np.uint8)
    other_truth[2:27, 5:15, 5:15] = 1
    noise = np.random.default_rng(1).normal(0, 5, truth.shape).astype(np.float32)
    other = Volume(noise + 100.0 * other_truth, spacing=image.spacing)
    tuned = finetune_round(other, _painted(other, other_truth, (12, 14)), (dense.net, dense.card), options)
    assert tuned.round == 1 and tuned.card.provenance.round == 1
    assert tuned.labelmap.array[3:26, 10, 10].all()  # far beyond the painted range (11-15 for a new network)
    again = finetune_round(image, _painted(image, both, (3, 8)), (dense.net, dense.card), options)
    assert again.round == 2


def test_a_model_trained_on_whole_volumes_gets_no_scratch_clean_up_but_its_fine_tuning_is_a_round():
    image, truth = _phantom()
    first = finetune_round(image, _painted(image, truth, (3, 8)), "unet3d", dataclasses.replace(TINY, iterations=2))
    card = first.card
    assert round_of(card) == 1 and Start(first.net, card, card.id, same_volume=True).painted_only
    card.provenance.round, card.provenance.notes = 0, "trained by segnets train"
    card.description = "a model trained on whole volumes"
    assert round_of(card) == 0
    assert not Start(first.net, card, card.id, same_volume=True).painted_only
    tuned = finetune_round(
        image, _painted(image, truth, (3, 8)), (first.net, card), dataclasses.replace(TINY, iterations=2)
    )
    assert tuned.round == 1 and tuned.card.provenance.round == 1 and tuned.validation_slices == []
    assert round_options(tuned.card, 1, FinetuneOptions()).learning_rate is None  # the fine-tuning default


@pytest.mark.parametrize("name", ["r1-ts_pulmonary", "R1 TS Pulmonary"])
def test_a_model_saved_under_a_name_is_found_by_that_name(model_library, name):
    library = ModelLibrary(model_library)
    image, truth = _phantom()
    first = finetune_round(image, _painted(image, truth, (3, 8)), "unet3d", dataclasses.replace(TINY, iterations=1))
    reference = save_result(first, name, library)
    assert reference.split("@")[0] == "r1-ts-pulmonary"
    assert library.find(name) == library.find("r1-ts-pulmonary")
    net, card = library.load(name)
    assert card.id == "r1-ts-pulmonary"
    assert load(name)[1].id == "r1-ts-pulmonary"  # as --model gives it: the name the user saved it under
    second = finetune_round(image, _painted(image, truth, (3, 5, 8)), name, dataclasses.replace(TINY, iterations=1))
    assert second.round == 2


def test_the_same_voxels_at_another_spacing_are_another_volume():
    image, truth = _phantom()
    first = finetune_round(image, _painted(image, truth, (3, 8)), "unet3d", dataclasses.replace(TINY, iterations=1))
    assert trained_on_volume(first.card, image)
    assert not trained_on_volume(first.card, Volume(image.array, spacing=(0.7, 0.7, 5.0)))


def test_a_round_given_the_previous_result_keeps_it_away_from_the_added_slice():
    image, truth = _phantom()
    first = finetune_round(image, _painted(image, truth, (3, 8)), "unet3d", dataclasses.replace(TINY, iterations=5))
    shown = np.full(truth.shape, 1, np.uint8)  # a stand-in for what the user has on screen ...
    shown[[3, 8]] = truth[[3, 8]]  # ... where the painted slices show the painting
    second = finetune_round(image, _painted(image, truth, (3, 5, 8)), (first.net, first.card), TINY, previous=shown)
    out = second.labelmap.array
    assert np.array_equal(out[:5], shown[:5]) and np.array_equal(out[7:], shown[7:])  # outside 5 and 6 (nearer 5
    # than 3 or 8): the previous
    assert np.array_equal(out[5], truth[5])  # the painted slice keeps the user's labels
    assert not (out[6] == 1).all()  # slice 6 is the new result's
    shown[5] = truth[5]  # the result already as the user paints slice 5: the correction confirms it
    confirmed = finetune_round(image, _painted(image, truth, (3, 5, 8)), (first.net, first.card), TINY, previous=shown)
    assert np.array_equal(confirmed.labelmap.array, shown)  # nothing beyond slice 5 changes, and 5 is as painted


def test_a_repainted_slice_keeps_the_new_painting_and_updates_the_slices_nearest_it():
    """Round 2 adds slice 5 and also repaints slice 8 (painted in round 1): the shown result holds the new painting on
    8, and the slices nearer 8 than 3 or 5 are the new result's; the rest keeps what was on screen."""
    image, truth = _phantom()
    first = finetune_round(image, _painted(image, truth, (3, 8)), "unet3d", dataclasses.replace(TINY, iterations=5))
    shown = first.labelmap.array.copy()
    shown[9:] = 3  # a stand-in for what the user has on screen beyond the painting
    painting = _painted(image, truth, (3, 5, 8)).array
    painting[8, 5:15, 10:15] = 0  # half of slice 8 erased
    second = finetune_round(image, image.with_array(painting), (first.net, first.card), TINY, previous=shown)
    out = second.labelmap.array
    assert second.added_slices == {0: [5]} and second.repainted_slices == {0: [8]}
    assert second.card.provenance.notes.endswith("slices added: axis 0: 5; slices repainted: axis 0: 8")
    assert np.array_equal(out[8], painting[8]) and np.array_equal(out[5], painting[5])
    assert not (out[9:] == 3).any()  # beyond 8, nearer it than any slice left as it was: the new result
    assert np.array_equal(out[:4], shown[:4])  # nearer 3: as on screen


def test_slices_added_along_two_axes_show_the_whole_new_result_with_every_painted_voxel():
    image, truth = _phantom()
    first = finetune_round(image, _painted(image, truth, (3, 8)), "unet3d", dataclasses.replace(TINY, iterations=5))
    shown = np.full(truth.shape, 3, np.uint8)
    painting = _painted(image, truth, (3, 5, 8)).array
    painting[:, :, 7] = truth[:, :, 7]  # and a sagittal slice
    second = finetune_round(image, image.with_array(painting), (first.net, first.card), TINY, previous=shown)
    assert second.added_slices == {0: [5], 2: [7]}
    assert np.array_equal(second.labelmap.array[:, :, 7], truth[:, :, 7]) and not (second.labelmap.array == 3).any()


def test_a_previous_result_of_another_size_is_refused_before_training():
    image, truth = _phantom()
    first = finetune_round(image, _painted(image, truth, (3, 8)), "unet3d", dataclasses.replace(TINY, iterations=1))
    calls = []
    with pytest.raises(SegNetsError, match="previous result has"):
        finetune_round(
            image,
            _painted(image, truth, (3, 5, 8)),
            (first.net, first.card),
            TINY,
            previous=np.zeros((28, 16, 16), np.uint8),
            progress=lambda fraction, stage: calls.append(stage),
        )
    assert calls == []  # nothing ran


def test_a_correction_refined_only_where_it_changes_the_result_is_the_full_correction_there():
    """Given the result on screen, the walkers run only between the painted slices beside the added one; the
    update equals the whole round's result merged by :func:`local_update`."""
    image, truth = _phantom()
    refined = dataclasses.replace(TINY, refine=True)
    first = finetune_round(image, _painted(image, truth, (3, 8)), "unet3d", refined)
    shown = np.zeros(truth.shape, np.uint8)  # on screen: nothing near slice 5, so the correction changes it
    shown[[3, 8]] = truth[[3, 8]]  # and the painted slices as painted
    annotation = _painted(image, truth, (3, 5, 8))
    full = finetune_round(image, annotation, (first.net, first.card), refined)
    windowed = finetune_round(image, annotation, (first.net, first.card), refined, previous=shown)
    merged = local_update(shown, full.labelmap.array, [3, 8], [5], 0, painting=annotation.array)
    assert np.array_equal(windowed.network_labelmap, full.network_labelmap)  # the same network
    assert np.array_equal(windowed.labelmap.array, merged) and not np.array_equal(merged, shown)


def test_a_round_whose_annotation_lost_the_earlier_painting_is_refused_or_noted():
    """A round-2 file holding only the new slice would learn the earlier slices as background: refused, naming the
    file; one earlier slice left empty is learned as background with a note; a previous result that cannot be
    used (a new network) is noted too."""
    image, truth = _phantom()
    options = dataclasses.replace(TINY, iterations=2)
    first = finetune_round(image, _painted(image, truth, (3, 8)), "unet3d", options)
    named = dataclasses.replace(options, annotation_name="round2.seg.nrrd")
    with pytest.raises(
        SegNetsError, match=r"round2\.seg\.nrrd holds none of the painting of the earlier rounds"
    ) as lost:
        finetune_round(image, _painted(image, truth, (5,)), (first.net, first.card), named)
    expect("round-lost-painting", str(lost.value))
    partly = finetune_round(image, _painted(image, truth, (3, 5)), (first.net, first.card), named)
    assert any("axis 0: 8" in note and "all background" in note for note in partly.notes), partly.notes
    assert partly.card.provenance.notes.endswith("slices emptied (learned as all background): axis 0: 8")
    assert not partly.labelmap.array[8].any()  # as the user's file says
    fresh = finetune_round(image, _painted(image, truth, (3, 8)), "unet3d", options, previous=truth)
    assert any("previous result was not used" in note for note in fresh.notes)


def test_stepping_back_over_a_removed_round_says_which_version_is_missing(model_library):
    """Round 3's previous round (version 1.1.0) removed from the library: stepping back names it and the round still
    kept, rather than answering as if round 3 were the first; the library is left as it is."""
    from model_helpers import snapshot, tiny_model

    from SegNetsLib.card.card import Provenance

    library = ModelLibrary(model_library)
    net, first = tiny_model(id="liver", provenance=Provenance(round=1))
    library.add(net, first)
    for version, number, base in (("1.1.0", 2, "1.0.0"), ("1.2.0", 3, "1.1.0")):
        round_provenance = Provenance(round=number, base_model_id="liver", base_model_version=base)
        library.add(net, dataclasses.replace(first, version=version, provenance=round_provenance))
    library.remove("liver", "1.1.0")
    before = snapshot(model_library)
    with pytest.raises(SegNetsError, match=r"liver@1\.2\.0 \(round 3\) continued liver@1\.1\.0") as missing:
        previous_round(library, library.card("liver", "1.2.0"))
    expect("round-removed", str(missing.value))
    assert "liver@1.0.0" in str(missing.value)
    assert snapshot(model_library) == before
