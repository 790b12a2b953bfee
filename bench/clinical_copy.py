"""Clinical-size copies of the shared example volumes, for benchmarks at clinical sampling.

The shared TotalSegmentator examples are sampled at 3 mm; a clinical CT is near 0.75 x 0.75 x 1.5 mm.
This writes each case resampled to a finer spacing (image: linear; labels: SimpleITK's label-Gaussian
interpolator, so boundaries stay smooth rather than blocky) into OUT/<case>/, meta.json copied:

    python bench/clinical_copy.py OUT [--data ../shared/data]

Then `bench/sparse.py --data OUT` runs the same protocol on them.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]

#: Spacing (x, y, z) in mm of each copy: a clinical CT and a clinical abdominal MR.
COPIES = {"ts_ct_full": (0.75, 0.75, 1.5), "ts_mr_sm": (1.0, 1.0, 1.5)}


def resampled(image: sitk.Image, spacing: tuple[float, float, float], label: bool) -> sitk.Image:
    """`image` on a grid of `spacing` (mm) covering the same extent as the original grid."""
    size = [round(n * s / t) for n, s, t in zip(image.GetSize(), image.GetSpacing(), spacing)]
    # the new grid's first voxel centre sits half a new voxel inside the original first voxel's edge
    origin_index = [(t / s - 1.0) / 2.0 for s, t in zip(image.GetSpacing(), spacing)]
    origin = image.TransformContinuousIndexToPhysicalPoint(origin_index)
    interpolator = sitk.sitkLabelGaussian if label else sitk.sitkLinear
    return sitk.Resample(
        image,
        size,
        sitk.Transform(),
        interpolator,
        origin,
        spacing,
        image.GetDirection(),
        0,
        image.GetPixelID(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    missing = [case for case in COPIES if not (args.data / case).is_dir()]
    if missing:
        parser.error(f"{args.data} holds no {', '.join(missing)}: it needs the shared data collection (--data).")
    for case, spacing in COPIES.items():
        source, target = args.data / case, args.out / case
        target.mkdir(parents=True, exist_ok=True)
        for name, label in (("image.nii.gz", False), ("label.nii.gz", True)):
            copy = resampled(sitk.ReadImage(str(source / name)), spacing, label)
            sitk.WriteImage(copy, str(target / name), useCompression=True)
            print(f"{case}/{name}: {copy.GetSize()} at {spacing} mm")
        shutil.copy(source / "meta.json", target / "meta.json")


if __name__ == "__main__":
    main()
