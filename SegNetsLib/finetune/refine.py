"""Boundary refinement of a fine-tuned network's labelmap with a seeded random walker (scikit-image).

The network places each structure; the random walker settles the boundary from the image's edges.
Seeds: voxels deeper than ``inner_mm`` inside a predicted structure keep its class (for a structure
thinner than that, such as a vessel, voxels deeper than ``inner_fraction`` of its largest depth, so its
core stays a seed); voxels farther than ``outer_mm`` from every predicted structure are background; every
annotated voxel is a seed of the user's label. Only the band in between is decided, inside the box around it:
each voxel takes the class with the highest ``(1 - network_weight) * random-walker probability +
network_weight * (1 if the network gave it that class else 0)``. With the default weight 0.2 the network's
labelmap moves the threshold on the walker's probability from 0.5 to 0.375 inside its structure and 0.625
outside: the image's edges decide, and where they say little the network does.
Arrays are [k, j, i] (image may be [c, k, j, i]); spacing is (i, j, k) mm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from SegNetsLib.core.annotation import slices_mask
from SegNetsLib.core.box import Box, crop, mask_box
from SegNetsLib.core.progress import CancelToken
from SegNetsLib.evaluation.classical import edge_noise, random_walker, walker_input
from SegNetsLib.evaluation.walker_grid import solve_random_walker
from SegNetsLib.finetune.cleanup import keep_annotated_components, limit_to_annotated_range
from SegNetsLib.finetune.interpolate import INTERPOLATION_WEIGHT, interpolated_distances, with_interpolation

WALKER_EDGES = "noise"
"""How the pipeline's random walker (the walker alone, the held-out calibration, the band) measures the image's
edges: against the noise of the part it runs on (:func:`evaluation.classical.walker_input`), so that a structure's
own contrast does not soften them, as z-scoring a box mostly made of it does. Chosen on the TUNE set
(docs/benchmarks/sparse.md)."""

NETWORK_WEIGHT = 0.2
"""Weight of the network's labelmap against the random walker's probabilities in the band. Chosen on saved
k = 3 network labelmaps of the sparse benchmark's cases: the three BraTS whole-tumour folds, which are the
pretrained setting's report structure (mean Dice 0.866 with 0, 0.891 with 0.2, 0.888 with 0.3), and the first 10
TUNE structures of bench/sparse_sets.py, from scratch (0.900 with 0, 0.897 with 0.2, 0.888 with 0.3);
docs/finetuning.md#boundary-refinement. The pretrained setting's numbers are therefore not free of it
(docs/benchmarks/sparse.md)."""

REFINEMENT_REACH_MM = 24.0
"""How far (mm) from every result the refinement's band reaches: background is seeded beyond it."""

CLASSICAL_WEIGHT = 0.3
NETWORK_WEIGHT_WITH_CLASSICAL = 0.1
"""Weights of the random walker's own result (from the painted slices alone, inside the range a network trained on
them knows) and of the network's labelmap in the band, when the walker's result is given (from scratch). Chosen on
the tune set of bench/sparse_sets.py, saved network labelmaps of 60 s runs on a loaded machine (mean Dice k = 2 /
k = 3): network weight 0.2 alone 0.740 / 0.883; with the walker's result 0.2 + 0.2: 0.778 / 0.884; 0.3 + 0.1:
0.802 / 0.889; 0.3 + 0.1 seeding only the network's core the walker agrees with: 0.811 / 0.882, but the CT aorta at
k = 3 fell to 0.57 (0.70 without; Fill between slices 0.67) where the walker alone leaks. Swept again beside the
held-out outline weight (tune set, k = 3): seven other pairs from 0.2 + 0.2 to 0.4 + 0.05 all within 0.0012 of 0.844."""


