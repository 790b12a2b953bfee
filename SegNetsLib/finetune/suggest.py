"""Which slice to paint next: the one whose painting brings most of what is uncertain closer to a painting.

After a fine-tuning round each gap between painted slices along the painting axis offers its middle slice, and so
does each stretch between the outer painted slice and the end of the result (of the network's labelmap or the
refined one). A candidate's score is how far painting it would bring the uncertain voxels closer to a painted
slice, summed: the uncertain voxels of every slice times the slices by which the candidate shortens that slice's
distance to the nearest painting, since what the network knows fades with that distance (and a correction changes
at most the slices nearer the new slice than any other, ``finetune.update.local_update``). Uncertain voxels under
each measure:
- ``area``: the result's foreground (every voxel of the result is as uncertain as its distance makes it);
- ``painted-area``: as ``area``, but a slice between two painted ones counts at least the area of those two
  paintings interpolated linearly, so that a stretch the result misses still weighs what the structure should hold
  there (a slice's painted area is the result's area on it: the result keeps every painted voxel);
- ``disagreement``: the network's labelmap and the boundary refinement's differ there (free: both exist);
- ``entropy``: the entropy (nats) of the network's class probabilities (runs the network again);
- ``tta``: the network's labelmap and its labelmap on the volume mirrored left-right differ there (again).
A measure with nothing uncertain near any candidate falls back to ``area``. Arrays are [k, j, i]; an axis is an
array axis (0 = k, the axial one for an axial volume).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from SegNetsLib.card.card import ModelCard, RoiSettings
from SegNetsLib.core.annotation import painting_axis
from SegNetsLib.core.volume import Volume
from SegNetsLib.finetune.cleanup import without_postprocessing
from SegNetsLib.inference.predictor import Predictor

MEASURES = ("area", "painted-area", "disagreement", "entropy", "tta")
# chosen on bench/sparse_sets.py's TUNE set (docs/benchmarks/sparse_rounds.md): on its 41 structures (round 1: 2
# bin-centre slices, 300 iterations; each rule's slice continued warm from the same model, the result updated as the
# user sees it) the mean Dice gain at k = 2 -> 3 / 3 -> 4 / both was: gap middles scored by the painted area
# +0.068 / +0.027 / +0.0475; by the result's area alone (the rule before) +0.063 / +0.030 / +0.0466; the fixed bin
# rule (it knows the true extent) +0.067 / +0.028 / +0.0475; a random slice of the true extent +0.042 / +0.023 /
# +0.0325. On the first 24 of them the gap middles had beaten the slice with the most disagreement x distance
# (+0.061 / +0.027 against +0.045 / +0.024) and the disagreement as the measure (+0.042 / +0.022). Costs no
# network pass (entropy and tta each need one).
DEFAULT_MEASURE = "painted-area"
FALLBACK_MEASURE = "area"
NEEDS_NETWORK = {"entropy", "tta"}


@dataclass
class SliceSuggestion:
    """The slice to paint next: ``index`` along array ``axis``; ``score``: its :func:`reach` (uncertain voxels
    x slices closer; entropy: nats x slices) under ``measure``; ``painted``: the slices painted along ``axis``
    when it was suggested."""

    axis: int
    index: int
    score: float
    measure: str
    painted: tuple[int, ...] = ()

    def reason(self) -> str:
        """Where the slice lies against the painted ones, in words for the user (the candidates are the middles of
        gaps and stretches, :func:`candidate_slices`, hence "halfway")."""
        below = [p for p in self.painted if p < self.index]
        above = [p for p in self.painted if p > self.index]
        if below and above:
            return f"halfway between the painted slices {max(below)} and {min(above)}"
        if below or above:
            return f"beyond the painted slice {max(below) if below else min(above)}"
        return "where painting should help most"

    def describe(self) -> str:
        return f"slice {self.index} along axis {self.axis}, {self.reason()}"


def candidate_slices(results: Sequence[np.ndarray], painted: Sequence[int], axis: int) -> list[int]:
    """The middle slice of each gap between ``painted`` slices along ``axis`` (gaps of one slice or more; both
    middle slices where an even number lie between) and of each stretch between the outer painted slice and the end
    of the foreground of any of ``results`` ([k, j, i]); gaps first, then the stretch before, then the one after
    (never a painted slice)."""
    ordered = sorted(set(int(i) for i in painted))
    if not ordered:
        return []
    others = tuple(a for a in range(3) if a != axis)
    present = np.zeros(np.asarray(results[0]).shape[axis], dtype=bool)
    for result in results:
        present |= np.asarray(result).any(axis=others)
    found = np.nonzero(present)[0]
    first, last = (int(found[0]), int(found[-1])) if found.size else (ordered[0], ordered[-1])
    # both middles of an even gap: on 41 TUNE structures mean gain +0.068 / +0.028 (k = 2 -> 3 / 3 -> 4) against
    # +0.068 / +0.027 with the lower one alone (docs/benchmarks/sparse_rounds.md)
    middles = [m for a, b in zip(ordered, ordered[1:]) if b - a >= 2 for m in sorted({(a + b) // 2, (a + b + 1) // 2})]
    if first < ordered[0]:
        middles.append((first + ordered[0]) // 2)
    if last > ordered[-1]:
        middles.append((last + ordered[-1] + 1) // 2)
    return middles


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
    if measure in ("area", "painted-area"):
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


def painted_trend(per_slice: np.ndarray, painted: Sequence[int]) -> np.ndarray:
    """[length]: on each slice between the first and the last of ``painted`` (indices within [0, length)), the values
    of ``per_slice`` [length] on the painted slices interpolated linearly; 0 before the first and after the last."""
    ordered = sorted(set(int(p) for p in painted))
    trend = np.zeros(per_slice.shape[0], dtype=np.float64)
    if ordered:
        inside = np.arange(ordered[0], ordered[-1] + 1)
        trend[inside] = np.interp(inside, ordered, per_slice[ordered])
    return trend


def distance_to_painted(painted: Sequence[int], length: int) -> np.ndarray:
    """Slices [length] from each slice to the nearest of ``painted`` (``length`` when none is)."""
    if not len(painted):
        return np.full(length, float(length))
    index = np.arange(length)[:, None]
    return np.abs(index - np.asarray(sorted(painted))[None, :]).min(axis=1).astype(np.float64)


def reach(per_slice: np.ndarray, painted: Sequence[int], candidate: int) -> float:
    """Sum over slices of ``per_slice`` [length] (uncertain voxels of each slice) times the slices by which painting
    ``candidate`` would shorten that slice's distance to the nearest of ``painted``."""
    length = per_slice.shape[0]
    distance = distance_to_painted(painted, length)
    saved = np.maximum(0.0, distance - np.abs(np.arange(length) - candidate))
    return float((per_slice * saved).sum())


