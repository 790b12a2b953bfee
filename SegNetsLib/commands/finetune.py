"""``segnets finetune``: learn from a few annotated slices of one volume and segment all of it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from SegNetsLib.commands.arguments import check_place, positive_int, refuse_overwriting_inputs, seconds
from SegNetsLib.core.constants import ARCHITECTURES, DEVICE_CHOICES
from SegNetsLib.core.errors import SegNetsError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a model (or train one from scratch) on a few annotated slices",
        description="Paint a few slices of a volume (axial, coronal or sagittal; 0 = background inside a "
        "painted slice, other slices are unlabeled), fine-tune a model on them and segment the whole volume. "
        "The annotation is never modified; the base model is never overwritten.",
    )
    parser.add_argument(
        "--input",
        required=True,
        metavar="IMG",
        help="the volume (NIfTI, NRRD, MHA), a DICOM series' folder, or one file of a DICOM series",
    )
    parser.add_argument(
        "--annotations",
        required=True,
        metavar="ANN",
        help="labelmap in the volume's geometry (.nii.gz, .nrrd or .seg.nrrd); classes 1..K",
    )
    parser.add_argument(
        "--model",
        default="unet3d",
        metavar="ID|PATH|ARCH",
        help=f"model to fine-tune (library id[@version], folder or .zip) or an architecture "
        f"to train from scratch ({', '.join(ARCHITECTURES)}); default unet3d. A model from an earlier "
        "round (e.g. the one the previous run saved) continues warm: a correction round takes seconds",
    )
    parser.add_argument(
        "--output", metavar="SEG", help="write the whole-volume segmentation (.seg.nrrd, .nii.gz, .nii, .nrrd or .mha)"
    )
    parser.add_argument(
        "--save-model",
        metavar="NAME",
        help="save the fine-tuned model in the library under this name (default: a new version "
        "of the base model; from scratch, '<architecture> fine-tuned on <labels>')",
    )
    parser.add_argument("--no-save", action="store_true", help="do not add the fine-tuned model to the library")
    parser.add_argument(
        "--previous",
        metavar="SEG",
        help="with --model the previous round's model: that round's segmentation (its --output); the update then "
        "changes it only on the slices nearer an added slice than any slice painted before (on the added slice "
        "alone where it already agreed with the painting there)",
    )
    parser.add_argument(
        "--time-limit",
        type=seconds,
        metavar="S",
        help="seconds (or e.g. 2m) for the whole run, segmentation included (default 60 CPU / 20 GPU)",
    )
    parser.add_argument("--iterations", type=positive_int, metavar="N", help="training iterations")
    parser.add_argument("--device", default="auto", help=f"{' | '.join(DEVICE_CHOICES)} (default: auto)")
    parser.add_argument(
        "--slices",
        action="append",
        metavar="AXIS:I,J",
        help="also count these slices as annotated (e.g. all-background ones); repeatable",
    )
    parser.add_argument("--ignore-value", type=int, default=255, help="label value meaning unlabeled (default 255)")
    parser.add_argument(
        "--extend-head", action="store_true", help="add annotated classes the model does not have as new output classes"
    )
    parser.set_defaults(handler=run)


def _check_args(args: argparse.Namespace) -> None:
    from SegNetsLib.imageio.dicom import series_in
    from SegNetsLib.imageio.segmentations import is_segmentation_file, is_written_segmentation_file
    from SegNetsLib.imageio.volumes import is_volume_file

    for path, what in ((args.input, "--input"), (args.annotations, "--annotations"), (args.previous, "--previous")):
        if path is None:
            continue
        if Path(path).is_dir() and not (what == "--input" and series_in(path)):  # a DICOM series' folder
            raise SegNetsError(f"{path}: is a folder, not a file ({what}).")
        if not Path(path).exists():
            raise SegNetsError(f"{path}: no such file ({what}).")
    if not (is_volume_file(args.annotations) or is_segmentation_file(args.annotations)):
        raise SegNetsError(f"{args.annotations}: unknown annotation file type; use .nii.gz, .nrrd or .seg.nrrd.")
    if args.output and not is_written_segmentation_file(args.output):
        raise SegNetsError(f"{args.output}: unknown output type; use .seg.nrrd, .nii.gz, .nii, .nrrd or .mha.")
    if args.output:
        check_place(args.output)
        inputs = {"--input": args.input, "--annotations": args.annotations, "--previous": args.previous}
        refuse_overwriting_inputs(args.output, inputs)


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    from SegNetsLib.core.annotation import (
        check_annotation,
        embed_in_image_grid,
        listed_slices,
        merge_slices,
        parse_slices,
        slice_plane,
    )
    from SegNetsLib.finetune.options import FinetuneOptions
    from SegNetsLib.finetune.rounds import finetune_round
    from SegNetsLib.finetune.save import save_result, with_painted_labels
    from SegNetsLib.imageio.segmentations import read_labelmap, read_labelmap_and_labels, write_segmentation
    from SegNetsLib.imageio.volumes import input_name, read_volume

    image = read_volume(args.input)
    annotation, painted = read_labelmap_and_labels(args.annotations)  # a .seg.nrrd's segments describe the labels
    names = {value: label.name for value, label in painted.items()}
    options = FinetuneOptions(
        iterations=args.iterations,
        time_limit_s=args.time_limit,
        device=args.device,
        slices=merge_slices(*(parse_slices(text) for text in args.slices or [])),
        ignore_value=args.ignore_value,
        extend_head=args.extend_head,
        volume_name=input_name(args.input),
        label_names=names or None,
        annotation_name=str(args.annotations),
    )

    def report(fraction: float, stage: str) -> None:
        print(f"[{fraction * 100:5.1f}%] {stage}", file=sys.stderr, flush=True)

    previous = None
    if args.previous:  # on the image's grid (a Slicer export may be cropped to the segments), or refused
        shown = embed_in_image_grid(image, read_labelmap(args.previous))
        check_annotation(image, shown, name=f"the previous result {args.previous}")
        previous = shown.array
    result = finetune_round(image, annotation, args.model, options, progress=report, previous=previous)
    if painted and result.kept != "base":  # classes new to the model: the segments' names and colors
        result.card = with_painted_labels(result.card, painted)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if result.validation_dice is not None:
        base = f" (base model {result.base_validation_dice:.3f})" if result.base_validation_dice is not None else ""
        print(f"validation Dice on held-out slices: {result.validation_dice:.3f}{base}", file=sys.stderr)
    print(_outcome(result), file=sys.stderr)
    if result.round:
        added = listed_slices(result.added_slices) or "none"
        repainted = listed_slices(result.repainted_slices)
        added += f"; repainted: {repainted}" if repainted else ""
        print(f"round {result.round} ({result.seconds:.1f} s), slices added: {added}", file=sys.stderr)
    if result.suggestion is not None:
        plane = slice_plane(image.direction, result.suggestion.axis)
        print(f"suggested next slice: {plane} {result.suggestion.describe()}", file=sys.stderr)
    if args.output:
        write_segmentation(result.labelmap, result.card.labels, args.output)
        print(f"segmentation -> {args.output}", file=sys.stderr)
    if not args.no_save:
        if args.save_model and result.kept == "fine-tuned":
            _note_a_name_taken(args.save_model, result.card)
        saved = save_result(result, args.save_model)
        kept = "the base model was kept" if result.kept == "base" else "the new network is untrained"
        print(f"model -> library {saved}" if saved else f"model: {kept}; nothing new saved", file=sys.stderr)
    return 0


def _outcome(result) -> str:
    """One line on what the run trained: a new network (or none, when the time limit left no iteration) or which
    model it kept."""
    if result.kept == "untrained":
        return (
            f"the new network trained 0 iterations within the time limit; raise --time-limit or give --iterations "
            f"({result.seconds:.0f} s)"
        )
    if result.kept != "fine-tuned" or result.card.provenance.base_model_id is not None:
        return f"kept the {result.kept} model after {result.iterations} iterations, {result.seconds:.0f} s"
    return f"trained a new network for {result.iterations} iterations, {result.seconds:.0f} s"


def _note_a_name_taken(name: str, card) -> None:
    """Say so when ``name`` already names a model this one does not continue: it becomes that model's next version."""
    from SegNetsLib.card.factory import slug
    from SegNetsLib.models.library import ModelLibrary

    model_id = slug(name)
    if ModelLibrary().versions(model_id) and card.provenance.base_model_id != model_id:
        print(
            f"note: the library already holds a model {model_id!r} that this one does not continue; it is saved as "
            f"that model's next version (give --save-model another name to keep them apart)",
            file=sys.stderr,
        )
