"""Writes at clinical size: a volume, a labelmap and probabilities in each format, and atomic writes in a full folder.

Run: ``python bench/writes.py``; prints a Markdown table. The test CT (Testing/Data/ts_ct_full, 3 mm) is resampled
to 0.75 x 0.75 x 1.5 mm as ``clinical_copy.py`` does (488 x 404 x 224 voxels): the image as int16, its labels as
uint8, and two-class float32 probabilities (one-hot of the liver, smoothed). Times are wall seconds, best and
median of 3, with one ITK thread.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from clinical_copy import COPIES, resampled
from scipy import ndimage

from SegNetsLib import __version__
from SegNetsLib.card.card import LabelInfo
from SegNetsLib.core.atomic import atomic_file
from SegNetsLib.core.volume import Volume
from SegNetsLib.imageio.segmentations import write_probabilities, write_segmentation
from SegNetsLib.imageio.volumes import volume_from_sitk, write_volume

REPO = Path(__file__).resolve().parents[1]
CASE = "ts_ct_full"
REPEATS = 3
CROWD = 10_000  # files in the folder of the atomic writes


def timed(function) -> str:
    """``| best | median |`` of REPEATS calls of ``function``, in seconds."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return f"{min(times):.3f} | {statistics.median(times):.3f} |"


def clinical() -> tuple[Volume, Volume, Volume]:
    """(int16 CT, uint8 labels, float32 probabilities [2, k, j, i]) of the test CT at clinical sampling."""
    folder = REPO / "Testing" / "Data" / CASE
    image, labels = (
        volume_from_sitk(resampled(sitk.ReadImage(str(folder / name)), COPIES[CASE], label))
        for name, label in (("image.nii.gz", False), ("label.nii.gz", True))
    )
    liver = ndimage.gaussian_filter((labels.array == 5).astype(np.float32), 1.0)
    return (
        image.with_array(image.array.astype(np.int16)),
        labels.with_array(labels.array.astype(np.uint8)),
        labels.with_array(np.stack([1.0 - liver, liver])),
    )


def atomic_writes(folder: Path) -> None:
    """100 small atomic writes of one file in ``folder``."""
    for _ in range(100):
        with atomic_file(folder / "model.json") as temporary:
            temporary.write_bytes(b"{}")


def main() -> None:
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    image, labels, probabilities = clinical()
    described = [LabelInfo(v, f"label {v}", (0.5, 0.5, 0.5)) for v in np.unique(labels.array).tolist() if v]
    print(f"SegNets {__version__}, {' x '.join(map(str, image.array.shape[::-1]))} voxels, best and median of 3.\n")
    print("| write | format | best s | median s |")
    print("|---|---|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="segnets-bench-") as scratch:
        out = Path(scratch)
        for suffix in (".nii.gz", ".nii", ".nrrd"):
            print(
                f"| volume (int16) | {suffix} | {timed(lambda s=suffix: write_volume(image, out / f'ct{s}'))}",
                flush=True,
            )
        for suffix in (".nii.gz", ".nii", ".nrrd", ".seg.nrrd"):
            result = timed(lambda s=suffix: write_segmentation(labels, described, out / f"labels{s}"))
            print(f"| segmentation (uint8) | {suffix} | {result}", flush=True)
        for suffix in (".nii.gz", ".nii"):
            result = timed(lambda s=suffix: write_probabilities(probabilities, out / f"probabilities{s}"))
            print(f"| probabilities (2 x float32) | {suffix} | {result}", flush=True)
        for files in (0, CROWD):
            folder = out / f"folder{files}"
            folder.mkdir()
            for n in range(files):
                (folder / f"case{n:05d}.nii.gz").touch()
            print(
                f"| 100 atomic_file writes, {files:,} files beside | .json | {timed(lambda f=folder: atomic_writes(f))}"
            )


if __name__ == "__main__":
    main()