def refine_result(
    image: np.ndarray,
    labelmap: np.ndarray,
    annotation: np.ndarray,
    weight: np.ndarray,
    spacing: Sequence[float],
    scratch_slices: Mapping[int, Sequence[int]] | None = None,
    cancel: CancelToken | None = None,
    classical: np.ndarray | None = None,
    interpolation_weight: float = INTERPOLATION_WEIGHT,
    within: Box | None = None,
) -> np.ndarray:
    """The fine-tuning result's last step: :func:`refine_with_random_walker` (``classical``,
    ``interpolation_weight``, ``within``: see there), and for a network trained from scratch on ``scratch_slices`` (axis ->
    indices) the annotated range its labelmap was limited to, which the random walker must not leave either (it
    spread a 3-slice lesion over 13 slices once), and only the components holding a painted voxel. Annotated voxels
    keep the user's label: they are seeds, and the range holds every annotated structure."""
    painted = np.where(weight > 0, annotation, 0)
    interpolated = None
    if scratch_slices is not None and classical is not None:
        unlabeled = slices_mask(painted.shape, scratch_slices) & (weight == 0)  # the ignore value's voxels
        interpolated = interpolated_distances(painted, scratch_slices, spacing, unlabeled)
    out = refine_with_random_walker(
        image,
        labelmap,
        annotation,
        weight,
        spacing,
        cancel=cancel,
        classical=classical,
        interpolated=interpolated,
        interpolation_weight=interpolation_weight,
        within=within,
    )
    if scratch_slices is not None:
        limit_to_annotated_range(out, scratch_slices, painted, spacing)
        # and only components holding a painted voxel, as after the network (tune set, k = 2: mean Dice 0.802 ->
        # 0.806; the CT's left kidney 0.878 -> 0.924, where a network blob the walker cut loose had stayed)
        keep_annotated_components(out, annotation, weight)
    return out


def walker_alone(
    image: np.ndarray,
    painted: np.ndarray,
    slices: Mapping[int, Sequence[int]],
    box: Box,
    spacing: Sequence[float],
    within: Box | None = None,
    unlabeled: np.ndarray | None = None,
) -> np.ndarray:
    """The seeded random walker of :mod:`evaluation.classical` (every voxel of the annotated ``slices`` a seed, but
    those of ``unlabeled``, bool [k, j, i]: painted with the ignore value)
    inside ``box`` of ``image`` [k, j, i] (a [c, k, j, i] image: its first channel), 0 outside: what the user's
    own tool makes of the painted labels ``painted`` [k, j, i] (0 elsewhere); ``spacing``: (i, j, k) mm, for
    :func:`evaluation.walker_grid.solve_random_walker`. ``within``: run only on the part of
    ``box`` inside it, with the edges measured as over all of ``box``; bounded by painted slices (seeds) or the
    volume's ends, that part comes out as from a run over all of ``box``, up to the solver's tolerance."""
    scalar = image if image.ndim == 3 else image[0]
    noise = None
    if within is not None:
        noise = edge_noise(scalar[box.slices]) if WALKER_EDGES == "noise" else None
        box = box.intersection(within)
    local = {
        axis: [i - box.start[axis] for i in indices if box.start[axis] <= i < box.stop[axis]]
        for axis, indices in slices.items()
    }
    out = np.zeros(painted.shape, dtype=painted.dtype)
    if any(local.values()):
        out[box.slices] = random_walker(
            scalar[box.slices],
            painted[box.slices],
            local,
            mode="cg_j",
            edges=WALKER_EDGES,
            noise=noise,
            sampling=tuple(float(s) for s in spacing)[::-1],
            unlabeled=None if unlabeled is None else unlabeled[box.slices],
        )
    return out


