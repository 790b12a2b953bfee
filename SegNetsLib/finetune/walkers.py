"""The random walkers of a fine-tuning run on its working grid (:mod:`SegNetsLib.finetune.working_grid`).

Prepared before training (:func:`prepare_walkers`: the grid, what the walkers see on it, and for a network trained
on painted slices alone the walker's own result from those slices and the outlines' calibrated weight), they refine
the network's labelmap after it (:meth:`Walkers.refine`), or stand in for that refinement with the walker's own
result (:meth:`Walkers.alone`). Both come back on the full grid, cleaned up there again when the grid was coarser.
Arrays are [k, j, i] (an image may be [c, k, j, i]); spacing is (i, j, k) mm.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from SegNetsLib.core.box import Box
from SegNetsLib.core.progress import CancelToken
from SegNetsLib.finetune.calibrate import classical_inputs
from SegNetsLib.finetune.cleanup import keep_annotated_components, limit_to_annotated_range
from SegNetsLib.finetune.interpolate import INTERPOLATION_WEIGHT
from SegNetsLib.finetune.refine import REFINEMENT_REACH_MM, refine_result
from SegNetsLib.finetune.working_grid import Walked, WorkingGrid, working_grid


@dataclass
class Walkers:
    """A run's walkers: the ``grid`` and what they see on it (``walked``); the full grid's painted ``slices``
    {axis: indices}, ``labels`` and ``weight`` [k, j, i] and ``spacing``; ``painted_only``: the network was trained
    on these painted slices alone (its result is limited to their range and components); ``classical``: the walker's
    own result on the grid, or None; ``outline_weight``: the outlines' weight in the band; ``changing``: the box
    (full grid) outside which the band keeps the network's labels, or None; ``way_there_s``: seconds the way onto
    the grid took (the way back takes about as long)."""

    grid: WorkingGrid
    walked: Walked
    slices: Mapping[int, Sequence[int]]
    labels: np.ndarray
    weight: np.ndarray
    spacing: tuple[float, float, float]
    painted_only: bool
    classical: np.ndarray | None = None
    outline_weight: float = INTERPOLATION_WEIGHT
    changing: Box | None = None
    way_there_s: float = 0.0

    @property
    def walked_slices(self) -> dict[int, list[int]]:
        """The painted slices as slices of the walkers' grid."""
        return self.grid.slices(self.slices)

    def on_grid(self, labelmap: np.ndarray) -> np.ndarray:
        """A labelmap [k, j, i] of the full grid on the walkers' grid."""
        return self.grid.labels(labelmap)

    def refine(self, network: np.ndarray, cancel: CancelToken | None = None) -> np.ndarray:
        """The network's labelmap, given on the walkers' grid (:meth:`on_grid`), refined: a new labelmap of the
        full grid (:func:`SegNetsLib.finetune.refine.refine_result`)."""
        refined = refine_result(
            self.walked.image,
            network,
            self.walked.labels,
            self.walked.weight,
            self.walked.spacing,
            self.walked_slices if self.painted_only else None,
            cancel,
            self.classical,
            self.outline_weight,
            self.grid.box(self.changing),
        )
        return self._back(refined)

    def alone(self) -> np.ndarray | None:
        """The walker's own result from the painted slices on the full grid (a new array), or None without one."""
        return None if self.classical is None else self._back(self.classical.copy())

    def _back(self, labelmap: np.ndarray) -> np.ndarray:
        """``labelmap`` of the walkers' grid on the full grid; from a coarser grid, limited again to the painted range
        and to the components holding a painted voxel (a network trained on painted slices alone)."""
        out = self.grid.full(labelmap)
        if self.grid.coarse and self.painted_only:
            limit_to_annotated_range(out, self.slices, np.where(self.weight > 0, self.labels, 0), self.spacing)
            keep_annotated_components(out, self.labels, self.weight)
        return out


def prepare_walkers(
    image: np.ndarray,
    labels: np.ndarray,
    weight: np.ndarray,
    spacing: Sequence[float],
    slices: Mapping[int, Sequence[int]],
    painted_box: Box | None,
    painted_only: bool,
    changing: Box | None = None,
) -> Walkers:
    """The walkers of a run painted on ``slices`` ({axis: indices}; ``labels`` and ``weight`` [k, j, i] as the
    annotation gives them) whose painted structure lies in ``painted_box`` (None: none is known). A
    network trained on the painted slices alone (``painted_only``) results only inside that box, so the walkers'
    grid covers only it and the refinement's reach around it, and the walker's own result and the outlines'
    weight are measured there (only inside ``changing`` when given: a correction)."""
    spacing = tuple(float(s) for s in spacing)
    known = painted_box if painted_only else None
    grid = working_grid(labels.shape, spacing, slices, painted_box)
    if known is not None:
        grid = grid.within(known, REFINEMENT_REACH_MM, spacing)
    began = time.monotonic()
    # the image as it is: the refinement standardizes each channel of what it walks on, and the walker alone reads the
    # first channel in units of its own noise, so a standardized copy here would only be standardized again
    walked = grid.walked(image, labels, weight, spacing)
    walkers = Walkers(grid, walked, slices, labels, weight, spacing, painted_only, changing=changing)
    walkers.way_there_s = time.monotonic() - began
    if known is not None:
        walkers.classical, walkers.outline_weight = classical_inputs(
            walked.image,
            walked.painted,
            walkers.walked_slices,
            grid.box(known),
            walked.spacing,
            grid.box(changing),
            walked.weight == 0,  # on a painted slice: painted with the ignore value, for the walker to decide
        )
    return walkers
