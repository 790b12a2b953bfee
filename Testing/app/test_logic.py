"""SegmentationLogic on a real MRML scene (slicer-core) with a tiny model: nodes, RoIs, cancel, errors."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

pytest.importorskip("slicer")

from SegNetsLib import mrml as bridge  # noqa: E402
from SegNetsLib.app.logic import SegmentationLogic, card_summary, device_choices  # noqa: E402
from SegNetsLib.app.process_worker import ProcessWorker  # noqa: E402
from SegNetsLib.app.selftest import LIVER, add_tiny_model, load_case, segment_mask, wait  # noqa: E402
from SegNetsLib.app.tasks import crop_volume  # noqa: E402
from SegNetsLib.app.worker import ThreadWorker  # noqa: E402
from SegNetsLib.core.errors import SegNetsError  # noqa: E402
from SegNetsLib.core.volume import Volume  # noqa: E402
from SegNetsLib.models.library import ModelLibrary  # noqa: E402

SMALL = (slice(6, 22), slice(8, 40), slice(8, 40))  # 16 x 32 x 32 voxels of the self-test crop


@pytest.fixture(scope="module")
def small_ct(data_dir) -> Volume:
    image, _ = load_case(data_dir)
    start = np.array([SMALL[2].start, SMALL[1].start, SMALL[0].start, 1.0])
    return Volume(image.array[SMALL].copy(), image.spacing, tuple((image.ijk_to_lps() @ start)[:3]), image.direction)


def mrml_bridge_volume(harness, volume: Volume):
    return bridge.volume_node_from_volume(harness.scene, volume, "CT")


def _nodes(scene) -> Counter:
    """Node classes in the scene and how many of each (the subject hierarchy singleton, created on demand, aside)."""
    names = Counter(scene.GetNthNode(i).GetClassName() for i in range(scene.GetNumberOfNodes()))
    names.pop("vtkMRMLSubjectHierarchyNode", None)
    return names


@pytest.fixture(scope="module")
def process_worker():
    """One warm worker child process for the module's tests (as the panel keeps one)."""
    worker = ProcessWorker()
    yield worker
    worker.shutdown()


@pytest.fixture(params=["thread", "process"])
def logic(request, mrml, tmp_path):
    """The logic with each worker: a thread, and the child process the Slicer panel uses."""
    library = ModelLibrary(tmp_path / "models")
    add_tiny_model(library, "all-liver", foreground_bias=20.0, patch_size=(16, 32, 32))
    worker = ThreadWorker() if request.param == "thread" else request.getfixturevalue("process_worker")
    logic = SegmentationLogic(mrml.scene, library, worker)
    yield logic
    if request.param == "thread":
        logic.worker.shutdown()


def test_segment_creates_named_segments_next_to_the_volume(mrml, logic, small_ct):
    volume_node = mrml_bridge_volume(mrml, small_ct)
    job = wait(logic.start_segment(volume_node, "all-liver", device="cpu", roi="off"))
    assert job.progress().fraction == 1.0
    result = logic.finish_segment(job)
    node = result.segmentation_node
    assert node.GetName() == "CT Tiny test 3D U-Net"
    segment = node.GetSegmentation().GetNthSegment(0)
    assert (segment.GetName(), segment.GetTerminology()) == ("Liver", LIVER.terminology.as_slicer_string())
    assert node.GetNodeReferenceID(node.GetReferenceImageGeometryReferenceRole()) == volume_node.GetID()
    assert segment_mask(node, "Liver", volume_node).all()  # the biased model calls every voxel liver
    assert result.roi_node is None and result.rois == []


def test_segment_inside_an_roi_node_leaves_the_outside_empty_and_keeps_the_users_roi(mrml, logic, small_ct):
    volume_node = mrml_bridge_volume(mrml, small_ct)
    box = (2, 5, 7, 12, 25, 30)
    roi = bridge.roi_node_from_box(volume_node, box, "moved RoI")
    for _ in range(2):  # "Only inside ROI" twice: the user's ROI node stays the one used and shown
        result = logic.finish_segment(wait(logic.start_segment(volume_node, "all-liver", device="cpu", roi_node=roi)))
        assert result.roi_node is roi
    assert _nodes(mrml.scene)["vtkMRMLMarkupsROINode"] == 1
    expected = np.zeros(small_ct.shape_kji, bool)
    expected[2:12, 5:25, 7:30] = True
    assert np.array_equal(segment_mask(result.segmentation_node, "Liver", volume_node), expected)
    assert [tuple(b) for b in result.rois] == [box]
    assert bridge.box_from_roi_node(result.roi_node, volume_node) == box