def refine_with_random_walker(
    image: np.ndarray,
    labelmap: np.ndarray,
    annotation: np.ndarray,
    weight: np.ndarray,
    spacing: Sequence[float],
    inner_mm: float = 15.0,
    inner_fraction: float = 0.65,
    outer_mm: float = REFINEMENT_REACH_MM,
    edges: str = WALKER_EDGES,
    network_weight: float | None = None,
    cancel: CancelToken | None = None,
    classical: np.ndarray | None = None,
    classical_weight: float = CLASSICAL_WEIGHT,
    interpolated: Mapping[int, np.ndarray] | None = None,
    interpolation_weight: float = INTERPOLATION_WEIGHT,
    within: Box | None = None,
    stands_for: int = 1,
) -> np.ndarray:
    """The refined labelmap (same values and dtype as ``labelmap``); annotated voxels keep the user's label.
    ``network_weight`` blends the network's labelmap into the band (default :data:`NETWORK_WEIGHT`, or
    :data:`NETWORK_WEIGHT_WITH_CLASSICAL` beside ``classical``; the weights sum below 0.5, so every seed keeps
    its class). ``classical``: the random walker's own result from the painted slices alone ([k, j, i], same
    values), or None. With it, background is seeded only farther than ``outer_mm`` from both results (where the
    network misses a part the walker alone finds, the band still holds it), and ``classical_weight`` blends it in
    like the network's labelmap. ``interpolated``: label value -> its signed distance (mm, [k, j, i]) interpolated
    between the painted slices (:func:`finetune.interpolate.interpolated_distances`), or None; background is then
    seeded only far from it too, and wherever it reaches the result is blended with it
    (:func:`finetune.interpolate.with_interpolation`), ``interpolation_weight`` against the rest (a fine-tuning run
    asks :func:`finetune.calibrate.interpolation_weight` for it). ``edges``: how the walker measures the image's
    edges (:data:`WALKER_EDGES`, :func:`evaluation.classical.walker_input`). ``within``: a box [k, j, i] outside
    which the band is not decided by the walker but takes the network's labels (seeds are set as before, and the
    edges measured over the whole band): bounded by painted slices or the volume's ends, the part inside comes out
    as from a walk over the whole band (up to the solver's tolerance) in a fraction of its time. ``stands_for``: n
    when the arrays take every n-th voxel of the ones whose refinement this one times
    (:func:`evaluation.walker_grid.solve_random_walker`).

    Everything farther than ``outer_mm`` from every result is a background seed, so the work is done inside the box
    reaching that far around them (:func:`reach_box`) and the rest keeps its seeds: the same labels in a fraction of
    the time on a large volume with a small structure."""
    if network_weight is None:
        network_weight = NETWORK_WEIGHT if classical is None else NETWORK_WEIGHT_WITH_CLASSICAL
    image = each_channel_standardized(image)
    sampling = tuple(float(s) for s in spacing)[::-1]
    values = [int(v) for v in np.unique(labelmap) if v != 0]
    annotated_values = [int(v) for v in np.unique(annotation[weight > 0]) if v != 0]
    values = sorted(set(values) | set(annotated_values))
    if not values:
        return labelmap.copy()
    anything = (labelmap > 0) if classical is None else (labelmap > 0) | (classical > 0)
    for distance in (interpolated or {}).values():
        anything |= distance > 0
    out = np.where(weight > 0, annotation, 0).astype(labelmap.dtype)  # outside the box: the seeds' labels
    if not (anything.any() or out.any()):
        return out
    box = reach_box(anything | (out > 0), sampling, outer_mm).slices
    out[box] = _refine_inside(
        image[(slice(None), *box)] if image.ndim == 4 else image[box],
        labelmap[box],
        annotation[box],
        weight[box],
        anything[box],
        values,
        sampling,
        (inner_mm, inner_fraction, outer_mm, edges, network_weight, stands_for),
        cancel,
        None if classical is None else classical[box],
        classical_weight,
        None if interpolated is None else {value: distance[box] for value, distance in interpolated.items()},
        interpolation_weight,
        None if within is None else _relative(within, Box.from_slices(box)),
    )
    return out


def each_channel_standardized(image: np.ndarray) -> np.ndarray:
    """``image`` [c, k, j, i] as float32 with each channel centred and divided by its own standard deviation, as
    the network z-scores each (one pooled scale lets the channel in the largest units drown the others' edges);
    a 3D image as it is."""
    if image.ndim != 4:
        return image
    out = np.empty(image.shape, dtype=np.float32)
    for index, channel in enumerate(image):
        channel = channel.astype(np.float64)
        out[index] = (channel - channel.mean()) / max(float(channel.std()), 1e-6)
    return out


def _relative(inner: Box, outer: Box) -> Box:
    """The part of ``inner`` inside ``outer``, in the coordinates of ``outer``'s content (possibly empty)."""
    common = inner.intersection(outer)
    return Box(*(a - o for a, o in zip(common.start, outer.start)), *(b - o for b, o in zip(common.stop, outer.start)))


def reach_box(mask: np.ndarray, sampling: Sequence[float], reach_mm: float) -> Box:
    """The box around ``mask``'s True voxels ([k, j, i], not empty) widened on every side by more than
    ``reach_mm`` (sampling: (k, j, i) mm), clipped to the array: every voxel outside lies farther than that."""
    around = mask_box(mask)
    widen = [int(np.ceil(reach_mm / s)) + 1 for s in sampling]
    low = [max(0, a - w) for a, w in zip(around.start, widen)]
    high = [min(n, b + w) for b, w, n in zip(around.stop, widen, mask.shape)]
    return Box(*low, *high)


