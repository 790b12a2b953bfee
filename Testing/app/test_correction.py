"""The correction loop through SegmentationLogic on a real MRML scene: round 1, the suggested slice, one
more painted slice, round 2 warm, and stepping back (SegNetsLib.app.correction)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("slicer")

from robustness_cases import expect  # noqa: E402

from SegNetsLib import mrml as bridge  # noqa: E402
from SegNetsLib.app.correction import (  # noqa: E402
    describe_round,
    node_ijk_to_ras,
    slice_centre_ijk,
    step_back,
    suggestion_ras,
)
from SegNetsLib.app.logic import SegmentationLogic  # noqa: E402
from SegNetsLib.app.process_worker import ProcessWorker  # noqa: E402
from SegNetsLib.app.selftest import add_tiny_model, load_case, segment_mask, wait  # noqa: E402
from SegNetsLib.app.worker import ThreadWorker  # noqa: E402
from SegNetsLib.core.errors import SegNetsError  # noqa: E402
from SegNetsLib.core.volume import Volume  # noqa: E402
from SegNetsLib.finetune.rounds import round_history  # noqa: E402
from SegNetsLib.finetune.suggest import SliceSuggestion  # noqa: E402
from SegNetsLib.models.library import ModelLibrary  # noqa: E402

SMALL = (slice(6, 22), slice(8, 40), slice(8, 40))  # 16 x 32 x 32 voxels of the self-test crop


@pytest.fixture(params=["thread", "process"])
def scene_case(request, mrml, data_dir, tmp_path):
    """(logic, volume node, annotation node, segment id, reference liver): liver painted on 2 axial slices."""
    import slicer.util

    image, reference = load_case(data_dir)
    start = np.array([SMALL[2].start, SMALL[1].start, SMALL[0].start, 1.0])
    small = Volume(image.array[SMALL].copy(), image.spacing, tuple((image.ijk_to_lps() @ start)[:3]), image.direction)
    liver = reference[SMALL]
    volume_node = bridge.volume_node_from_volume(mrml.scene, small, "CT")
    mask = np.zeros(small.shape_kji, np.uint8)
    mask[[4, 11]] = liver[[4, 11]]
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "annotation")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segment_id = node.GetSegmentation().AddEmptySegment("", "liver", [0.1, 0.8, 0.2])
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, node, segment_id, volume_node)
    library = ModelLibrary(tmp_path / "models")
    add_tiny_model(library, "all-liver", foreground_bias=20.0, patch_size=(16, 32, 32))
    worker = ThreadWorker() if request.param == "thread" else ProcessWorker()  # the panel's worker is a process
    logic = SegmentationLogic(mrml.scene, library, worker)
    yield logic, volume_node, node, segment_id, liver, mask
    logic.worker.shutdown()


def test_a_correction_round_continues_from_the_result_and_names_the_next_slice(scene_case):
    import slicer.util

    logic, volume_node, annotation, segment_id, liver, mask = scene_case
    job = logic.start_finetune(volume_node, annotation, [segment_id], "all-liver", 60.0, device="cpu", iterations=4)
    first = logic.finish_finetune(wait(job))
    assert first.kept == "fine-tuned" and first.round == 1
    assert first.suggestion is not None and first.suggestion.axis == 0 and first.suggestion.index not in (4, 11)
    reference1 = f"{first.model.id}@{first.model.version}"
    assert "Round 1" in describe_round(first.round, first.suggestion)

    # the user paints the suggested slice and clicks once: Fine-tune from the model just made
    index = first.suggestion.index
    mask[index] = liver[index]
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, annotation, segment_id, volume_node)
    before = segment_mask(annotation, "liver", volume_node).copy()
    job = logic.start_finetune(
        volume_node, annotation, [segment_id], reference1, 300.0, device="cpu", iterations=4, reviewed={0: [index]}
    )
    second = logic.finish_finetune(wait(job))
    assert second.round == 2 and second.model.version != first.model.version
    card = second.model.card
    assert card.provenance.round == 2 and card.provenance.annotated_slices["0"] == sorted([4, 11, index])
    assert f"axis 0: {index}" in card.provenance.notes
    assert np.array_equal(segment_mask(annotation, "liver", volume_node), before), "the annotation is unchanged"
    # the update changes the result only on the slices nearer the added slice than slice 4 or 11
    outside = np.array([abs(k - index) >= min(abs(k - 4), abs(k - 11)) for k in range(liver.shape[0])])
    shown1 = segment_mask(first.segmentation.segmentation_node, "Liver", volume_node)
    shown2 = segment_mask(second.segmentation.segmentation_node, "Liver", volume_node)
    assert outside.sum() >= 8 and np.array_equal(shown1[outside], shown2[outside])

    # every round is kept, and the user can step back to the first
    reference2 = f"{second.model.id}@{second.model.version}"
    assert [entry.round for entry in round_history(logic.library, second.model.id)] == [1, 2]
    back = step_back(logic.library, reference2)
    assert back is not None and back.reference == reference1
    assert step_back(logic.library, reference1) is None
    # the first round's result can be shown again (a new node, voxel for voxel)
    again = logic.round_segmentation(reference1, volume_node)
    assert again.segmentation_node is not first.segmentation.segmentation_node
    assert np.array_equal(segment_mask(again.segmentation_node, "Liver", volume_node), shown1)
    base = f"all-liver@{first.model.card.provenance.base_model_version}"
    assert logic.round_segmentation(base, volume_node) is None  # the model fine-tuned from: nothing to show again
    other = bridge.volume_node_from_volume(volume_node.GetScene(), Volume(np.zeros_like(liver, np.float32)), "B")
    assert logic.round_segmentation(reference1, other) is None  # a round of another volume is never shown on it
    assert second.summary(logic.library).startswith(f"New model {second.model.id} {second.model.version}.")


def test_the_suggested_slice_maps_to_its_place_in_the_volume(scene_case):
    _, volume_node, *_ = scene_case
    shape = volume_node.GetImageData().GetDimensions()[::-1]
    suggestion = SliceSuggestion(axis=0, index=7, score=10.0, measure="area")
    i, j, k = slice_centre_ijk(shape, suggestion)
    assert k == 7 and i == (shape[2] - 1) / 2
    ras = suggestion_ras(node_ijk_to_ras(volume_node), shape, suggestion)
    matrix = node_ijk_to_ras(volume_node)
    assert np.allclose(ras, (matrix @ np.array([i, j, 7.0, 1.0]))[:3])
    # moving one slice along the axis moves the point by one slice spacing
    farther = suggestion_ras(matrix, shape, SliceSuggestion(0, 8, 1.0, "area"))
    assert np.linalg.norm(farther - ras) == pytest.approx(volume_node.GetSpacing()[2])
    assert "axial slice 7" in describe_round(2, suggestion, 9.4) and "(9 s)" in describe_round(2, suggestion, 9.4)
    painted = SliceSuggestion(0, 7, 10.0, "area", painted=(2, 12))
    assert "axial slice 7 next (halfway between the painted slices 2 and 12), then Update" in describe_round(2, painted)


def test_the_suggested_slice_is_named_by_its_plane_and_found_in_oblique_and_sagittal_volumes(mrml):
    """A sagittal MR's axis 0 is sagittal, a tilted-gantry CT's axis 0 axial (flipped axes too); the point the views
    jump to lies on the suggested slice along axis 1 of the oblique, flipped CT."""
    tilt = np.deg2rad(20.0)
    gantry = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    directions = {  # LPS columns i, j, k -> the planes of array axes 0, 1, 2
        "sagittal MR": (np.array([[0.0, 0, 1], [1, 0, 0], [0, -1, 0]]), ("sagittal", "axial", "coronal")),
        "tilted CT": (gantry @ np.diag([-1.0, 1.0, -1.0]), ("axial", "coronal", "sagittal")),
    }
    for name, (direction, planes) in directions.items():
        volume = Volume(np.zeros((10, 12, 14), np.int16), (0.7, 0.8, 5.0), (-12.5, 33.3, 101.7), direction)
        node = bridge.volume_node_from_volume(mrml.scene, volume, name)
        matrix = node_ijk_to_ras(node)
        for axis, plane in enumerate(planes):
            text = describe_round(2, SliceSuggestion(axis, 3, 1.0, "area", painted=(1, 5)), 9.4, matrix)
            assert f"paint {plane} slice 3 next" in text, (name, text)
    point = suggestion_ras(matrix, volume.shape_kji, SliceSuggestion(1, 7, 1.0, "area"))
    i, j, k = (np.linalg.inv(matrix) @ np.append(point, 1.0))[:3]
    assert j == pytest.approx(7.0) and i == pytest.approx(6.5) and k == pytest.approx(4.5)


def test_a_round_after_a_segment_was_renamed_is_refused_rather_than_unlearning_its_class(mrml, tmp_path):
    """Round 1 learns 'liver' and 'tumor'; the user renames 'tumor' to 'lesion' and clicks Update: the round took
    'lesion' for a new class and learned 'tumor' as background on every painted slice, without a word."""
    import slicer.util

    rng = np.random.default_rng(0)
    image = rng.normal(0, 5, (16, 24, 24)).astype(np.float32)
    liver, tumor = np.zeros(image.shape, np.uint8), np.zeros(image.shape, np.uint8)
    liver[3:13, 4:12, 4:20], tumor[3:13, 14:20, 6:18] = 1, 1
    image += 100.0 * liver + 200.0 * tumor
    volume_node = bridge.volume_node_from_volume(mrml.scene, Volume(image, (2.0, 2.0, 2.0)), "CT")
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "annotation")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segmentation = node.GetSegmentation()
    ids = [
        segmentation.AddEmptySegment("", name, color) for name, color in (("liver", [0, 1, 0]), ("tumor", [1, 0, 0]))
    ]
    for segment_id, truth in zip(ids, (liver, tumor)):
        painted = np.zeros_like(truth)
        painted[[4, 7, 11]] = truth[[4, 7, 11]]
        slicer.util.updateSegmentBinaryLabelmapFromArray(painted, node, segment_id, volume_node)
    library = ModelLibrary(tmp_path / "models")
    logic = SegmentationLogic(mrml.scene, library, ThreadWorker())
    try:
        first = logic.finish_finetune(wait(logic.start_finetune(volume_node, node, ids, "unet3d", 60, iterations=2)))
        reference = f"{first.model.id}@{first.model.version}"
        segmentation.GetSegment(ids[1]).SetName("lesion")
        with pytest.raises(SegNetsError, match=r"holds no 'tumor' \(label 2\).*segment 'lesion' its name back") as lost:
            logic.finish_finetune(wait(logic.start_finetune(volume_node, node, ids, reference, 60, iterations=2)))
        expect("round-lost-label", str(lost.value))
        assert library.versions(first.model.id) == [first.model.version]  # nothing saved
    finally:
        logic.worker.shutdown()


def _liver_painted_on_3_and_8(mrml, image: np.ndarray, truth: np.ndarray, name: str):
    """(volume node of ``image`` [k, j, i] named ``name``, its annotation segmentation, the "liver" segment's id)
    with ``truth`` painted on slices 3 and 8, as a user would."""
    import slicer.util

    volume_node = bridge.volume_node_from_volume(mrml.scene, Volume(image), name)
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"annotation {name}")
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segment_id = node.GetSegmentation().AddEmptySegment("", "liver", [0.1, 0.8, 0.2])
    painted = np.zeros_like(truth)
    painted[[3, 8]] = truth[[3, 8]]
    slicer.util.updateSegmentBinaryLabelmapFromArray(painted, node, segment_id, volume_node)
    return volume_node, node, segment_id


def test_the_results_kept_for_stepping_back_are_those_of_the_volume_fine_tuned_last(mrml, tmp_path):
    """Every round's labelmap stayed in memory until Slicer closed, every volume's (about 100 MB a round for a
    512 x 512 x 400 CT): after a round on another volume only that volume's rounds are kept."""
    logic = SegmentationLogic(mrml.scene, ModelLibrary(tmp_path / "models"), ThreadWorker())
    rounds = {}
    try:
        for seed in (0, 1):
            image = np.random.default_rng(seed).normal(0, 5, (12, 20, 20)).astype(np.float32)
            truth = np.zeros(image.shape, np.uint8)
            truth[2:10, 5:15, 5:15] = 1
            volume_node, node, segment_id = _liver_painted_on_3_and_8(mrml, image + 100.0 * truth, truth, f"CT {seed}")
            job = logic.start_finetune(volume_node, node, [segment_id], "unet3d", 60.0, device="cpu", iterations=2)
            outcome = logic.finish_finetune(wait(job))
            rounds[seed] = (f"{outcome.model.id}@{outcome.model.version}", volume_node)
    finally:
        logic.worker.shutdown()
    assert logic.round_segmentation(*rounds[1]) is not None  # the volume fine-tuned last: its round is kept
    assert logic.round_segmentation(*rounds[0]) is None, "the first volume's result is still held"
    assert len(logic._shown) == 1


def test_a_fine_tune_on_another_volume_says_nothing_of_a_previous_result(mrml, tmp_path):
    """Fine-tune on volume B from the model of a round on volume A (the web page after an upload, the panel after
    choosing another volume) ended with "Note: the previous result was not used ...": A's result was passed as B's."""
    logic = SegmentationLogic(mrml.scene, ModelLibrary(tmp_path / "models"), ThreadWorker())
    rng = np.random.default_rng(0)
    truth = np.zeros((12, 20, 20), np.uint8)
    truth[2:10, 5:15, 5:15] = 1
    start, notes = "unet3d", []
    try:
        for name in ("A", "B"):  # the same shape and spacing, other voxels
            image = rng.normal(0, 5, truth.shape).astype(np.float32) + 100.0 * truth
            volume_node, node, segment_id = _liver_painted_on_3_and_8(mrml, image, truth, name)
            job = logic.start_finetune(volume_node, node, [segment_id], start, 60.0, device="cpu", iterations=2)
            outcome = logic.finish_finetune(wait(job))
            start, notes = f"{outcome.model.id}@{outcome.model.version}", outcome.notes
    finally:
        logic.worker.shutdown()
    assert outcome.round == 1 and outcome.kept == "fine-tuned"
    assert not [note for note in notes if "previous result" in note], notes
