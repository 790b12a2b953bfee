"""Which slice to paint next: the one the result is least sure of.

After a fine-tuning round every candidate slice (along the painting axis, inside the range the result
and the clean-up reach, not painted yet) gets an uncertainty score: its uncertain voxels times its
distance (in slices) to the nearest painted slice, since what the network knows fades with that distance.
Uncertain voxels under each measure:
- ``disagreement``: the network's labelmap and the boundary refinement's differ there (free: both exist);
- ``entropy``: the entropy (nats) of the network's class probabilities (runs the network again);
- ``tta``: the network's labelmap and its labelmap on the volume mirrored left-right differ there (again);
- ``area``: the result's foreground (the bin rule's reasoning, on what the result knows of the extent).
A measure with nothing uncertain on any candidate falls back to ``area``. Arrays are [k, j, i]; an axis
is an array axis (0 = k, the axial one for an axial volume).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from SegNetsLib.card.card import ModelCard
from SegNetsLib.core.annotation import painting_axis
from SegNetsLib.core.volume import Volume
from SegNetsLib.finetune.cleanup import annotated_range, without_postprocessing
from SegNetsLib.inference.predictor import Predictor

MEASURES = ("disagreement", "entropy", "tta", "area")
# chosen on bench/sparse_sets.py's TUNE set (docs/benchmarks/sparse_rounds.md): on the round-1 results of five TUNE
# structures (2 bin-centre slices, 300 iterations) the slice each rule picks held this many wrong voxels on average:
# disagreement x distance 186, area x distance 183, the fixed bin rule 179 (it knows the true extent), a random
# slice 108, tta x distance 71, entropy x distance 69; without the distance weight disagreement picked 102. It also
# costs no network pass (entropy and tta each need one, 3-12 s here).
DEFAULT_MEASURE = "disagreement"
FALLBACK_MEASURE = "area"
NEEDS_NETWORK = {"entropy", "tta"}


@dataclass
class SliceSuggestion:
    """The slice to paint next: ``index`` along array ``axis``; ``score``: its uncertain voxels (entropy: nats)
    under ``measure``; ``share``: its part of the uncertainty of all candidate slices (0..1)."""

    axis: int
    index: int
    score: float
    measure: str
    share: float

    def describe(self) -> str:
        return f"slice {self.index} along axis {self.axis} ({self.measure} score {self.score:.0f})"

    def as_dict(self) -> dict:
        return {"axis": self.axis, "index": self.index, "score": self.score, "measure": self.measure}


def candidate_slices(
    results: Sequence[np.ndarray], slices: Mapping[int, Sequence[int]], axis: int, length: int
) -> np.ndarray:
    """Bool [length]: slices along ``axis`` worth painting: inside the foreground extent of any of ``results``
    ([k, j, i]) or the clean-up's annotated range, one slice wider, and not painted yet."""
    keep = np.zeros(length, dtype=bool)
    painted = sorted(int(i) for i in slices.get(axis, []))
    if painted:
        keep[annotated_range(painted, length)] = True
    others = tuple(a for a in range(3) if a != axis)
    for result in results:
        present = np.nonzero(np.asarray(result).any(axis=others))[0]
        if present.size:
            keep[max(0, present[0] - 1) : present[-1] + 2] = True
    keep[painted] = False
    return keep


