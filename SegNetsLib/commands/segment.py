"""``segnets segment``: segment one volume, or every volume in a folder, with a model."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from SegNetsLib.commands.arguments import check_place, refuse_existing, refuse_overwriting_inputs, same_file
from SegNetsLib.core.constants import DEVICE_CHOICES, ROI_CHOICES, SEGMENTATION_SUFFIX, VOLUME_SUFFIXES
from SegNetsLib.core.errors import SegNetsError

if TYPE_CHECKING:
    from SegNetsLib.inference.predictor import Predictor

FOLDER_FORMATS = ("seg.nrrd", "nii.gz", "nrrd")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment a volume (or a folder of volumes) with a model",
        description="Segment 3D volumes (NIfTI, NRRD, MHA) with a model from the library, a model folder or a .zip. "
        "Writes a .seg.nrrd with named, colored segments (opens in 3D Slicer) or a labelmap image.",
    )
    parser.add_argument(
        "--model", required=True, metavar="ID_OR_PATH", help="library id[@version], model folder or .zip"
    )
    parser.add_argument(
        "--input",
        required=True,
        metavar="IMG|DIR",
        help="a volume file, or a folder of volume files and DICOM series (each series one volume)",
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="OUT",
        help="OUT.seg.nrrd, OUT.nii.gz, OUT.nii, OUT.nrrd or OUT.mha for one volume; a folder when --input is a folder",
    )
    parser.add_argument("--device", default="auto", help=f"{' | '.join(DEVICE_CHOICES)} (default: auto)")
    parser.add_argument(
        "--roi",
        choices=ROI_CHOICES,
        default="auto",
        help="auto: segment only the regions a coarse pass finds (when the model supports it); "
        "off: the whole volume (default: auto)",
    )
    parser.add_argument(
        "--probabilities",
        metavar="FILE",
        help="also write per-class probabilities (a vector .nii.gz, .nii, .nrrd or .mha; a folder with a folder input)",
    )
    parser.add_argument(
        "--format",
        choices=FOLDER_FORMATS,
        default="seg.nrrd",
        help="output file type when --output is a folder (default: seg.nrrd)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace results already in the --output folder (default: refuse; a file named by --output is replaced)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or messages, only errors")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Segment every requested volume; 0 when all succeeded, 1 when any input was refused."""
    if args.quiet:
        logging.getLogger("SegNetsLib").setLevel(logging.WARNING)
    jobs = _jobs(Path(args.input), Path(args.output), args.probabilities, args.format)
    if not args.overwrite and Path(args.output).is_dir():  # names SegNets chose: an earlier result or the user's file
        named = [target for _, target, _ in jobs]
        if Path(args.input).is_dir():  # a folder of probabilities too
            named += [target for _, _, target in jobs if target is not None]
        refuse_existing(named)
    from SegNetsLib.inference.predictor import (
        Predictor,  # torch and MONAI are imported only once the arguments make sense
    )
    from SegNetsLib.models.library import load

    net, card = load(args.model, device="cpu")
    predictor = Predictor(net, card, device=args.device)
    failures = 0
    for source, target, probabilities_target in jobs:
        try:
            _segment_one(predictor, source, target, probabilities_target, args)
        except SegNetsError as error:
            if len(jobs) == 1:
                raise
            print(f"segnets segment: error: {error}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0


def _segment_one(
    predictor: Predictor, source: Path, target: Path, probabilities_target: Path | None, args: argparse.Namespace
) -> None:
    from SegNetsLib.imageio.segmentations import write_probabilities, write_segmentation
    from SegNetsLib.imageio.volumes import input_name, read_volume

    volume = read_volume(source)
    with _ProgressBar(input_name(source), enabled=not args.quiet and sys.stderr.isatty()) as report:
        prediction = predictor.predict(
            volume, roi=args.roi, progress=report, probabilities=probabilities_target is not None, name=str(source)
        )
    write_segmentation(prediction.labelmap, predictor.card.labels, target)
    if probabilities_target is not None and prediction.probabilities is not None:
        write_probabilities(prediction.probabilities, probabilities_target)
    if not args.quiet:
        where = f" in {len(prediction.rois)} RoI(s)" if prediction.rois else ""
        print(f"{input_name(source)}: segmented{where} -> {target}", file=sys.stderr)


def _jobs(
    source: Path, output: Path, probabilities: str | None, folder_format: str
) -> list[tuple[Path, Path, Path | None]]:
    """(input, output, probabilities output) per volume; checks names and places before any work is done: a
    result never lands on an input, on another result, or under a file."""
    from SegNetsLib.imageio.segmentations import is_written_segmentation_file, refuse_segmentation_input
    from SegNetsLib.imageio.volumes import check_written_volume_name, listed_volumes

    if source.is_dir():
        volumes = listed_volumes(source)
        if not volumes:
            raise SegNetsError(
                f"{source}: the folder holds no volume files ({', '.join(VOLUME_SUFFIXES)}) and no DICOM series."
            )
        if (output.exists() and not output.is_dir()) or (not output.exists() and is_written_segmentation_file(output)):
            raise SegNetsError(f"{output}: with a folder as --input, --output must be a folder.")
        probability_folder = Path(probabilities) if probabilities else None
        jobs = [
            (
                p,
                output / f"{_stem(p)}.{folder_format}",
                probability_folder / f"{_stem(p)}_probabilities.nii.gz" if probability_folder else None,
            )
            for p in volumes
        ]
    else:
        if not source.exists():
            raise SegNetsError(f"{source}: no such file or folder.")
        refuse_segmentation_input(source)
        if output.is_dir():
            output = output / f"{_stem(source)}{SEGMENTATION_SUFFIX}"
        if not is_written_segmentation_file(output):
            raise SegNetsError(f"{output}: unknown output type; use .seg.nrrd, .nii.gz, .nii, .nrrd or .mha.")
        if probabilities:
            check_written_volume_name(probabilities, "probabilities")
        jobs = [(source, output, Path(probabilities) if probabilities else None)]
    _check_targets(jobs)
    return jobs


def _check_targets(jobs: list[tuple[Path, Path, Path | None]]) -> None:
    """Refuse before any work a result that would overwrite an input or another result, or lie under a file."""
    written: dict[Path, Path] = {}
    for volume, *targets in jobs:
        for target in (t for t in targets if t is not None):
            check_place(target)
            for source, _, _ in jobs:
                refuse_overwriting_inputs(target, {"--input": source})
            earlier = next((other for other in written if same_file(other, target)), None)
            if earlier is not None and written[earlier] == volume:
                raise SegNetsError(f"{target}: the segmentation and the probabilities would both be written there.")
            if earlier is not None:
                raise SegNetsError(
                    f"{target}: the results of {written[earlier]} and {volume} would both be written there; "
                    "rename one of the two inputs."
                )
            written[target] = volume


def _stem(path: Path) -> str:
    """The file name without its segmentation or volume suffix (``ct.nii.gz`` -> ``ct``); a DICOM series' stem."""
    from SegNetsLib.imageio.volumes import input_stem

    if path.name.lower().endswith(SEGMENTATION_SUFFIX):
        return path.name[: -len(SEGMENTATION_SUFFIX)]
    return input_stem(path)


class _ProgressBar:
    """A tqdm bar fed by the predictor's (fraction, stage) reports; a no-op when disabled."""

    def __init__(self, name: str, enabled: bool) -> None:
        self.name, self.enabled, self.bar = name, enabled, None

    def __enter__(self):
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=100, desc=self.name, unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}"
            )
        return self.report

    def report(self, fraction: float, stage: str) -> None:
        if self.bar is not None:
            self.bar.n = round(100 * fraction)
            self.bar.set_postfix_str(stage, refresh=True)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
