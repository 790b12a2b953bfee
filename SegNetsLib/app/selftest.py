"""The bodies of the SegNets self-test, shared by Slicer's ``SegNetsTest`` and pytest (slicer-core).

On a small real CT (TotalSegmentator's example, Testing/Data/ts_ct_sm, cropped around the liver) it
runs Segment with a tiny 3D U-Net, paints the liver on 3 axial slices as a user would in the Segment
Editor, runs Fine-tune from those slices alone (a new 3D U-Net) on the CPU, and measures the Dice of
the resulting segmentation of the whole crop against the reference. Everything goes through
:class:`~SegNetsLib.app.logic.SegmentationLogic`, the MRML bridge and the worker child process
(:class:`~SegNetsLib.app.process_worker.ProcessWorker`), as the panel does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from SegNetsLib import mrml
from SegNetsLib.card.card import Code, LabelInfo, Terminology
from SegNetsLib.card.factory import make_card
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume
from SegNetsLib.evaluation.metrics import dice
from SegNetsLib.imageio.volumes import read_volume
from SegNetsLib.models.library import ModelEntry, ModelLibrary

TEST_CASE = "ts_ct_sm"
LIVER_VALUE = 5  # TotalSegmentator's label value for the liver in ts_ct_sm/label.nii.gz
CROP = (slice(0, 30), slice(24, 88), slice(42, 106))  # [k, j, i] of ts_ct_sm around the liver (30 x 64 x 64)
LIVER = LabelInfo(
    1,
    "Liver",
    (0.87, 0.51, 0.41),
    Terminology(Code("SCT", "123037004", "Anatomical Structure"), Code("SCT", "10200004", "Liver")),
)
TINY_BUILD_ARGS = {"base_channels": 4, "levels": 2}
MIN_FINETUNED_DICE = 0.6
ANNOTATED_SLICES = 3
FINETUNE_SECONDS = 20.0  # the training budget a user would give; the whole self-test stays under a minute
SCRATCH_ARCHITECTURE = "unet3d"  # the self-test learns the liver from the 3 slices alone


def find_test_data(module_dir: Path) -> Path:
    """The folder holding ts_ct_sm/: Resources/Testing beside the installed module, or the clone's Testing/Data."""
    for folder in (module_dir / "Resources" / "Testing", module_dir.parent / "Testing" / "Data"):
        if (folder / TEST_CASE / "image.nii.gz").is_file():
            return folder
    raise SegNetsError(f"the self-test data {TEST_CASE}/ was found neither in Resources/Testing nor in Testing/Data.")


def load_case(data_dir: Path) -> tuple[Volume, np.ndarray]:
    """(CT crop as a Volume, reference liver mask [k, j, i] uint8) from ``data_dir``/ts_ct_sm."""
    image = read_volume(data_dir / TEST_CASE / "image.nii.gz")
    labels = read_volume(data_dir / TEST_CASE / "label.nii.gz")
    start = np.array([CROP[2].start, CROP[1].start, CROP[0].start, 1.0])
    origin = tuple((image.ijk_to_lps() @ start)[:3])
    crop = Volume(np.ascontiguousarray(image.array[CROP]), image.spacing, origin, image.direction)
    return crop, (labels.array[CROP] == LIVER_VALUE).astype(np.uint8)


def add_tiny_model(
    library: ModelLibrary,
    model_id: str = "selftest-tiny",
    foreground_bias: float | None = None,
    patch_size: tuple[int, int, int] = (32, 64, 64),
    seed: int = 0,
) -> ModelEntry:
    """Add a tiny randomly initialized 3D U-Net for the liver (a few thousand weights) to ``library``.

    foreground_bias: when given, the output layer's bias favors the liver by this much, so the
    network predicts liver everywhere (a model with a known answer for tests).
    """
    import torch

    from SegNetsLib import nets

    card = make_card(
        "unet3d",
        [LIVER],
        id=model_id,
        name="Tiny test 3D U-Net",
        build_args=TINY_BUILD_ARGS,
        patch_size=patch_size,
        target_spacing=None,
        description="Random weights; for tests only.",
    )
    torch.manual_seed(seed)
    net = nets.build("unet3d", 1, card.num_classes, **card.build_args)
    if foreground_bias is not None:
        with torch.no_grad():
            net.head.bias.copy_(torch.tensor([-foreground_bias / 2, foreground_bias / 2]))
    folder = library.add(net, card)
    return ModelEntry(card.id, card.version, folder, card)