def slice_scores(uncertainty: np.ndarray, axis: int) -> np.ndarray:
    """Sum of ``uncertainty`` [k, j, i] over each slice along ``axis``: [length]."""
    return uncertainty.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.float64)


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy in nats [k, j, i] of class probabilities [C, k, j, i] (a single channel: foreground only)."""
    p = np.clip(probabilities.astype(np.float32), 1e-6, 1.0)
    if p.shape[0] == 1:
        q = np.clip(1.0 - p[0], 1e-6, 1.0)
        return -(p[0] * np.log(p[0]) + q * np.log(q))
    return -(p * np.log(p)).sum(axis=0)


def uncertainty_map(
    measure: str,
    network: np.ndarray,
    refined: np.ndarray,
    probabilities: np.ndarray | None = None,
    mirrored: np.ndarray | None = None,
) -> np.ndarray:
    """Per-voxel uncertainty [k, j, i] float32 under ``measure`` (see the module docstring).

    network, refined, mirrored: labelmaps [k, j, i]; probabilities [C, k, j, i] (``entropy`` only)."""
    if measure == "disagreement":
        return (network != refined).astype(np.float32)
    if measure == "area":
        return (refined > 0).astype(np.float32)
    if measure == "entropy":
        if probabilities is None:
            raise ValueError("the entropy measure needs the network's probabilities")
        return entropy(probabilities)
    if measure == "tta":
        if mirrored is None:
            raise ValueError("the tta measure needs the labelmap of the mirrored volume")
        return (network != mirrored).astype(np.float32)
    raise ValueError(f"unknown uncertainty measure {measure!r}; use one of {', '.join(MEASURES)}")


def distance_to_painted(painted: Sequence[int], length: int) -> np.ndarray:
    """Slices [length] from each slice to the nearest of ``painted`` (``length`` when none is)."""
    if not len(painted):
        return np.full(length, float(length))
    index = np.arange(length)[:, None]
    return np.abs(index - np.asarray(sorted(painted))[None, :]).min(axis=1).astype(np.float64)


def pick_slice(
    uncertainty: np.ndarray, candidates: np.ndarray, axis: int, measure: str, painted: Sequence[int] = ()
) -> SliceSuggestion | None:
    """The candidate slice with the highest summed uncertainty times its distance to the nearest of
    ``painted`` (ties: the first); None without candidates or when nothing is uncertain on any of them."""
    scores = slice_scores(uncertainty, axis) * distance_to_painted(painted, uncertainty.shape[axis])
    scores = np.where(candidates, scores, -1.0)
    best = int(np.argmax(scores))
    if scores[best] <= 0:
        return None
    total = float(scores[candidates].sum())
    return SliceSuggestion(axis, best, float(scores[best]), measure, float(scores[best]) / total if total else 0.0)


def mirrored_labelmap(
    net: nn.Module, card: ModelCard, volume: Volume, device: str | torch.device = "cpu"
) -> np.ndarray:
    """The network's labelmap [k, j, i] (no post-processing) of ``volume`` mirrored along i, mirrored back."""
    flipped = volume.with_array(np.ascontiguousarray(volume.array[..., ::-1]))
    prediction = Predictor(net, without_postprocessing(card), device).predict(flipped, roi="off")
    return np.ascontiguousarray(prediction.labelmap.array[..., ::-1])


def network_probabilities(
    net: nn.Module, card: ModelCard, volume: Volume, device: str | torch.device = "cpu"
) -> np.ndarray:
    """The network's class probabilities [C, k, j, i] on ``volume`` (background included)."""
    prediction = Predictor(net, without_postprocessing(card), device).predict(volume, roi="off", probabilities=True)
    return prediction.probabilities.array


def suggest_slice(
    network: np.ndarray,
    refined: np.ndarray,
    slices: Mapping[int, Sequence[int]],
    measure: str = DEFAULT_MEASURE,
    *,
    net: nn.Module | None = None,
    card: ModelCard | None = None,
    volume: Volume | None = None,
    device: str | torch.device = "cpu",
) -> SliceSuggestion | None:
    """The slice to paint next after a round whose network labelmap is ``network`` and final (refined)
    labelmap ``refined`` ([k, j, i]), painted on ``slices`` {axis: indices}. ``entropy`` and ``tta`` run
    the network again (``net``, ``card``, ``volume``); None when no slice is uncertain."""
    axis = painting_axis(slices)
    probabilities = mirrored = None
    if measure in NEEDS_NETWORK:
        if net is None or card is None or volume is None:
            raise ValueError(f"the {measure} measure needs the network, its card and the volume")
        if measure == "entropy":
            probabilities = network_probabilities(net, card, volume, device)
        else:
            mirrored = mirrored_labelmap(net, card, volume, device)
    uncertainty = uncertainty_map(measure, network, refined, probabilities, mirrored)
    candidates = candidate_slices([network, refined], slices, axis, network.shape[axis])
    painted = list(slices.get(axis, []))
    found = pick_slice(uncertainty, candidates, axis, measure, painted)
    if found is None and measure != FALLBACK_MEASURE:
        found = pick_slice(
            uncertainty_map(FALLBACK_MEASURE, network, refined), candidates, axis, FALLBACK_MEASURE, painted
        )
    return found
