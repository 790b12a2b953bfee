"""Classical sparse-annotation methods SegNets is compared with (demo, benchmarks).

- Fill between slices: 3D Slicer's effect, i.e. ITK's MorphologicalContourInterpolator with the
  parameters Slicer uses (all labels, axis chosen automatically, heuristic alignment on, repeated
  dilations rather than a distance transform, cross structuring element). It runs in a subprocess
  (``python -m SegNetsLib.evaluation.classical --mci IN.npy OUT.npy``) because importing ``itk`` and
  ``SimpleITK`` in one process has corrupted the heap here; needs ``itk-morphologicalcontourinterpolation``.
- A seeded random walker (scikit-image), the nearest pip analogue of Slicer's "Grow from seeds":
  every voxel of the annotated slices is a seed (its class, or background). Its edges are measured as a
  user of scikit-image would (intensities z-scored, beta 130: :func:`walker_input` "std"); the fine-tuning
  pipeline's own walker measures them against the image's noise ("noise").

Arrays are [k, j, i]; annotations hold class values, 0 = background inside annotated slices.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from SegNetsLib.core.annotation import slices_mask
from SegNetsLib.evaluation.walker_grid import solve_random_walker


class FillBetweenSlices:
    """Slicer's Fill between slices of an annotation, started in a subprocess so it can run beside training.

    Interpolation never leaves the bounding box of the annotated voxels, so only that box (plus one
    voxel) is sent to the subprocess. Use ``result()`` to wait; it returns None when itk is missing or fails.
    """

    def __init__(self, annotation: np.ndarray) -> None:
        self.shape, self.dtype = annotation.shape, annotation.dtype
        self._folder = tempfile.TemporaryDirectory(prefix="segnets-mci-")
        folder = Path(self._folder.name)
        coords = np.nonzero(annotation)
        self._box = tuple(slice(max(0, int(c.min()) - 1), int(c.max()) + 2) for c in coords) if coords[0].size else None
        self.error = ""
        self._process: subprocess.Popen | None = None
        if self._box is None:
            return
        np.save(folder / "in.npy", np.ascontiguousarray(annotation[self._box].astype(np.uint16)))
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "SegNetsLib.evaluation.classical",
                "--mci",
                str(folder / "in.npy"),
                str(folder / "out.npy"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # one ITK thread: multi-threaded runs have crashed here at random (heap corruption in the filter)
            env={**os.environ, "OMP_NUM_THREADS": "1", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"},
        )

    def result(self, timeout_s: float = 600.0) -> np.ndarray | None:
        """The dense labelmap [k, j, i] (annotation's dtype), or None when the interpolation failed."""
        try:
            out = np.zeros(self.shape, dtype=self.dtype)
            if self._process is None:
                return out
            _, error = self._process.communicate(timeout=timeout_s)
            if self._process.returncode != 0:
                lines = error.decode(errors="replace").strip().splitlines()
                self.error = lines[-1] if lines else f"exit code {self._process.returncode}"
                return None
            out[self._box] = np.load(Path(self._folder.name) / "out.npy").astype(self.dtype)
            return out
        finally:
            self._folder.cleanup()


def fill_between_slices(annotation: np.ndarray, timeout_s: float = 600.0, attempts: int = 2) -> np.ndarray:
    """Slicer's Fill between slices of ``annotation`` [k, j, i]; raises RuntimeError when every attempt fails.

    A failed subprocess is started again (``attempts`` in all): ITK's filter has crashed here at random
    on inputs it then interpolated fine.
    """
    for _ in range(attempts):
        job = FillBetweenSlices(annotation)
        result = job.result(timeout_s)
        if result is not None:
            return result
    raise RuntimeError(f"Fill between slices failed: {job.error}")


STD_BETA = 130.0
"""scikit-image's default beta: on z-scored intensities, an edge between neighbours weighs exp(-13 (difference /
standard deviation)^2)."""

NOISE_BETA = 1.0
"""An edge between neighbours weighs exp(-NOISE_BETA (difference / noise)^2) for the pipeline's walker. Chosen on
the 24 first TUNE structures of bench/sparse_sets.py (the walker alone from k bin-centre slices in the known box,
mean Dice k = 2 / k = 3): z-scored with beta 130 0.717 / 0.797; 0.5: 0.760 / 0.841; **1: 0.783 / 0.849**; 2:
0.794 / 0.849; 4: 0.767 / 0.832 (docs/benchmarks/sparse.md)."""


def noise_level(data: np.ndarray, channel_axis: int | None = None) -> float:
    """The image noise of ``data`` (intensity units): the median absolute difference of neighbouring voxels
    along every axis (not ``channel_axis``), over the differences that are not 0 (a region of one value,
    air clipped in a CT or the zeros around a skull-stripped brain, says nothing about noise); 1.0 where every
    difference is 0. Edges are few, so the median is the noise of the tissue."""
    skip = None if channel_axis is None else channel_axis % data.ndim
    axes = [axis for axis in range(data.ndim) if axis != skip]
    differences = np.concatenate([np.abs(np.diff(data, axis=axis)).ravel() for axis in axes])
    differences = differences[differences > 0]
    return float(np.median(differences)) if differences.size else 1.0


def edge_noise(data: np.ndarray, channel_axis: int | None = None) -> float:
    """The intensity step (intensity units) against which the "noise" edges of :func:`walker_input` are measured:
    :func:`noise_level`, but never above the standard deviation times sqrt(10 :data:`NOISE_BETA` /
    :data:`STD_BETA`), so that edges are never softer than "std" makes them (a noise-free image's differences are
    all edges, and its median difference an edge's height)."""
    data = np.asarray(data, dtype=np.float64)  # differences of unsigned integers would wrap around
    std = max(float(data.std()), 1e-6)
    return max(min(noise_level(data, channel_axis), std * float(np.sqrt(10.0 * NOISE_BETA / STD_BETA))), 1e-6)


def walker_input(
    data: np.ndarray, edges: str, channel_axis: int | None = None, noise: float | None = None
) -> tuple[np.ndarray, float]:
    """``data`` (any shape; channels on ``channel_axis``) as float64 for scikit-image's random walker, and the
    beta to pass with it. ``edges="std"``: z-scored, beta :data:`STD_BETA`. ``edges="noise"``: centred and in
    units of ``noise`` (default :func:`edge_noise` of ``data``; give that of a larger region this part belongs to,
    and the part's edges weigh what they weigh there), with the beta that makes scikit-image weigh an edge
    exp(-:data:`NOISE_BETA` (difference / noise)^2) (it divides beta by 10 x the data's standard deviation, and by
    the square root of the channel count)."""
    data = data.astype(np.float64)
    std = max(float(data.std()), 1e-6)
    if edges == "std":
        return (data - data.mean()) / std, STD_BETA
    if edges != "noise":
        raise ValueError(f"edges must be 'std' or 'noise', not {edges!r}.")
    noise = edge_noise(data, channel_axis) if noise is None else noise
    channels = 1 if channel_axis is None else data.shape[channel_axis]  # the scaled data's spread is std / noise
    return (data - data.mean()) / noise, NOISE_BETA * 10.0 * (std / noise) * float(np.sqrt(channels))


def random_walker(
    image: np.ndarray,
    annotation: np.ndarray,
    slices: Mapping[int, Sequence[int]],
    seed: int = 0,
    mode: str = "cg",
    edges: str = "std",
    noise: float | None = None,
    sampling: Sequence[float] | None = None,
    unlabeled: np.ndarray | None = None,
) -> np.ndarray:
    """Seeded random walker on ``image`` [k, j, i]: seeds are all voxels of the annotated slices but those of
    ``unlabeled`` (bool [k, j, i]: painted with the ignore value, left for the walker to decide). ``mode``:
    scikit-image's solver ("cg_j", Jacobi-preconditioned, reaches the same tolerance faster); ``edges``, ``noise``:
    how intensities are scaled (:func:`walker_input`). ``sampling``: None runs scikit-image as a user of it
    would; the voxel size (k, j, i) mm runs :func:`evaluation.walker_grid.solve_random_walker` instead (a large
    system on a coarser grid; ``mode`` is then "cg_j").

    Returns a labelmap with the annotation's class values (0 = background).
    """
    from skimage.segmentation import random_walker as skimage_random_walker

    np.random.seed(seed)  # the conjugate-gradient solver starts from random guesses in some modes
    seeds = np.zeros(image.shape, dtype=np.int32)
    annotated = slices_mask(image.shape, slices)
    if unlabeled is not None:
        annotated &= ~unlabeled
    seeds[annotated] = annotation[annotated].astype(np.int32) + 1
    data, beta = walker_input(image, edges, noise=noise)
    values = np.unique(seeds[seeds > 0])  # background seeds = 1, class c = c + 1
    ranks = np.searchsorted(values, seeds).astype(np.int32) + 1
    ranks[seeds == 0] = 0  # scikit-image labels consecutively: seeds 1..n, back to values after
    if sampling is None:
        result = skimage_random_walker(data, ranks, beta=beta, mode=mode, tol=1e-3)
    else:
        result = np.argmax(solve_random_walker(data, ranks, beta, sampling), axis=0) + 1
    return (values[result - 1] - 1).astype(annotation.dtype)


def _run_mci(source: Path, target: Path) -> None:
    """Subprocess body: imports itk (never SimpleITK) and interpolates."""
    import itk

    labels = np.load(source)
    out = itk.morphological_contour_interpolator(
        itk.image_from_array(labels),
        label=0,
        axis=-1,
        heuristic_alignment=True,
        use_distance_transform=False,
        use_ball_structuring_element=False,
    )
    np.save(target, itk.array_from_image(out))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "--mci":
        sys.exit("usage: python -m SegNetsLib.evaluation.classical --mci IN.npy OUT.npy")
    _run_mci(Path(sys.argv[2]), Path(sys.argv[3]))