def pick_slice(
    uncertainty: np.ndarray, candidates: Sequence[int], axis: int, measure: str, painted: Sequence[int] = ()
) -> SliceSuggestion | None:
    """Of ``candidates`` (slice indices along ``axis``), the one with the highest :func:`reach` of ``uncertainty``
    [k, j, i] summed per slice (``painted-area``: at least the :func:`painted_trend` of those sums) (ties: the
    first); None without candidates or when none brings anything uncertain closer."""
    per_slice = slice_scores(uncertainty, axis)
    if measure == "painted-area":
        per_slice = np.maximum(per_slice, painted_trend(per_slice, painted))
    scores = [reach(per_slice, painted, c) for c in candidates]
    if not scores or max(scores) <= 0:
        return None
    best = int(np.argmax(scores))
    return SliceSuggestion(axis, int(candidates[best]), scores[best], measure, tuple(sorted(int(p) for p in painted)))


def _network_card(card: ModelCard) -> ModelCard:
    """``card`` without post-processing or RoI localization: the network's own labels over the whole volume, so
    that a locator model the card names need not be found."""
    plain = without_postprocessing(card)
    plain.roi = RoiSettings(mode="off")
    return plain


def mirrored_labelmap(
    net: nn.Module, card: ModelCard, volume: Volume, device: str | torch.device = "cpu"
) -> np.ndarray:
    """The network's labelmap [k, j, i] (no post-processing) of ``volume`` mirrored along i, mirrored back."""
    flipped = volume.with_array(np.ascontiguousarray(volume.array[..., ::-1]))
    prediction = Predictor(net, _network_card(card), device).predict(flipped, roi="off")
    return np.ascontiguousarray(prediction.labelmap.array[..., ::-1])


def network_probabilities(
    net: nn.Module, card: ModelCard, volume: Volume, device: str | torch.device = "cpu"
) -> np.ndarray:
    """The network's class probabilities [C, k, j, i] on ``volume`` (background included)."""
    prediction = Predictor(net, _network_card(card), device).predict(volume, roi="off", probabilities=True)
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
    the network again (``net``, ``card``, ``volume``); None when no candidate brings anything uncertain closer."""
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
    painted = list(slices.get(axis, []))
    candidates = candidate_slices([network, refined], painted, axis)
    found = pick_slice(uncertainty, candidates, axis, measure, painted)
    if found is None and measure != FALLBACK_MEASURE:
        found = pick_slice(
            uncertainty_map(FALLBACK_MEASURE, network, refined), candidates, axis, FALLBACK_MEASURE, painted
        )
    return found
