"""Classical baselines for sparse annotation: Slicer's "Fill between slices" and a seeded random walker.

- ``fill_between_slices``: ITK's MorphologicalContourInterpolator with the parameters 3D Slicer's
  Fill between slices effect uses (vtkITKMorphologicalContourInterpolator defaults: all labels, axis
  chosen automatically, heuristic alignment on, repeated dilations rather than a distance transform,
  cross structuring element). It runs in a subprocess (this file run as a script), because importing
  ``itk`` and ``SimpleITK`` in one process has corrupted the heap here.
- ``random_walker``: scikit-image's seeded 3D random walker, the nearest pip analogue of Slicer's
  "Grow from seeds": every voxel of the annotated slices is a seed (its class, or background).

Arrays are [k, j, i]; annotations hold class values with 0 = background inside annotated slices.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from SegNetsLib.annotation import slices_mask  # noqa: E402


def fill_between_slices(annotation: np.ndarray, timeout_s: float = 600.0) -> np.ndarray:
    """Slicer's Fill between slices of ``annotation`` [k, j, i] (nonzero = classes): a dense labelmap.

    Interpolation never leaves the bounding box of the annotated voxels, so only that box (plus one
    voxel) is sent to the subprocess.
    """
    result = np.zeros_like(annotation)
    coords = np.nonzero(annotation)
    if not coords[0].size:
        return result
    box = tuple(slice(max(0, int(c.min()) - 1), int(c.max()) + 2) for c in coords)
    with tempfile.TemporaryDirectory(prefix="segnets-mci-") as folder:
        source, target = Path(folder) / "in.npy", Path(folder) / "out.npy"
        np.save(source, np.ascontiguousarray(annotation[box].astype(np.uint16)))
        subprocess.run(
            [sys.executable, __file__, "--mci", str(source), str(target)], check=True, timeout=timeout_s
        )
        result[box] = np.load(target).astype(annotation.dtype)
    return result


def _run_mci(source: Path, target: Path) -> None:
    """Subprocess body: imports itk (never SimpleITK) and interpolates."""
    import itk

    labels = np.load(source)
    image = itk.image_from_array(labels)
    out = itk.morphological_contour_interpolator(
        image,
        label=0,
        axis=-1,
        heuristic_alignment=True,
        use_distance_transform=False,
        use_ball_structuring_element=False,
    )
    np.save(target, itk.array_from_image(out))


def random_walker(
    image: np.ndarray,
    annotation: np.ndarray,
    slices: Mapping[int, Sequence[int]],
    beta: float = 130.0,
    seed: int = 0,
) -> np.ndarray:
    """Seeded random walker on ``image`` [k, j, i]: seeds are all voxels of the annotated slices.

    Returns a labelmap with the annotation's class values (0 = background).
    """
    from skimage.segmentation import random_walker as skimage_random_walker

    np.random.seed(seed)  # the conjugate-gradient solver starts from random guesses in some modes
    seeds = np.zeros(image.shape, dtype=np.int32)
    annotated = slices_mask(image.shape, slices)
    seeds[annotated] = annotation[annotated].astype(np.int32) + 1  # background seeds = 1, class c = c + 1
    data = image.astype(np.float64)
    data = (data - data.mean()) / max(float(data.std()), 1e-6)
    result = skimage_random_walker(data, seeds, beta=beta, mode="cg", tol=1e-3)
    return (result - 1).astype(annotation.dtype)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--mci":
        _run_mci(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        print("_baselines.py is a helper of bench/sparse.py (python bench/baselines.py --mci IN.npy OUT.npy); "
              "nothing to measure on its own._")