def test_automatic_roi_is_shown_as_a_movable_roi_node(mrml, logic, small_ct):
    volume_node = mrml_bridge_volume(mrml, small_ct)
    result = logic.finish_segment(wait(logic.start_segment(volume_node, "all-liver", device="cpu", roi="auto")))
    assert result.rois, "the coarse pass of an all-liver model finds a region"
    assert result.roi_node.IsA("vtkMRMLMarkupsROINode")
    union = tuple(min(b[i] for b in result.rois) for i in range(3)) + tuple(
        max(b[i] for b in result.rois) for i in range(3, 6)
    )
    assert bridge.box_from_roi_node(result.roi_node, volume_node) == union


def test_cancel_leaves_the_scene_as_it_was(mrml, logic, small_ct):
    volume_node = mrml_bridge_volume(mrml, small_ct)
    nodes_before = _nodes(mrml.scene)
    job = logic.start_segment(volume_node, "all-liver", device="cpu", roi="off")
    job.cancel()
    assert logic.finish_segment(wait(job)) is None
    assert job.cancelled
    assert _nodes(mrml.scene) == nodes_before


def test_an_output_node_is_reused_and_its_segments_replaced(mrml, logic, small_ct):
    volume_node = mrml_bridge_volume(mrml, small_ct)
    output = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    output.GetSegmentation().AddEmptySegment("old", "Old", [0, 0, 1])
    result = logic.finish_segment(wait(logic.start_segment(volume_node, "all-liver", device="cpu", roi="off")), output)
    assert result.segmentation_node is output
    segmentation = output.GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())] == ["Liver"]


def test_a_missing_model_is_refused_before_any_work(mrml, logic, small_ct):
    volume_node = mrml_bridge_volume(mrml, small_ct)
    with pytest.raises(SegNetsError, match="'nope' is not in the library"):
        logic.start_segment(volume_node, "nope")


def test_a_volume_removed_while_segmenting_is_reported(mrml, logic, small_ct):
    volume_node = mrml_bridge_volume(mrml, small_ct)
    job = logic.start_segment(volume_node, "all-liver", device="cpu", roi="off")
    mrml.scene.RemoveNode(volume_node)
    with pytest.raises(SegNetsError, match="was removed from the scene"):
        logic.finish_segment(wait(job))


def test_a_closed_scene_puts_no_result_on_a_volume_later_given_the_same_id(mrml, logic, small_ct):
    """File > Close Scene while Segment runs, then another volume loaded: node IDs are given out again, and the
    result must not land on the new volume that took the old one's ID."""
    volume_node = mrml_bridge_volume(mrml, small_ct)
    job = logic.start_segment(volume_node, "all-liver", device="cpu", roi="off")
    old_id = volume_node.GetID()
    mrml.scene.Clear(False)
    other = bridge.volume_node_from_volume(mrml.scene, Volume(small_ct.array[:4].copy(), (1.0, 1.0, 1.0)), "Other")
    assert other.GetID() == old_id  # the reuse this guards against
    nodes_before = _nodes(mrml.scene)
    with pytest.raises(SegNetsError, match=r"^volume 'CT' was removed from the scene .*; no segmentation was made\.$"):
        logic.finish_segment(wait(job))
    assert _nodes(mrml.scene) == nodes_before


def test_crop_volume_keeps_physical_positions(small_ct):
    box = (1, 2, 3, 5, 9, 11)
    part = crop_volume(small_ct, box)
    assert part.shape_kji == (4, 7, 8)
    # voxel (0, 0, 0) of the crop is voxel (i=3, j=2, k=1) of the volume
    np.testing.assert_allclose(part.ijk_to_lps() @ [0, 0, 0, 1], small_ct.ijk_to_lps() @ [3, 2, 1, 1])
    assert np.array_equal(part.array, small_ct.array[1:5, 2:9, 3:11])


def test_panel_helpers_describe_devices_and_cards(logic):
    assert device_choices()[:2] == [("Auto", "auto"), ("CPU", "cpu")]
    text = card_summary(logic.library.card("all-liver"))
    assert "Architecture: unet3d" in text and "Labels: Liver" in text and "version 1.0.0" in text


