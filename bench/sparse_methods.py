"""One structure of the sparse-annotation benchmark (bench/sparse.py): its case read from disk, k painted
bin-centre slices, and each method's Dice, 95% Hausdorff distance (mm) and seconds on them."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from sparse_sets import STRUCTURES  # noqa: E402

from SegNetsLib.core.annotation import bin_centre_slices  # noqa: E402
from SegNetsLib.evaluation.classical import fill_between_slices, random_walker  # noqa: E402
from SegNetsLib.evaluation.metrics import dice, hausdorff95  # noqa: E402

THREADS: int | None = None  # torch CPU threads of every fine-tune (--threads); None: the pipeline's own choice
BRATS = ("brats_pat0001_1", "brats_pat0002_1", "brats_pat0003_1")
# whole tumour of each BraTS case as a structure of its own (for the classical baselines of the pretrained setting)
BRATS_WHOLE_TUMOUR = {f"{case}:whole_tumour": [1, 2, 3, 4] for case in BRATS}
# both regions of each case (necrosis, non-enhancing and enhancing tumour form the core), for runs from scratch on the
# kind of structure neither set holds; BraTS's licence keeps them out of the sets' numbers and out of the project
BRATS_REGIONS = {**BRATS_WHOLE_TUMOUR, **{f"{case}:tumour_core": [1, 3, 4] for case in BRATS}}
LABEL_VALUES = {**STRUCTURES, **BRATS_REGIONS}  # folder:structure -> its label values, every structure known here


def structure_labels(name: str) -> int | list[int] | None:
    """The label values of a structure ``folder:structure``: one of :data:`LABEL_VALUES`, or, for a folder of
    one's own (``image.nii.gz`` and ``label.nii.gz``), ``folder:V`` or ``folder:V+W`` naming them; None when neither."""
    if name in LABEL_VALUES:
        return LABEL_VALUES[name]
    folder, _, values = name.partition(":")
    if folder and re.fullmatch(r"\d+(\+\d+)*", values):
        return [int(v) for v in values.split("+")]
    return None


def metrics(prediction: np.ndarray, truth: np.ndarray, spacing_kji) -> tuple[float, float]:
    """Dice and 95% Hausdorff distance (mm) of two boolean masks [k, j, i]."""
    return dice(prediction, truth), hausdorff95(prediction, truth, spacing_kji)


def read_case(folder: Path, label_values):
    from SegNetsLib.imageio.volumes import read_volume

    image = read_volume(folder / "image.nii.gz")
    labels = read_volume(folder / "label.nii.gz").array
    if labels.shape != image.array.shape:
        raise SystemExit(
            f"{folder / 'label.nii.gz'}: {labels.shape[::-1]} voxels, the image {image.array.shape[::-1]}."
        )
    truth = np.isin(labels, np.atleast_1d(label_values))
    if not truth.any():
        raise SystemExit(f"{folder / 'label.nii.gz'}: no voxel holds label value(s) {label_values}.")
    return image, truth


def sparse_annotation(truth: np.ndarray, k: int) -> tuple[np.ndarray, list[int]]:
    slices = bin_centre_slices(truth, k)
    annotation = np.zeros(truth.shape, dtype=np.uint8)
    annotation[slices] = truth[slices]
    return annotation, slices


def run_network(image, annotation, start, time_limit, device):
    from SegNetsLib.finetune.options import FinetuneOptions
    from SegNetsLib.finetune.run import finetune

    options = FinetuneOptions(time_limit_s=time_limit, device=device, threads=THREADS)
    began = time.monotonic()
    result = finetune(image, annotation, start, options)
    return result.labelmap.array > 0, time.monotonic() - began, result


def save_labelmaps(folder: Path, name: str, k: int, result, slices: list[int]) -> None:
    """A fine-tune's network labelmap and result, with its painted ``slices``, in ``folder`` as ``NAME_kK.npz``
    (``:`` of ``name`` as ``_``): for studying the steps after the network without training again."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        folder / f"{name.replace(':', '_')}_k{k}.npz",
        network=result.network_labelmap,
        refined=result.labelmap.array,
        slices=np.array(slices),
    )


def evaluate(name, image, truth, k, methods, time_limit, rows, save=None, labelmaps: Path | None = None, device="cpu"):
    """Each method on k bin-centre slices of ``truth``; rows appended, the network's labelmaps kept in ``labelmaps``."""
    spacing_kji = image.spacing[::-1]
    annotation, slices = sparse_annotation(truth, k)
    for method in methods:
        began = time.monotonic()
        extra = {}
        if method == "network":
            prediction, seconds, result = run_network(image, image.with_array(annotation), "unet3d", time_limit, device)
            if labelmaps:
                save_labelmaps(labelmaps, name, k, result, slices)
            dice, hd95 = metrics(result.network_labelmap > 0, truth, spacing_kji)
            extra = {"iterations": result.iterations}
            rows.append(
                {
                    "structure": name,
                    "k": k,
                    "method": "unet-only",
                    "dice": dice,
                    "hd95": hd95,
                    "seconds": seconds,
                    **extra,
                }
            )
        elif method == "mci":
            prediction = fill_between_slices(annotation) > 0
            seconds = time.monotonic() - began
        elif method == "rw":
            prediction = random_walker(image.array, annotation, {0: slices}) > 0
            seconds = time.monotonic() - began
            if labelmaps:  # the walker alone, for studying how the pipeline's last steps use it
                labelmaps.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(labelmaps / f"{name.replace(':', '_')}_k{k}_rw.npz", rw=prediction)
        elif method == "rw-range":  # the pipeline's own walker: confined to where the painted slices tell something
            from SegNetsLib.finetune.cleanup import known_box
            from SegNetsLib.finetune.refine import walker_alone

            box = known_box(truth.shape, {0: slices}, annotation, image.spacing)
            prediction = walker_alone(image.array, annotation, {0: slices}, box, image.spacing) > 0
            seconds = time.monotonic() - began
        elif method == "interp":  # the pipeline's own interpolation of the painted outlines, alone
            from SegNetsLib.finetune.interpolate import interpolate_slices

            prediction = interpolate_slices(annotation, {0: slices}, image.spacing) > 0
            seconds = time.monotonic() - began
        else:
            raise SystemExit(f"sparse: error: unknown method {method!r}")
        dice, hd95 = metrics(prediction, truth, spacing_kji)
        rows.append(
            {"structure": name, "k": k, "method": method, "dice": dice, "hd95": hd95, "seconds": seconds, **extra}
        )
        print(f"<!-- {name} k={k} {method}: Dice {dice:.3f}, HD95 {hd95:.1f} mm, {seconds:.0f} s -->", flush=True)
        if save:
            save()
