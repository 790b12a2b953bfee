"""Labeled datasets in the Medical Segmentation Decathlon / nnU-Net layout.

::

    DATASET/
      dataset.json      {"name": ..., "channel_names" | "modality": {"0": "CT", ...},
                         "labels": {"background": 0, "liver": 1, ..., "ignore": 3}   (nnU-Net v2)
                              or  {"0": "background", "1": "liver", ...}             (MSD, nnU-Net v1)}
      imagesTr/         CASE_0000.nii.gz, CASE_0001.nii.gz, ... (one file per channel, nnU-Net)
                        or CASE.nii.gz (one 3D file, or a 4D / vector file holding every channel, MSD)
      labelsTr/         CASE.nii.gz  (values 0..L; the label named "ignore" marks unlabeled voxels)

NIfTI, NRRD and MHA files are read (SimpleITK). Foreground labels must be 1..L (class index =
label value, as nnU-Net requires). A voxel with the ignore label weighs 0 in the loss, so
partially labeled cases train with the same masked losses as sparse fine-tuning.

:func:`load_dataset` checks the layout and headers and lists the cases; :func:`read_case` reads
one case; :class:`CasePatchSampler` draws training patches with a foreground share.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from reprlib import repr as brief  # values of an untrusted file, shortened for an error message

import numpy as np
import SimpleITK as sitk
import torch

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume
from SegNetsLib.imageio.volumes import (
    check_volume,
    read_header,
    read_image,
    volume_from_sitk,
    volume_stem,
)

IGNORE = -1
"""Internal label value of voxels that weigh 0: the dataset's ignore label and padding."""


@dataclass(frozen=True)
class Case:
    """One training case: its name, one image file per channel (or one multi-channel file), its label file."""

    name: str
    images: tuple[Path, ...]
    label: Path


@dataclass
class LabeledDataset:
    """A checked dataset: channel names in input order, foreground labels value -> name, the cases."""

    root: Path
    name: str
    channels: list[str]
    labels: dict[int, str]
    ignore_value: int | None
    cases: list[Case]
    description: str = ""
    extra: dict = field(default_factory=dict)
    """Provenance fields of dataset.json worth keeping on the model card (licence, reference, release)."""