# --- Fine-tune ---------------------------------------------------------------------------------------


@pytest.fixture
def painted(mrml, small_ct, data_dir):
    """(volume node, annotation node, segment id): "Liver" painted on 2 axial slices of the small CT."""
    import slicer.util

    volume_node = mrml_bridge_volume(mrml, small_ct)
    _, reference = load_case(data_dir)
    mask = np.zeros(small_ct.shape_kji, np.uint8)
    mask[[4, 11]] = reference[SMALL][[4, 11]]
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "annotation")
    node.CreateDefaultDisplayNodes()  # as the Segment Editor does
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segment_id = node.GetSegmentation().AddEmptySegment("", "liver", [0.1, 0.8, 0.2])
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, node, segment_id, volume_node)
    assert mask.any()
    return volume_node, node, segment_id


def test_finetune_saves_a_new_version_and_segments_the_volume(mrml, logic, painted):
    volume_node, annotation, segment_id = painted
    before = segment_mask(annotation, "liver", volume_node).copy()
    job = logic.start_finetune(volume_node, annotation, [segment_id], "all-liver", 60.0, device="cpu", iterations=10)
    outcome = logic.finish_finetune(wait(job))
    extra = job.progress().extra  # the training loop's records reach the polling thread
    assert job.progress().fraction == 1.0 and extra["iteration"] >= 5 and extra["loss"] > 0
    assert outcome.kept in ("fine-tuned", "base")
    if outcome.kept == "fine-tuned":  # a new version beside the base, never over it
        assert (outcome.model.id, outcome.model.version) == ("all-liver", "1.1.0")
        assert logic.library.versions("all-liver") == ["1.0.0", "1.1.0"]
        assert outcome.model.card.provenance.base_model_version == "1.0.0"
    node = outcome.segmentation.segmentation_node
    assert outcome.volume_node is volume_node  # the suggested slice is one of its slices
    assert node.GetSegmentation().GetNthSegment(0).GetName() == "Liver"  # the model's label, matched to "liver"
    result = segment_mask(node, "Liver", volume_node)
    assert (result[before > 0] == 1).all(), "every painted voxel keeps the user's label"
    assert np.array_equal(segment_mask(annotation, "liver", volume_node), before), "the annotation is unchanged"


def test_cancelled_finetune_saves_nothing(mrml, logic, painted):
    volume_node, annotation, segment_id = painted
    nodes_before = _nodes(mrml.scene)
    job = logic.start_finetune(volume_node, annotation, [segment_id], "all-liver", 60.0, device="cpu")
    job.cancel()
    assert logic.finish_finetune(wait(job)) is None
    assert logic.library.versions("all-liver") == ["1.0.0"]
    assert _nodes(mrml.scene) == nodes_before


def test_a_volume_removed_while_finetuning_says_the_model_was_saved_and_the_annotation_keeps_new_strokes(
    mrml, logic, painted
):
    """The volume deleted and strokes added while Fine-tune runs: the model is saved all the same, and the error
    says so in one sentence; the job learnt the slices painted when it started and left the new strokes alone."""
    import slicer.util

    volume_node, annotation, segment_id = painted
    job = logic.start_finetune(volume_node, annotation, [segment_id], "all-liver", 60.0, device="cpu", iterations=3)
    more = segment_mask(annotation, "liver", volume_node).copy()
    more[8, 10:20, 10:20] = 1  # a third slice painted while the job runs
    slicer.util.updateSegmentBinaryLabelmapFromArray(more, annotation, segment_id, volume_node)
    annotation.SetName("renamed while running")
    mrml.scene.RemoveNode(volume_node)
    with pytest.raises(SegNetsError) as raised:
        logic.finish_finetune(wait(job))
    message = str(raised.value)
    assert message.startswith("volume 'CT' was removed from the scene") and "no segmentation was made" in message
    versions = logic.library.versions("all-liver")
    if versions == ["1.0.0", "1.1.0"]:
        assert message.endswith("the new model all-liver 1.1.0 is in the library.")
        trained_on = logic.library.card("all-liver", "1.1.0").provenance.trained_on[0]
        assert trained_on["annotated_slices"]["0"] == [4, 11], "the annotation as it was when the job started"
    else:
        assert versions == ["1.0.0"] and "no new model was saved" in message
    assert _nodes(mrml.scene)["vtkMRMLSegmentationNode"] == 1  # the annotation alone: no result node
    assert np.array_equal(segment_mask(annotation, "liver", volume_node), more), "the new strokes are kept"


