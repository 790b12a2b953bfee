"""Sparse-annotation fine-tuning: annotate a few slices, fine-tune, get the whole 3D segmentation.

``finetune(volume, annotation, start, options)`` trains a network (a model to fine-tune, or an
architecture name to train from scratch) on the annotated slices of one volume with the weighted
loss of the 3D U-Net paper (unlabeled voxels weigh 0), validates on held-out annotated slices, keeps
the better of the base model and the fine-tuned one, and segments the whole volume. Every annotated
voxel keeps exactly the user's label in the result. The annotation and the base model are never modified.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import time
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from SegNetsLib.card.card import ModelCard
from SegNetsLib.core import annotation as ann
from SegNetsLib.core.box import Box
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.progress import CancelToken, ProgressFn, no_progress
from SegNetsLib.core.volume import Volume, sub_volume
from SegNetsLib.finetune.budget import (
    refinement_reserve,
    refinement_seconds,
    refinement_skipped_note,
    segmentation_seconds,
    segmented_regions,
    training_budget_s,
)
from SegNetsLib.finetune.cleanup import (
    clean_scratch_prediction,
    known_box,
    without_postprocessing,
)
from SegNetsLib.finetune.loop import FinetuneCallback, LoopSettings, run_loop
from SegNetsLib.finetune.options import DEFAULT_TIME_LIMIT_S, FinetuneOptions, FinetuneResult
from SegNetsLib.finetune.painting_notes import painting_notes
from SegNetsLib.finetune.sampling import Slice, SlicePatchSampler, list_slices, split_validation, training_box
from SegNetsLib.finetune.save import result_card
from SegNetsLib.finetune.start import is_architecture, model_start, scratch_start
from SegNetsLib.finetune.validation import slices_dice
from SegNetsLib.finetune.walkers import prepare_walkers
from SegNetsLib.imageio.volumes import check_volume, volume_to_sitk
from SegNetsLib.inference.predictor import Predictor, taken_size
from SegNetsLib.inference.preprocess import Preprocessed, preprocess
from SegNetsLib.runtime.devices import resolve_device
from SegNetsLib.training.augment import build_augmentation, input_size

log = logging.getLogger(__name__)

# a new network's training patch: SCRATCH_THIN voxels along the painting axis, SCRATCH_WIDE along the other two
SCRATCH_THIN, SCRATCH_WIDE = 8, 48


def finetune(
    volume: Volume,
    annotation: Volume,
    start: str | os.PathLike | tuple[nn.Module, ModelCard],
    options: FinetuneOptions | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    callback: FinetuneCallback | None = None,
) -> FinetuneResult:
    """Fine-tune ``start`` on ``annotation``'s slices of ``volume``.

    start: an architecture name (train from scratch), a library id[@version], a model folder or zip, or
    an in-memory (net, card) pair (left untouched: training works on a copy).

    volume: the image ([k, j, i] or [c, k, j, i]); annotation: labelmap [k, j, i] in the same geometry
    (classes 1..K, 0 background inside annotated slices, ``ignore_value`` unlabeled). Raises
    SegNetsError for bad input and Cancelled on cancel (nothing is written, the base model is untouched).
    """
    options = options or FinetuneOptions()
    with _cpu_threads(options.threads):
        return _finetune(volume, annotation, start, options, progress, cancel, callback)


@contextlib.contextmanager
def _cpu_threads(threads: int | None):
    """Run with ``threads`` torch CPU threads (see FinetuneOptions.threads), restoring the setting after."""
    before = torch.get_num_threads()
    if threads is None and os.getloadavg()[0] > (os.cpu_count() or 1):
        threads = 1
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _finetune(
    volume: Volume,
    annotation: Volume,
    start: str | os.PathLike | tuple[nn.Module, ModelCard],
    options: FinetuneOptions,
    progress: ProgressFn | None,
    cancel: CancelToken | None,
    callback: FinetuneCallback | None,
) -> FinetuneResult:
    progress = progress or no_progress
    cancel = cancel or CancelToken()
    began = time.monotonic()
    image_name = options.volume_name or "the image"  # how messages name the image (its file, say)
    check_volume(volume, image_name)
    annotation = ann.embed_in_image_grid(volume, annotation)
    ann.check_annotation(volume, annotation, options.annotation_name)
    labels = np.array(annotation.array, copy=True)  # never touch the caller's annotation
    slices = ann.annotated_slices(labels, options.ignore_value, options.slices)
    ann.require_annotated(slices, options.annotation_name, labels, options.ignore_value)
    weight = ann.weight_map(labels, slices, options.ignore_value)
    notes = []
    if ann.is_dense(weight):
        notes.append("the annotation covers the whole volume: this is ordinary (dense) training")
        log.info(
            "The annotation covers the whole volume: this is ordinary training (segnets train does it on many volumes)."
        )
    classes = ann.annotation_classes(np.where(weight > 0, labels, 0), None)
    device = resolve_device(options.device)
    progress(0.0, "preparing")

    patch = options.patch_size
    torch.manual_seed(options.seed)  # a new network's initial weights, then training's draws
    if is_architecture(start):
        if not classes:
            raise SegNetsError(
                "the annotation has no foreground class: paint at least one structure to learn from scratch."
            )
        if volume.num_channels == 1:  # a 4D image of one channel: 3D
            volume = volume.with_array(volume.array.reshape(volume.shape_kji))
        across = ann.painting_axis(slices)  # thin along the painting axis, so a patch holds most of a painted slice
        patch = patch or tuple(SCRATCH_THIN if axis == across else SCRATCH_WIDE for axis in range(3))
        begin = scratch_start(
            start,
            volume,
            labels,
            weight,
            classes,
            patch,
            options.scratch_downsample,
            options.label_names,
            options.scratch_build_args,
            across,
        )
    else:
        begin = model_start(start, classes, options.extend_head, volume)
        patch = patch or tuple(min(p, m) for p, m in zip(begin.card.patch_size, (32, 96, 96)))
    patch = taken_size(begin.net, patch)  # a size the network takes, as the inference engine's windows are
    card = begin.card
    notes += painting_notes(
        labels, weight, slices, options.ignore_value, options.label_names, begin.painted_only, volume.spacing
    )
    value_to_class = {label.value: index + 1 for index, label in enumerate(card.labels)}
    targets = np.zeros(labels.shape, dtype=np.uint8)  # class indices: at most 255 label values and background
    for value, index in value_to_class.items():
        targets[labels == value] = index

    preprocessing_began = time.monotonic()
    pre = preprocess(volume, card, image_name)
    preprocessing_s = time.monotonic() - preprocessing_began  # segmenting prepares the input again
    image = pre.network_input()
    grid_targets, grid_weight = _to_grid(targets, weight, pre)
    grid_slices = ann.annotated_slices(grid_weight.astype(np.uint8), None)
    train_slices, val_slices = (
        split_validation(grid_slices, min_train=4 if begin.from_scratch else 2)
        if options.validation
        else (list_slices(grid_slices), [])
    )
    cancel.raise_if_cancelled()

    slice_axis = int(np.argmax([len(grid_slices[a]) for a in range(3)]))
    crop = input_size(patch, options.augmentation)
    region = training_box(grid_weight, grid_targets, [p // 2 for p in patch])  # foreground, for validation
    annotated_region = training_box(grid_weight, np.zeros_like(grid_targets), [0, 0, 0])  # all annotated voxels
    transform = build_augmentation(patch, options.augmentation, slice_axis, device, seed=options.seed)

    def sampler(slices_: list[Slice], seed: int) -> SlicePatchSampler:
        return SlicePatchSampler(
            image, grid_targets, grid_weight, slices_, annotated_region, crop, patch, options.foreground_fraction, seed
        )

    def validate(net_: nn.Module) -> float:
        return slices_dice(net_, image, grid_targets, grid_weight, val_slices, region, patch, card.num_classes, device)

    base_net = begin.net
    net = copy.deepcopy(base_net).to(device)
    base_dice = None
    if val_slices and not begin.from_scratch:
        progress(0.02, "validating the base model")
        base_dice = validate(net)
    time_limit = options.time_limit_s
    if time_limit is None and options.iterations is None:
        time_limit = DEFAULT_TIME_LIMIT_S["cuda" if device.type == "cuda" else "cpu"]
    deadline = began + time_limit if time_limit else None
    painted = np.where(weight > 0, labels, 0)
    painted_box = known_box(labels.shape, slices, painted, volume.spacing)  # where the painted structure lies
    known = painted_box if begin.painted_only else None
    walkers = None  # the random walkers on their working grid
    if options.segment and options.refine:
        progress(0.03, "random walker from the painted slices")
        walkers = prepare_walkers(
            volume.array, labels, weight, volume.spacing, slices, painted_box, begin.painted_only, options.changing
        )
        log.info("The interpolated outlines weigh %.2f in the refinement's band.", walkers.outline_weight)
    way_there_s = walkers.way_there_s if walkers is not None else 0.0  # kept again for the way back
    if time_limit:  # the budget is the whole run's: keep what segmenting and refining will take
        segmenting = refining = 0.0
        if options.segment:
            if known is not None:  # segmented inside the known box, without RoI localization
                regions = [_grid_box(known, labels.shape, pre.shape).shape]
            else:  # where the painted structure lies is where RoI localization should find it
                grid_expected = None if painted_box is None else _grid_box(painted_box, labels.shape, pre.shape)
                regions = segmented_regions(card.roi, pre.shape, grid_expected, pre.grid.spacing[::-1])
            segmenting = way_there_s + segmentation_seconds(
                net, len(card.in_channels), card.patch_size, regions, device, preprocessing_s
            )
            if options.refine:
                refining = refinement_reserve(
                    refinement_seconds(*walkers.walked, slices=walkers.walked_slices, classical=walkers.classical),
                    time_limit,
                )
        time_limit = training_budget_s(time_limit, time.monotonic() - began, segmenting + refining)
        log.info(
            "Training for %.1f s, from %.1f s into the run; %.1f s kept for segmenting and %.1f s for refining.",
            time_limit,
            time.monotonic() - began,
            segmenting,
            refining,
        )
    learning_rate = options.learning_rate or (3e-3 if begin.painted_only else 3e-4)
    share = 1.0 - options.final_fraction if val_slices else 1.0
    first = LoopSettings(
        max_iterations=max(1, int(options.iterations * share)) if options.iterations else None,
        time_limit_s=time_limit * share if time_limit else None,
        learning_rate=learning_rate,
        batch_size=options.batch_size,
        validate_every_s=max(5.0, (time_limit or 60.0) * share / 6),
        validate_every_iterations=None if time_limit else max(1, int(options.iterations * share / 6)),
        phase="training",
    )
    loop = run_loop(
        net,
        card.architecture,
        sampler(train_slices, options.seed),
        transform,
        first,
        device,
        validate if val_slices else None,
        progress,
        callback,
        cancel,
        (0.05, 0.05 + 0.8 * share),
    )
    iterations, history = loop.iterations, list(loop.history)
    val_dice = loop.best_dice
    kept = choose_kept(base_dice, val_dice)
    if kept == "base":
        net = base_net
        notes.append(f"the base model validated better (Dice {base_dice:.3f} vs {val_dice:.3f}); it was kept")
    elif val_slices and options.final_fraction > 0 and (not options.iterations or iterations < options.iterations):
        final = LoopSettings(
            max_iterations=options.iterations - iterations if options.iterations else None,
            time_limit_s=max(1.0, time_limit - loop.seconds) if time_limit else None,
            learning_rate=learning_rate * 0.5,
            batch_size=options.batch_size,
            phase="all slices",
        )
        more = run_loop(
            net,
            card.architecture,
            sampler(list_slices(grid_slices), options.seed + 1),
            transform,
            final,
            device,
            None,
            progress,
            callback,
            cancel,
            (0.05 + 0.8 * share, 0.85),
        )
        iterations += more.iterations
        history += more.history
    cancel.raise_if_cancelled()
    untrained = begin.from_scratch and iterations == 0  # a random network: nothing to segment with, nor to save
    kept = "untrained" if untrained else kept

    progress(0.85, "segmenting the whole volume")
    net.eval()
    if options.segment and not untrained:
        # from scratch (or continued from such a round): limit to the annotated range first, then the
        # card's post-processing
        predict_card = without_postprocessing(card) if begin.painted_only else card
        predictor = Predictor(net, predict_card, device, options.library_root)  # a locator id: where the model was
        if known is not None:  # a network that saw painted slices alone segments only where it knows something
            network_out = np.zeros(labels.shape, dtype=np.uint8)
            part = predictor.predict(sub_volume(volume, known), roi="off", cancel=cancel, name=image_name)
            network_out[known.slices] = part.labelmap.array
        else:
            prediction = predictor.predict(volume, roi="auto", cancel=cancel, name=image_name)
            network_out = np.array(prediction.labelmap.array, copy=True)
        if begin.painted_only:
            clean_scratch_prediction(
                network_out, slices, labels, weight, volume.spacing, [label.value for label in card.labels]
            )
    else:
        network_out = np.where(weight > 0, labels, 0)
    out = network_out
    refine = walkers is not None and not untrained
    if untrained:  # the walker's own result where there is one, else the painting
        alone = walkers.alone() if walkers is not None else None
        out = network_out = alone if alone is not None else network_out
        made = "the random walker's own from the painted slices" if alone is not None else "the painting alone"
        notes.append(
            f"the new network trained 0 iterations within the time limit, so no model was saved and the result is "
            f"{made}; give a larger time budget"
        )
    walked_out = walkers.on_grid(network_out) if refine else None  # the network's result on the walkers' grid
    if refine and deadline is not None:  # the estimate made before training can fall short: check on the result
        needed = refinement_seconds(*walkers.walked, result=walked_out, classical=walkers.classical)
        needed += way_there_s if walkers.grid.coarse else 0.0  # the labelmap's way back to the full grid
        left = deadline - time.monotonic()
        if needed > left:
            refine = False
            alone = walkers.alone()  # better than a network cut short (tune set: Dice 0.88 against 0.68 at k = 3)
            note = refinement_skipped_note(needed, left, deadline - began)
            if alone is not None:
                note += "; the result is the random walker's own from the painted slices"
                out = alone
            notes.append(note)
            log.info("%s.", note[0].upper() + note[1:])
    if refine:
        progress(0.93, "refining boundaries (random walker)")
        out = walkers.refine(walked_out, cancel)
    annotated = ann.user_voxels(labels, weight, options.ignore_value)
    for array in (network_out, out):
        array[annotated] = labels[annotated]  # every annotated voxel keeps exactly the user's label
    seconds = time.monotonic() - began
    if kept == "fine-tuned":
        card = result_card(begin, volume, options, slices, weight, iterations, seconds, val_dice, base_dice)
    outcome = f"trained a new network ({iterations} iterations)" if begin.from_scratch else f"kept the {kept} model"
    outcome = "no network trained (0 iterations)" if untrained else outcome
    progress(1.0, f"done: {outcome}" + (f", validation Dice {val_dice:.3f}" if val_dice is not None else ""))
    return FinetuneResult(
        net=net.cpu().eval(),
        card=card,
        labelmap=annotation.with_array(out.astype(np.uint8)),
        validation_dice=val_dice,
        kept=kept,
        base_validation_dice=base_dice,
        iterations=iterations,
        seconds=seconds,
        slices=slices,
        validation_slices=val_slices,
        notes=notes,
        history=history,
        network_labelmap=network_out.astype(np.uint8),
    )


def choose_kept(base_dice: float | None, tuned_dice: float | None) -> str:
    """ "base" when the base model validated strictly better on the held-out slices, else "fine-tuned"."""
    if base_dice is not None and tuned_dice is not None and tuned_dice < base_dice:
        return "base"
    return "fine-tuned"


def _grid_box(box: Box, source_shape: Sequence[int], grid_shape: Sequence[int]) -> Box:
    """``box`` of the source grid ``source_shape`` [k, j, i] as the network-grid voxels (d, h, w) it covers."""
    starts = [min(g - 1, math.floor(b * g / s)) for b, g, s in zip(box.start, grid_shape, source_shape)]
    stops = [max(a + 1, min(g, math.ceil(b * g / s))) for a, b, g, s in zip(starts, box.stop, grid_shape, source_shape)]
    return Box(*starts, *stops)


def _to_grid(targets: np.ndarray, weight: np.ndarray, pre: Preprocessed) -> tuple[np.ndarray, np.ndarray]:
    """Class indices (nearest) and weights (linear, then >= 0.5) on the network grid [d, h, w]."""
    if pre.same_grid_as_source():
        return targets, weight
    reference = volume_to_sitk(pre.grid.with_array(np.zeros(pre.shape, dtype=np.float32)))

    def resample(array: np.ndarray, interpolator: int) -> np.ndarray:
        image = volume_to_sitk(pre.source.with_array(array))
        return sitk.GetArrayFromImage(sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0))

    grid_targets = resample(targets, sitk.sitkNearestNeighbor)
    grid_weight = (resample(weight, sitk.sitkLinear) >= 0.5).astype(np.float32)
    return grid_targets, grid_weight
