"""``./run demo``: annotate 3 axial slices of the liver, train from scratch, segment the whole CT.

Data: Testing/Data/ts_ct_full, the TotalSegmentator example CT (Apache-2.0, wasserth/TotalSegmentator,
tests/reference_files), liver = label 5 of its reference segmentation. The simulated user paints the
liver on 3 axial slices at the centres of 3 equal bins through the liver's extent. The demo prints the
Dice of the fine-tuned network against the full reference, the Dice of 3D Slicer's Fill between slices
(ITK morphological contour interpolation, run in a subprocess) from the same slices, and the time. Then
one correction round: SegNets names the slice to paint next, the simulated user paints it, and the
model just trained continues warm on the 4 slices; the demo prints that slice, the Dice gain and the
round's time. It writes ``out/demo/liver.seg.nrrd`` (the corrected result) and ``out/demo/liver_slices.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from SegNetsLib.core.annotation import bin_centre_slices
from SegNetsLib.core.atomic import writable_folder
from SegNetsLib.evaluation.classical import FillBetweenSlices
from SegNetsLib.evaluation.metrics import dice

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "Testing" / "Data" / "ts_ct_full"
LIVER = 5


def save_figure(image, reference: np.ndarray, result: np.ndarray, annotated: list[int], path: Path) -> None:
    """A few axial slices between the annotated ones and one coronal slice, shown the radiological way
    (anterior and superior up, patient's right on the left): result in red, reference contour in green."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    pixels = image.array
    flip_rows = image.direction[1, 1] < 0  # j runs anterior: flip so anterior is up
    flip_cols = image.direction[0, 0] < 0  # i runs right: flip so the patient's right is on the left

    def axial(a: np.ndarray, z: int) -> np.ndarray:
        view = a[z]
        return (
            view[:, ::-1][::-1]
            if flip_rows and flip_cols
            else view[::-1]
            if flip_rows
            else view[:, ::-1]
            if flip_cols
            else view
        )

    def coronal(a: np.ndarray, y: int) -> np.ndarray:
        view = a[:, y][::-1]  # superior up
        return view[:, ::-1] if flip_cols else view

    extent = bin_centre_slices(reference, 6)
    zs = [extent[0], (annotated[0] + annotated[1]) // 2, (annotated[1] + annotated[2]) // 2, extent[-1]]
    y = int(np.argmax(reference.sum(axis=(0, 2))))
    views = [(f"axial {z} (not annotated)", axial(pixels, z), axial(reference, z), axial(result, z)) for z in zs]
    views.append(("coronal (cyan: annotated slices)", coronal(pixels, y), coronal(reference, y), coronal(result, y)))
    figure, axes = plt.subplots(1, len(views), figsize=(3.2 * len(views), 3.6))
    for ax, (title, gray, truth, seg) in zip(axes, views):
        ax.imshow(np.clip(gray, -160, 240), cmap="gray")
        ax.imshow(np.ma.masked_where(seg == 0, seg), cmap=ListedColormap(["red"]), alpha=0.4)
        ax.contour(truth, levels=[0.5], colors="lime", linewidths=0.8)
        if title.startswith("coronal"):
            for z in annotated:
                ax.axhline(pixels.shape[0] - 1 - z, color="cyan", linewidth=0.6, linestyle="--")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    figure.suptitle("SegNets: liver learned from 3 annotated axial slices (red) vs reference (green)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def correct_once(image, reference: np.ndarray, labels: np.ndarray, annotated: list[int], result, device: str):
    """The user paints the slice ``result`` suggests (the reference there) and clicks Update: the next round,
    continued warm from ``result``'s model; (that round's result, seconds), or (None, 0) without a suggestion."""
    from SegNetsLib.finetune.options import FinetuneOptions
    from SegNetsLib.finetune.rounds import finetune_round

    if result.suggestion is None:
        return None, 0.0
    k = result.suggestion.index
    corrected = labels.copy()
    corrected[k] = reference[k]
    began = time.monotonic()
    options = FinetuneOptions(device=device, label_names={1: "liver"}, slices={0: sorted({*annotated, k})})
    shown = np.asarray(result.labelmap.array)  # what the user has on screen: the update changes it near slice k
    update = finetune_round(image, image.with_array(corrected), (result.net, result.card), options, previous=shown)
    return update, time.monotonic() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="segnets-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(REPO / "out" / "demo"), help="output folder (default out/demo)")
    parser.add_argument(
        "--time-limit", type=float, default=110.0, help="seconds for fine-tuning and segmentation (default 110)"
    )
    parser.add_argument(
        "--iterations",
        type=int,
        help="train this many iterations instead of a time budget, so the result does not depend on the machine's speed",
    )
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    from SegNetsLib.finetune.options import FinetuneOptions
    from SegNetsLib.finetune.rounds import finetune_round
    from SegNetsLib.imageio.segmentations import write_segmentation
    from SegNetsLib.imageio.volumes import read_volume

    try:  # before minutes of training: an output folder that takes no files would fail only at the end
        output = writable_folder(args.output)
    except OSError as error:
        parser.error(f"--output {args.output}: cannot write there ({error.strerror or error})")

    began = time.monotonic()
    image = read_volume(DATA / "image.nii.gz")
    reference = read_volume(DATA / "label.nii.gz").array == LIVER
    annotated = bin_centre_slices(reference, 3)
    labels = np.zeros(reference.shape, dtype=np.uint8)
    labels[annotated] = reference[annotated]
    annotation = image.with_array(labels)
    print(
        f"SegNets demo: {DATA.relative_to(REPO)} (TotalSegmentator example CT, Apache-2.0), liver painted on "
        f"axial slices {annotated} of {image.shape_kji[0]}"
    )

    fill_job = FillBetweenSlices(labels)  # runs in a subprocess beside the training

    def report(fraction: float, stage: str) -> None:
        print(f"  [{time.monotonic() - began:5.0f} s] {stage}", flush=True)

    budget = {"iterations": args.iterations} if args.iterations else {"time_limit_s": args.time_limit}
    options = FinetuneOptions(**budget, device=args.device, label_names={1: "liver"})
    result = finetune_round(image, annotation, "unet3d", options, progress=report)
    network_seconds = time.monotonic() - began
    mci = fill_job.result()
    first_dice = dice(result.labelmap.array == 1, reference)
    corrected, correction_seconds = correct_once(image, reference, labels, annotated, result, args.device)

    seg_path = output / "liver.seg.nrrd"
    final = corrected or result
    write_segmentation(final.labelmap, final.card.labels, seg_path)
    figure_path = output / "liver_slices.png"
    save_figure(image, reference, result.labelmap.array, annotated, figure_path)
    print()
    print(
        f"Dice vs full reference, 3D U-Net from scratch + boundary refinement: {dice(result.labelmap.array == 1, reference):.3f}"
    )
    held_out = (  # from scratch on 3 painted slices every slice trains: none is held out
        ""
        if result.validation_dice is None
        else f"; validation Dice on the held-out slice {result.validation_dice:.3f}"
    )
    print(
        f"Dice vs full reference, the 3D U-Net alone:                          {dice(result.network_labelmap == 1, reference):.3f}"
        f" ({result.iterations} iterations{held_out})"
    )
    if mci is not None:
        print(f"Dice vs full reference, Slicer's Fill between slices:                {dice(mci > 0, reference):.3f}")
    else:
        print(f"Fill between slices: not run ({fill_job.error}; pip install itk-morphologicalcontourinterpolation)")
    if corrected is not None:
        k = result.suggestion.index
        gain = dice(corrected.labelmap.array == 1, reference) - first_dice
        print(
            f"Correction round {corrected.round}: SegNets suggested axial slice {k} "
            f"({result.suggestion.reason()}); with it painted too, "
            f"Dice {first_dice:.3f} -> {first_dice + gain:.3f} ({gain:+.3f}) in {correction_seconds:.1f} s"
        )
    else:
        print("Correction round: no slice to suggest (the result adds nothing beyond the painted slices)")
    print(f"Time: {network_seconds:.0f} s for fine-tuning and segmentation, {time.monotonic() - began:.0f} s in all")
    print(
        f"Wrote {seg_path.relative_to(REPO) if seg_path.is_relative_to(REPO) else seg_path} and "
        f"{figure_path.relative_to(REPO) if figure_path.is_relative_to(REPO) else figure_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