def test_finetune_refuses_a_zero_budget(mrml, logic, painted):
    volume_node, annotation, segment_id = painted
    with pytest.raises(SegNetsError, match="not positive"):
        logic.start_finetune(volume_node, annotation, [segment_id], "all-liver", 0, device="cpu")


def test_finetune_refuses_a_segment_wholly_under_a_later_one(mrml, logic, painted):
    """A lesion painted inside the liver in its own layer, listed before it: the export would draw the liver over
    it and the lesion would silently not be learned; it is refused naming it (the command line refuses such a
    .seg.nrrd too)."""
    import slicer.util

    volume_node, annotation, liver = painted
    inside = np.zeros(segment_mask(annotation, "liver", volume_node).shape, np.uint8)
    where = np.argwhere(segment_mask(annotation, "liver", volume_node))[0]
    inside[tuple(where)] = 1
    segmentation = annotation.GetSegmentation()
    lesion = segmentation.AddEmptySegment("", "lesion", [0.9, 0.9, 0.1])
    slicer.util.updateSegmentBinaryLabelmapFromArray(inside, annotation, lesion, volume_node)
    assert segmentation.GetNumberOfLayers() == 2  # overlapping: each its own layer
    with pytest.raises(SegNetsError, match="segment 'lesion' of 'annotation' lies wholly under later segments"):
        logic.start_finetune(volume_node, annotation, [lesion, liver], "unet3d", 60.0, device="cpu", iterations=1)
    assert segment_mask(annotation, "lesion", volume_node).sum() == 1  # the painting as it was


def test_a_finetuned_model_the_library_cannot_take_is_kept_and_the_result_still_shown(mrml, logic, painted):
    from fuzz_helpers import read_only_folder

    volume_node, annotation, segment_id = painted
    before = [(entry.id, entry.version) for entry in logic.library.list()]
    with read_only_folder(logic.library.root):
        job = logic.start_finetune(volume_node, annotation, [segment_id], "unet3d", 60.0, device="cpu", iterations=5)
        outcome = logic.finish_finetune(wait(job))
    assert [(entry.id, entry.version) for entry in logic.library.list()] == before
    assert outcome.kept == "fine-tuned" and outcome.segmentation.segmentation_node is not None
    kept = outcome.model.path
    assert logic.library.root not in kept.parents and (kept / "card.json").is_file()
    assert any(str(kept) in note and "segnets models import" in note for note in outcome.notes)


def test_a_finetune_summary_says_which_model_was_kept_and_where_with_the_runs_notes(tmp_path):
    from SegNetsLib.app.logic import FinetuneOutcome
    from SegNetsLib.models.library import ModelEntry, ModelLibrary

    library = ModelLibrary(tmp_path / "models")

    def outcome(path, kept, notes=()):
        return FinetuneOutcome(ModelEntry("liver", "1.1.0", path, None), None, 0.8, kept, list(notes))

    inside = outcome(
        tmp_path / "models" / "liver" / "1.1.0", "fine-tuned", ["refinement skipped: 9 s needed, 3 s left"]
    )
    assert inside.in_library(library)
    assert inside.summary(library) == "New model liver 1.1.0. Note: refinement skipped: 9 s needed, 3 s left."
    base = outcome(tmp_path / "models" / "liver" / "1.0.0", "base")
    assert "base model liver 1.1.0 did better" in base.summary(library) and "no new model" in base.summary(library)
    aside = outcome(tmp_path / "recovered" / "liver-1.1.0", "fine-tuned", ["the model is kept in /x/liver."])
    assert not aside.in_library(library)
    assert (
        aside.summary(library)
        == "New model liver 1.1.0, kept outside the library. Note: the model is kept in /x/liver."
    )