def paint_annotation(scene, volume_node, reference: np.ndarray, slices: int = ANNOTATED_SLICES):
    """A segmentation node with a "Liver" segment painted on ``slices`` axial slices, as a user would.

    The slices are spread over the liver's axial extent. Returns (node, segment id, slice indices).
    """
    import slicer.util

    present = np.flatnonzero(reference.any(axis=(1, 2)))
    chosen = [int(present[round(q * (len(present) - 1))]) for q in np.linspace(0.2, 0.8, slices)]
    mask = np.zeros_like(reference)
    mask[chosen] = reference[chosen]
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "My annotations")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segment_id = node.GetSegmentation().AddEmptySegment("", LIVER.name, list(LIVER.color))
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, node, segment_id, volume_node)
    return node, segment_id, chosen


def segment_mask(segmentation_node, segment_name: str, volume_node) -> np.ndarray:
    """A segment's voxels [k, j, i] in the volume's grid."""
    import slicer.util

    segment_id = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(segment_name)
    if not segment_id:
        raise SegNetsError(f"segmentation {segmentation_node.GetName()!r} has no segment {segment_name!r}.")
    return np.array(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation_node, segment_id, volume_node))


def wait(job, timeout_s: float = 600.0):
    """Block until ``job`` is done (headless); raises TimeoutError after ``timeout_s``."""
    if not job.wait(timeout_s):
        job.cancel()
        raise TimeoutError(f"{job.description} did not finish within {timeout_s:.0f} s")
    return job


@dataclass
class SelfTestReport:
    segment_seconds: float = 0.0
    segment_names: list[str] = field(default_factory=list)
    finetune_seconds: float = 0.0
    finetune_iterations: int = 0
    annotated_slices: list[int] = field(default_factory=list)
    finetuned_model: str = ""
    finetuned_dice: float = float("nan")
    validation_dice: float | None = None
    annotation_unchanged: bool = False

    def lines(self) -> list[str]:
        return [
            f"Segment (tiny random model): {self.segment_seconds:.1f} s, segments {self.segment_names}",
            f"Fine-tune from axial slices {self.annotated_slices}: {self.finetune_iterations} iterations, "
            f"{self.finetune_seconds:.1f} s -> {self.finetuned_model}",
            f"Dice of the fine-tuned segmentation vs the reference liver: {self.finetuned_dice:.3f}"
            + (
                f" (validation Dice during training {self.validation_dice:.3f})"
                if self.validation_dice is not None
                else ""
            ),
            f"Annotation unchanged: {self.annotation_unchanged}",
        ]


def run_all(
    scene,
    library_folder: Path,
    data_dir: Path,
    device: str = "cpu",
    time_limit_s: float = FINETUNE_SECONDS,
    iterations: int | None = None,
    worker=None,
) -> SelfTestReport:
    """Segment with a tiny model, then train a 3D U-Net from 3 painted slices; see :class:`SelfTestReport`.

    worker: where the model work runs (default: a new worker child process, shut down at the end).
    """
    from SegNetsLib.app.logic import SegmentationLogic
    from SegNetsLib.app.process_worker import ProcessWorker

    report = SelfTestReport()
    library = ModelLibrary(library_folder)
    entry = add_tiny_model(library)
    image, reference = load_case(data_dir)
    volume_node = mrml.volume_node_from_volume(scene, image, "SegNets self-test CT")
    own_worker = worker is None
    logic = SegmentationLogic(scene, library, worker or ProcessWorker())
    try:
        started = time.monotonic()
        result = logic.finish_segment(wait(logic.start_segment(volume_node, entry.id, device=device, roi="off")))
        report.segment_seconds = time.monotonic() - started
        segmentation = result.segmentation_node.GetSegmentation()
        report.segment_names = [
            segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())
        ]

        annotation, segment_id, report.annotated_slices = paint_annotation(scene, volume_node, reference)
        before = segment_mask(annotation, LIVER.name, volume_node).copy()
        started = time.monotonic()
        job = logic.start_finetune(
            volume_node,
            annotation,
            [segment_id],
            SCRATCH_ARCHITECTURE,
            time_limit_s,
            device=device,
            iterations=iterations,
        )
        outcome = logic.finish_finetune(wait(job))
        report.finetune_seconds = time.monotonic() - started
        report.finetuned_model = f"{outcome.model.id}@{outcome.model.version}"
        report.validation_dice = outcome.validation_dice
        report.finetune_iterations = outcome.model.card.provenance.iterations
        predicted = segment_mask(outcome.segmentation.segmentation_node, LIVER.name, volume_node)
        report.finetuned_dice = dice(predicted, reference)
        after = segment_mask(annotation, LIVER.name, volume_node)
        report.annotation_unchanged = (
            bool(np.array_equal(before, after)) and annotation.GetSegmentation().GetNumberOfSegments() == 1
        )
    finally:
        if own_worker:
            logic.worker.shutdown()
    return report