def _refine_inside(
    image,
    labelmap,
    annotation,
    weight,
    anything,
    values,
    sampling,
    constants,
    cancel,
    classical,
    classical_weight,
    interpolated,
    interpolation_weight,
    within,
) -> np.ndarray:
    """:func:`refine_with_random_walker` inside its box (arrays cropped to it; ``anything``: where any result or
    outline reaches; ``constants``: inner_mm, inner_fraction, outer_mm, edges, network_weight, stands_for; ``within``: the
    only part the walker decides, in the box's coordinates, or None)."""
    inner_mm, inner_fraction, outer_mm, edges, network_weight, stands_for = constants
    seeds = np.zeros(labelmap.shape, dtype=np.int32)
    far = (
        ndimage.distance_transform_edt(~anything, sampling=sampling) > outer_mm
        if anything.any()
        else np.ones_like(anything)
    )  # the same distances as in the whole volume: everything ``anything`` marks lies inside the box
    seeds[far] = 1
    for index, value in enumerate(values, start=2):
        inside = labelmap == value
        if inside.any():
            depth = ndimage.distance_transform_edt(inside, sampling=sampling)  # mm to the structure's boundary
            seeds[depth > min(inner_mm, inner_fraction * float(depth.max()))] = index
    annotated = weight > 0
    seeds[annotated] = 1  # annotated background (and any value not in ``values``)
    for index, value in enumerate(values, start=2):
        seeds[annotated & (annotation == value)] = index
    channel_axis = 0 if image.ndim == 4 else None
    undecided, noise = seeds == 0, None
    if within is not None and undecided.any():  # the rest takes the network's labels, edges as over all
        noise = edge_noise(crop(image, _around(undecided)), channel_axis) if edges == "noise" else None
        outside = np.ones(seeds.shape, dtype=bool)
        outside[within.slices] = False
        for index, value in enumerate([0, *values], start=1):
            seeds[outside & undecided & (labelmap == value)] = index
        undecided = seeds == 0
    if not undecided.any():
        return _labels_from_seeds(seeds, values, labelmap.dtype)
    if cancel:
        cancel.raise_if_cancelled()
    region = _around(undecided)
    box = region.slices
    data, beta = walker_input(crop(image, region), edges, channel_axis, noise)
    present = [int(index) for index in np.unique(seeds[box]) if index > 0]  # the walker's channels, in order
    probabilities = solve_random_walker(data, seeds[box], beta, sampling, channel_axis, stands_for=stands_for)
    priors = [(labelmap[box], network_weight)]
    if classical is not None:
        priors.append((classical[box], classical_weight))
    scores = _with_priors(probabilities, present, priors, values)
    if interpolated:
        return _labels_from_seeds(
            with_interpolation(seeds, box, scores, interpolated, values, annotated, interpolation_weight),
            values,
            labelmap.dtype,
        )
    result = seeds.copy()
    result[box] = np.argmax(scores, axis=0) + 1
    return _labels_from_seeds(result, values, labelmap.dtype)


def _around(mask: np.ndarray) -> Box:
    """The box around ``mask``'s True voxels (some must be), widened by one voxel (its stop may pass the array's
    end: slicing clips it)."""
    around = mask_box(mask)
    return Box(*(max(0, a - 1) for a in around.start), *(b + 1 for b in around.stop))


def _with_priors(
    probabilities: np.ndarray, present: list[int], priors: list[tuple[np.ndarray, float]], values: list[int]
) -> np.ndarray:
    """Scores [1 + len(values), k, j, i] of background and each value (they sum to 1): the walker's probabilities
    [len(present), k, j, i] (one channel per seed index in ``present``, 1 = background, 2.. = values; a seed has
    probability 1 for its own index) blended with labelmaps [k, j, i] (background 0, ``values``), each with its
    weight; the walker weighs 1 less the weights' sum."""
    shape = probabilities.shape[1:]
    scores = np.zeros((1 + len(values), *shape), dtype=np.float32)
    scores[np.array(present) - 1] = (1.0 - sum(weight for _, weight in priors)) * probabilities
    for labelmap, weight in priors:
        for index, value in enumerate([0, *values]):
            scores[index] += weight * (labelmap == value)
    return scores


def _labels_from_seeds(indices: np.ndarray, values: list[int], dtype) -> np.ndarray:
    """Random-walker indices (1 = background, 2.. = values) back to label values."""
    out = np.zeros(indices.shape, dtype=dtype)
    for index, value in enumerate(values, start=2):
        out[indices == index] = value
    return out