def test_the_panels_import_takes_a_zip_or_a_card_json_and_refuses_bare_weights_naming_the_command(tmp_path):
    """The panel cannot ask for the architecture and labels bare weights need: its Import says which command takes
    them, where the library alone names bare options ('--architecture') as if the panel had them."""
    import torch
    from safetensors.torch import save_file

    from SegNetsLib.app.logic import import_model_file

    source = ModelLibrary(tmp_path / "source")
    entry = add_tiny_model(source, "tiny", patch_size=(8, 16, 16))
    zipped = source.export(entry.id, tmp_path / "tiny.zip")
    assert import_model_file(ModelLibrary(tmp_path / "a"), zipped).id == "tiny"
    assert import_model_file(ModelLibrary(tmp_path / "b"), str(entry.path / "card.json")).id == "tiny"
    for name in ("unet.safetensors", "unet.PTH"):
        weights = tmp_path / name
        save_file({"w": torch.zeros(2)}, str(weights)) if name.endswith("safetensors") else torch.save({}, weights)
        with pytest.raises(SegNetsError, match=rf"^{name}: bare weights .*'segnets models import'") as error:
            import_model_file(ModelLibrary(tmp_path / "c"), weights)
        assert "(--architecture, --labels)" in str(error.value) and str(error.value).count(". ") == 0


def test_a_segmentation_painted_beyond_the_volume_is_named_and_its_part_outside_noted(mrml, logic, small_ct):
    """A segmentation painted on a taller grid (the volume cropped since, say): all of it outside the volume was
    refused as 'no annotated slice: ... --slices axis:i,j', a command-line flag, though the user had painted; a slice
    of it outside was left out without a word."""
    import slicer.util

    volume_node = mrml_bridge_volume(mrml, small_ct)
    taller = Volume(np.zeros((24, 32, 32), np.int16), small_ct.spacing, small_ct.origin, small_ct.direction)
    taller_node = bridge.volume_node_from_volume(mrml.scene, taller, "taller")
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "annotation")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(taller_node)
    segment_id = node.GetSegmentation().AddEmptySegment("", "liver", [0.1, 0.8, 0.2])
    painted = np.zeros(taller.shape_kji, np.uint8)
    painted[[18, 21], 8:20, 8:20] = 1  # beyond the volume's 16 slices
    slicer.util.updateSegmentBinaryLabelmapFromArray(painted, node, segment_id, taller_node)
    with pytest.raises(SegNetsError, match=r"'annotation' is painted only outside volume 'CT' \(288 voxels beyond"):
        logic.start_finetune(volume_node, node, [segment_id], "unet3d", 60.0, device="cpu", iterations=1)

    painted[[4, 11], 8:20, 8:20] = 1  # two slices inside too: learned, the rest said to be left out
    slicer.util.updateSegmentBinaryLabelmapFromArray(painted, node, segment_id, taller_node)
    job = logic.start_finetune(volume_node, node, [segment_id], "unet3d", 60.0, device="cpu", iterations=1)
    outcome = logic.finish_finetune(wait(job))
    assert outcome.notes[0] == "288 painted voxels lie outside volume 'CT': they were left out"
    assert slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, taller_node).sum() == 576  # as painted


def test_a_painting_note_in_the_panel_gives_advice_a_segmentation_can_follow(mrml, logic, small_ct, data_dir):
    """A structure left out of a painted slice between two that hold it: the note told panel users to 'mark the
    parts you did not paint 255', a label value no segment of a segmentation can take."""
    import slicer.util

    volume_node = mrml_bridge_volume(mrml, small_ct)
    _, reference = load_case(data_dir)
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "annotation")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    liver = node.GetSegmentation().AddEmptySegment("", "liver", [0.1, 0.8, 0.2])
    lesion = node.GetSegmentation().AddEmptySegment("", "lesion", [0.8, 0.8, 0.2])
    painted = np.zeros(small_ct.shape_kji, np.uint8)
    painted[[2, 14]] = reference[SMALL][[2, 14]]
    slicer.util.updateSegmentBinaryLabelmapFromArray(painted, node, liver, volume_node)
    painted[:] = 0
    painted[8, 3:6, 3:6] = 1  # slice 8 painted with the lesion alone
    slicer.util.updateSegmentBinaryLabelmapFromArray(painted, node, lesion, volume_node)
    job = logic.start_finetune(volume_node, node, [liver, lesion], "unet3d", 60.0, device="cpu", iterations=1)
    assert logic.finish_finetune(wait(job)).notes == [
        "liver is absent from painted slice(s) 8 along axis 0 between slices that hold it: it is learned as "
        "background there; paint it there"
    ]
