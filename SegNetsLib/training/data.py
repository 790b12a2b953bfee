"""From a checked dataset to training data: the split, the card's preprocessing, prepared cases.

Preprocessing is the inference path's own (:func:`SegNetsLib.inference.preprocess.preprocess`, driven by the
card), so a trained model sees at inference exactly what it saw in training. Labels are resampled
to the same network grid by nearest neighbour.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from SegNetsLib.card.card import ModelCard, Normalization
from SegNetsLib.imageio.volumes import volume_to_sitk
from SegNetsLib.inference.preprocess import preprocess
from SegNetsLib.runtime import distributed
from SegNetsLib.training.dataset import IGNORE, Case, LabeledDataset, PreparedCase, read_case

CT_PERCENTILES = (0.5, 99.5)  # CT window from foreground intensities, as nnU-Net does
_SAMPLES_PER_CASE = 10000


def split_cases(cases: list[Case], validation_fraction: float) -> tuple[list[Case], list[Case]]:
    """(training, validation) cases: every k-th case by name goes to validation, at least one when
    there are two or more cases; a single case trains and validates on itself."""
    ordered = sorted(cases, key=lambda case: case.name)
    if len(ordered) < 2 or validation_fraction <= 0:
        return ordered, ordered[:1] if len(ordered) == 1 else []
    count = min(len(ordered) - 1, max(1, round(validation_fraction * len(ordered))))
    step = len(ordered) / count
    picks = {int(step * (index + 0.5)) for index in range(count)}
    return [c for i, c in enumerate(ordered) if i not in picks], [c for i, c in enumerate(ordered) if i in picks]


def modality(channel_name: str) -> str:
    """ "CT" for a CT channel (nnU-Net's convention: the channel is named CT), else "MR"."""
    return "CT" if channel_name.strip().upper() == "CT" else "MR"


def _label_header(case: Case) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(case.label))
    reader.ReadImageInformation()
    return reader


def median_spacing(cases: list[Case]) -> tuple[float, float, float]:
    """The median voxel spacing (i, j, k) mm over ``cases`` (read from the label headers)."""
    spacings = [_label_header(case).GetSpacing() for case in cases]
    return tuple(float(s) for s in np.median(np.array(spacings), axis=0))  # type: ignore[return-value]


def fit_normalization(dataset: LabeledDataset, cases: list[Case], seed: int) -> Normalization:
    """The card's intensity normalization for this dataset.

    One CT channel: a window from the 0.5 and 99.5 percentiles of foreground intensities over the
    training cases (each rank samples its shard; the samples are pooled across ranks). Otherwise a
    z-score per volume over nonzero voxels.
    """
    if len(dataset.channels) != 1 or modality(dataset.channels[0]) != "CT":
        return Normalization("zscore", None, True)
    rng = np.random.default_rng([seed, distributed.rank()])
    samples = []
    for case in distributed.shard(cases):
        image, labels = read_case(case, dataset)
        values = image.array[0][labels.array > 0]
        if len(values) > _SAMPLES_PER_CASE:
            values = rng.choice(values, _SAMPLES_PER_CASE, replace=False)
        samples.append(values.astype(np.float32))
    pooled = np.concatenate([part for parts in distributed.gather_objects(samples) for part in parts] or [np.zeros(0)])
    if pooled.size == 0:
        return Normalization("ct_window", (-160.0, 240.0))
    low, high = (float(v) for v in np.percentile(pooled, CT_PERCENTILES))
    return Normalization("ct_window", (low, high if high > low else low + 1.0))


def prepare_case(
    case: Case, dataset: LabeledDataset, card: ModelCard, patch_size: tuple[int, int, int], rng: np.random.Generator
) -> PreparedCase:
    """Read a case and put image and labels on the card's network grid, normalized as at inference."""
    image, labels = read_case(case, dataset)
    pre = preprocess(image, card, name=f"case {case.name}")
    if pre.same_grid_as_source():
        grid_labels = labels.array
    else:
        reference = volume_to_sitk(pre.grid.with_array(pre.grid.array[0]))
        resampled = sitk.Resample(
            volume_to_sitk(labels), reference, sitk.Transform(), sitk.sitkNearestNeighbor, IGNORE, sitk.sitkInt16
        )
        grid_labels = sitk.GetArrayFromImage(resampled)
    return PreparedCase.build(
        case.name, pre.network_input(), grid_labels.astype(np.int16), len(dataset.labels), patch_size, rng
    )


def default_patch_size(
    shapes: list[tuple[int, int, int]], largest: tuple[int, int, int] = (64, 128, 128)
) -> tuple[int, int, int]:
    """A patch (d, h, w) no larger than ``largest`` nor than the median case, in multiples of 16 (at least 16)."""
    median = np.median(np.array(shapes), axis=0)
    return tuple(int(max(16, min(top, m) // 16 * 16)) for top, m in zip(largest, median))  # type: ignore[return-value]


def grid_shapes(cases: list[Case], target_spacing: tuple[float, float, float]) -> list[tuple[int, int, int]]:
    """Each case's (d, h, w) on the network grid, computed from its header."""
    shapes = []
    for case in cases:
        reader = _label_header(case)
        size = [round(n * s / t) for n, s, t in zip(reader.GetSize(), reader.GetSpacing(), target_spacing)]
        shapes.append(tuple(int(v) for v in size[::-1]))
    return shapes


def check_foreground(cases: list[PreparedCase], dataset: LabeledDataset, label_names: list[str]) -> None:
    """Refuse a dataset whose training ``cases`` (those of every rank) hold no voxel of some foreground label: the
    model's card would name a structure it never saw."""
    present = [any(len(case.foreground[index]) for case in cases) for index in range(len(label_names))]
    seen = [any(column) for column in zip(*distributed.gather_objects(present))]
    if not any(seen):
        raise distributed.refuse(
            f"{dataset.root / 'labelsTr'}: no training case holds a voxel of {', '.join(label_names)}; "
            "there is nothing to learn."
        )
    missing = [name for name, found in zip(label_names, seen) if not found]
    if missing:
        raise distributed.refuse(
            f"{dataset.root / 'labelsTr'}: no training case holds a voxel of {', '.join(missing)}; remove it from "
            "dataset.json's labels or add cases that hold it (the model would name a structure it never saw)."
        )