def _parse_channels(spec: dict, path: Path) -> list[str]:
    channels = spec.get("channel_names", spec.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise SegNetsError(f'{path}: needs "channel_names" (or MSD "modality"), e.g. {{"0": "CT"}}.')
    try:
        indices = sorted(int(key) for key in channels)
    except ValueError:
        raise SegNetsError(f"{path}: channel keys must be 0, 1, ...; got {brief(sorted(channels))}.") from None
    if indices != list(range(len(indices))):
        raise SegNetsError(f"{path}: channel keys must be 0..{len(indices) - 1} without gaps; got {brief(indices)}.")
    return [str(channels[str(index)]) for index in indices]


def _parse_labels(spec: dict, path: Path) -> tuple[dict[int, str], int | None]:
    """Foreground labels value -> name, and the ignore label's value (None when absent)."""
    raw = spec.get("labels")
    if not isinstance(raw, dict) or not raw:
        raise SegNetsError(f'{path}: needs "labels", e.g. {{"background": 0, "liver": 1}}.')
    values: dict[str, int] = {}
    for key, value in raw.items():
        if isinstance(value, (list, tuple)):
            raise SegNetsError(
                f"{path}: label {brief(key)} is a region (a list of labels); SegNets trains plain labels."
            )
        try:
            # nnU-Net v2: name -> value; MSD and nnU-Net v1: "value" -> name.
            name, number = (str(key), int(value)) if isinstance(value, int) else (str(value), int(key))
        except (TypeError, ValueError):
            raise SegNetsError(
                f'{path}: label entry {brief(key)}: {brief(value)} is neither name: value nor "value": name.'
            ) from None
        if name in values:
            raise SegNetsError(f"{path}: label name {brief(name)} is given twice; each label needs its own name.")
        values[name] = number
    by_value = {number: name for name, number in values.items()}
    if len(by_value) < len(values):
        twice = next(number for number in by_value if list(values.values()).count(number) > 1)
        names = [name for name, number in values.items() if number == twice]
        raise SegNetsError(f"{path}: labels {brief(names)} share the value {twice}; each label needs its own value.")
    if 0 not in by_value:
        raise SegNetsError(f"{path}: the labels need background with value 0.")
    ignore_value = next((number for name, number in values.items() if name.lower() == "ignore"), None)
    foreground = {number: name for number, name in sorted(by_value.items()) if number != 0 and number != ignore_value}
    if not foreground:
        raise SegNetsError(f"{path}: the labels name no foreground structure.")
    if sorted(foreground) != list(range(1, len(foreground) + 1)):
        raise SegNetsError(
            f"{path}: foreground label values must be 1..{len(foreground)} without gaps; got {brief(sorted(foreground))}."
        )
    if ignore_value is not None and ignore_value <= len(foreground):
        raise SegNetsError(f"{path}: the ignore label ({ignore_value}) must be larger than every other label.")
    return foreground, ignore_value


def _files_by_stem(folder: Path) -> dict[str, Path]:
    """The volume files of ``folder`` by name without suffix; two files of one name are refused (ITK would read
    ``case.nii`` when asked for ``case.nii.gz``, so neither choice is safe)."""
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        stem = volume_stem(path.name)
        if stem is not None and not path.name.startswith("."):
            if stem in files:
                raise SegNetsError(
                    f"{folder}: {files[stem].name} and {path.name} are the same case in two files; keep one."
                )
            files[stem] = path
    return files


def _find_cases(root: Path, channels: list[str]) -> list[Case]:
    num_channels = len(channels)
    images, labels = _files_by_stem(root / "imagesTr"), _files_by_stem(root / "labelsTr")
    if not labels:
        raise SegNetsError(f"{root / 'labelsTr'}: holds no label volumes (.nii.gz, .nii, .nrrd, .mha).")
    cases, used = [], set()
    for name, label in labels.items():
        per_channel = [images.get(f"{name}_{index:04d}") for index in range(num_channels)]
        if all(per_channel):
            files = tuple(per_channel)  # type: ignore[arg-type]
        elif name in images:
            files = (images[name],)
        elif any(per_channel):
            index = per_channel.index(None)
            raise SegNetsError(  # the channel's name shortened, without repr's quotes
                f"{root / 'imagesTr'}: case {name} lacks channel {index} ({brief(channels[index])[1:-1]}): no {name}_{index:04d} image."
            )
        else:
            missing = next(f"{name}_{index:04d}" for index, path in enumerate(per_channel) if path is None)
            raise SegNetsError(
                f"{label}: no image for this case in imagesTr (expected {missing}.nii.gz or {name}.nii.gz)."
            )
        used.update(path.name for path in files)
        cases.append(Case(name, files, label))
    unlabeled = sorted(path.name for path in images.values() if path.name not in used)
    if unlabeled:
        raise SegNetsError(
            f"{root / 'imagesTr'}: {len(unlabeled)} image(s) without a label in labelsTr, first {unlabeled[0]}; "
            "label them (the ignore label marks unlabeled voxels) or move them out."
        )
    return cases


def _check_listing(spec: dict, cases: list[Case], path: Path) -> None:
    """Refuse a case dataset.json lists (MSD "training") without its label file, and a "numTraining" that is not
    the number of cases found: a case lost in copying would otherwise be left out silently."""
    found = {case.name for case in cases}
    listed = spec.get("training")
    for entry in listed if isinstance(listed, list) else []:
        label = entry.get("label") if isinstance(entry, dict) else None
        stem = volume_stem(Path(label).name) if isinstance(label, str) else None
        if stem is not None and stem not in found:
            raise SegNetsError(f"{path}: lists training case {brief(label)}, but labelsTr holds no {stem} label.")
    expected = spec.get("numTraining")
    if type(expected) is int and expected != len(cases):
        raise SegNetsError(
            f"{path}: numTraining is {expected}, but labelsTr holds {len(cases)} case(s); "
            "restore the missing cases or correct numTraining."
        )


def _channels_in(reader: sitk.ImageFileReader) -> int:
    if reader.GetDimension() == 4:
        return int(reader.GetSize()[3]) * reader.GetNumberOfComponents()
    return reader.GetNumberOfComponents()


def _check_headers(case: Case, num_channels: int) -> None:
    label = read_header(case.label)
    if label.GetDimension() != 3 or label.GetNumberOfComponents() != 1:
        raise SegNetsError(f"{case.label}: a label volume must be 3D with one value per voxel.")
    found = 0
    for path in case.images:
        image = read_header(path)
        if image.GetDimension() not in (3, 4):
            raise SegNetsError(f"{path}: a {image.GetDimension()}D image; expected 3D (or 4D with channels last).")
        if tuple(image.GetSize()[:3]) != tuple(label.GetSize()):
            raise SegNetsError(
                f"{path}: size {image.GetSize()[:3]} differs from its label's {label.GetSize()} ({case.label.name})."
            )
        if not np.allclose(image.GetSpacing()[:3], label.GetSpacing(), rtol=1e-3):
            raise SegNetsError(
                f"{path}: spacing {image.GetSpacing()[:3]} mm differs from its label's {label.GetSpacing()}."
            )
        grid = volume_from_sitk(image, voxels=False)  # the headers' geometry, no voxels read
        if not grid.same_geometry(volume_from_sitk(label, voxels=False), tolerance_mm=1e-2 * max(label.GetSpacing())):
            raise SegNetsError(
                f"{path}: its origin or axis directions differ from its label's ({case.label.name}); "
                "every channel and the label must share one voxel grid."
            )
        found += _channels_in(image)
    if found != num_channels:
        raise SegNetsError(f"case {case.name}: {found} image channel(s) but dataset.json names {num_channels}.")


def load_dataset(root: str | os.PathLike) -> LabeledDataset:
    """Check a dataset folder (layout, dataset.json, file headers) and list its cases.

    Raises SegNetsError naming the file and the problem: a missing folder or dataset.json, bad labels
    or channels, a label without image, an image without label, mismatched sizes or channel counts.
    """
    root = Path(root)
    if root.is_file():
        raise SegNetsError(
            f"{root}: is a file, not the dataset folder (the folder holding dataset.json, imagesTr, labelsTr)."
        )
    if not root.is_dir():
        raise SegNetsError(f"{root}: no such dataset folder.")
    for part in ("dataset.json", "imagesTr", "labelsTr"):
        if not (root / part).exists():
            raise SegNetsError(
                f"{root}: missing {part}; expected the MSD / nnU-Net layout (dataset.json, imagesTr/, labelsTr/)."
            )
    spec_path = root / "dataset.json"
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8-sig"))  # a BOM, as Windows editors write, is no error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SegNetsError(f"{spec_path}: not valid JSON ({error}).") from None
    if not isinstance(spec, dict):
        raise SegNetsError(f"{spec_path}: must hold a JSON object.")
    channels = _parse_channels(spec, spec_path)
    labels, ignore_value = _parse_labels(spec, spec_path)
    cases = _find_cases(root, channels)
    _check_listing(spec, cases, spec_path)
    for case in cases:
        _check_headers(case, len(channels))
    return LabeledDataset(
        root=root,
        name=str(spec.get("name") or root.name),
        channels=channels,
        labels=labels,
        ignore_value=ignore_value,
        cases=cases,
        description=str(spec.get("description", "")),
        extra={key: spec[key] for key in ("licence", "license", "reference", "release") if key in spec},
    )


def _read_channels(path: Path) -> Volume:
    """A 3D, vector or 4D (channels last) image file as a [c, k, j, i] float32 volume."""
    volume = volume_from_sitk(read_image(path))
    array = volume.array if volume.array.ndim == 4 else volume.array[None]
    return volume.with_array(array.astype(np.float32, copy=False))


def read_case(case: Case, dataset: LabeledDataset) -> tuple[Volume, Volume]:
    """Read one case: image [c, k, j, i] float32 and labels [k, j, i] int16 with ignore voxels at IGNORE.

    Checks label values against dataset.json and that image and labels share their geometry.
    """
    parts = [_read_channels(path) for path in case.images]
    image = parts[0].with_array(np.concatenate([part.array for part in parts], axis=0))
    check_volume(image, f"case {case.name} ({case.images[0].name})")
    label_image = read_image(case.label, "label")
    labels = volume_from_sitk(label_image)
    if not image.same_geometry(labels, tolerance_mm=1e-2 * max(image.spacing)):
        raise SegNetsError(
            f"{case.label}: its geometry (origin, direction, spacing) differs from image {case.images[0].name}."
        )
    values = labels.array
    if not np.array_equal(values, np.round(values)):
        raise SegNetsError(f"{case.label}: holds non-integer values; a label volume holds label numbers.")
    allowed = set(range(len(dataset.labels) + 1)) | (
        {dataset.ignore_value} if dataset.ignore_value is not None else set()
    )
    unknown = sorted(set(np.unique(values).astype(int).tolist()) - allowed)
    if unknown:
        raise SegNetsError(f"{case.label}: label value(s) {unknown[:5]} are not in dataset.json's labels.")
    converted = values.astype(np.int16)
    if dataset.ignore_value is not None:
        converted[values == dataset.ignore_value] = IGNORE
    return image, labels.with_array(converted)


@dataclass
class PreparedCase:
    """A preprocessed case in memory: image (C, D, H, W) float32, labels (D, H, W) int16 (IGNORE = weight 0).

    Both are padded with weight-0 voxels to at least the patch size. ``foreground[c]`` holds up to
    ``max_points`` voxel indices (n, 3) of class c + 1, for foreground-centred patches.
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    foreground: list[np.ndarray]

    @classmethod
    def build(
        cls,
        name: str,
        image: np.ndarray,
        labels: np.ndarray,
        num_labels: int,
        patch_size: tuple[int, int, int],
        rng: np.random.Generator,
        max_points: int = 20000,
    ) -> PreparedCase:
        padding = [(0, max(0, size - extent)) for size, extent in zip(patch_size, labels.shape)]
        if any(after for _, after in padding):
            image = np.pad(image, [(0, 0)] + padding, mode="constant", constant_values=float(image.min()))
            labels = np.pad(labels, padding, mode="constant", constant_values=IGNORE)
        foreground = []
        for value in range(1, num_labels + 1):
            points = np.argwhere(labels == value)
            if len(points) > max_points:
                points = points[rng.choice(len(points), max_points, replace=False)]
            foreground.append(points.astype(np.int32))
        return cls(name, np.ascontiguousarray(image, dtype=np.float32), labels, foreground)


def targets_from_labels(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(target int64 class indices, weight float 0/1) from labels holding IGNORE for unlabeled voxels."""
    weight = (labels != IGNORE).to(torch.float32)
    return labels.clamp(min=0).to(torch.int64), weight


class CasePatchSampler:
    """Draws training patches from prepared cases.

    A share ``foreground_share`` of the patches is centred on a voxel of a randomly chosen foreground
    class present in the case (small structures get seen); the rest are placed uniformly.
    """

    def __init__(self, cases: list[PreparedCase], patch_size: tuple[int, int, int], foreground_share: float = 0.33):
        if not cases:
            raise ValueError("the patch sampler needs at least one case")
        self.cases = cases
        self.patch_size = tuple(int(s) for s in patch_size)
        self.foreground_share = foreground_share

    def _corner(self, case: PreparedCase, rng: np.random.Generator) -> tuple[int, ...]:
        shape = case.labels.shape
        highest = [extent - size for extent, size in zip(shape, self.patch_size)]
        classes = [points for points in case.foreground if len(points)]
        if classes and rng.random() < self.foreground_share:
            points = classes[rng.integers(len(classes))]
            centre = points[rng.integers(len(points))]
            return tuple(int(np.clip(c - size // 2, 0, top)) for c, size, top in zip(centre, self.patch_size, highest))
        return tuple(int(rng.integers(top + 1)) for top in highest)

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch: images (N, C, D, H, W) float32 and labels (N, D, H, W) int16 with IGNORE voxels."""
        images, labels = [], []
        for _ in range(batch_size):
            case = self.cases[rng.integers(len(self.cases))]
            z, y, x = self._corner(case, rng)
            d, h, w = self.patch_size
            images.append(case.image[:, z : z + d, y : y + h, x : x + w])
            labels.append(case.labels[z : z + d, y : y + h, x : x + w])
        return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))
