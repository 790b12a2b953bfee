"""Segmentation files: ``.seg.nrrd`` with segment names, colors and terminology (slicerio), or a plain
labelmap (NIfTI, NRRD, MHA through SimpleITK). Writes are atomic.

Array order: a labelmap :class:`Volume` is [k, j, i]; slicerio's voxels are [i, j, k] with an
ijk-to-LPS matrix. The conversion happens here and only here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicerio
from scipy import ndimage
from slicerio.segmentation import terminology_entry_from_string, terminology_entry_to_string

from SegNetsLib.card.card import LabelInfo, Terminology
from SegNetsLib.card.factory import PALETTE
from SegNetsLib.core.atomic import atomic_file
from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.core.volume import Volume
from SegNetsLib.imageio.volumes import (
    check_declared_size,
    check_written_volume_name,
    is_segmentation_file,
    is_written_volume_file,
    read_image,
    volume_from_sitk,
    write_image,
    write_volume,
)

_COMPRESSION_LEVEL = 1  # gzip level: labelmaps compress well even at 1, and level 9 is several times slower


def refuse_segmentation_input(path: str | os.PathLike) -> None:
    """Raise when ``path`` names a segmentation file (``.seg.nrrd``) given where the image to segment goes."""
    if is_segmentation_file(path):
        raise SegNetsError(f"{path}: a segmentation, not an image volume; give the image volume to segment.")


def write_segmentation(labelmap: Volume, labels: list[LabelInfo], path: str | os.PathLike) -> Path:
    """Write a uint8 labelmap [k, j, i] atomically as ``.seg.nrrd`` (one segment per label, with name,
    color and terminology) or, for ``.nii.gz``/``.nii``/``.nrrd``/``.mha``, as a plain labelmap image.

    Raises SegNetsError for an unsupported file name or a labelmap holding values no label describes.
    """
    path = Path(path)
    if labelmap.array.ndim != 3:
        raise SegNetsError(f"{path}: a labelmap must be a single 3D array, not shape {labelmap.array.shape}.")
    known = {label.value for label in labels}
    unknown = sorted(set(np.unique(labelmap.array).tolist()) - known - {0})
    if unknown:
        raise SegNetsError(f"{path}: the labelmap holds label value(s) {unknown} that no segment describes.")
    if is_segmentation_file(path):
        with atomic_file(path) as temporary:
            _write_seg_nrrd(temporary, _slicerio_segmentation(labelmap, labels))
        return path
    if not is_written_volume_file(path):
        raise SegNetsError(f"{path}: unknown segmentation file type; use .seg.nrrd, .nii.gz, .nii, .nrrd or .mha.")
    return write_volume(labelmap, path)


def is_written_segmentation_file(path: str | os.PathLike) -> bool:
    """True when :func:`write_segmentation` writes to a file of this name."""
    return is_segmentation_file(path) or is_written_volume_file(path)


def write_probabilities(probabilities: Volume, path: str | os.PathLike) -> Path:
    """Write per-class probabilities [C, k, j, i] atomically as one vector image (C components per voxel)."""
    path = Path(path)
    check_written_volume_name(path, "probabilities")
    array = (
        np.ascontiguousarray(np.moveaxis(probabilities.array, 0, -1))
        if probabilities.array.ndim == 4
        else probabilities.array
    )
    image = sitk.GetImageFromArray(array, isVector=probabilities.array.ndim == 4)
    del array  # SimpleITK holds its own copy; ITK's NIfTI writer makes another (planar): keep two, not three
    image.SetSpacing(probabilities.spacing)
    image.SetOrigin(probabilities.origin)
    image.SetDirection(tuple(probabilities.direction.ravel()))
    return write_image(image, path)


def read_labelmap(path: str | os.PathLike) -> Volume:
    """Read a ``.seg.nrrd`` or a labelmap image as a labelmap Volume [k, j, i] (integer values).

    Segments of a ``.seg.nrrd`` get their label value; when layers (overlapping segments) reuse a value,
    each segment gets its 1-based position in the file instead, later segments drawn over earlier ones (a segment
    they cover wholly is refused).
    """
    return read_labelmap_and_names(path)[0]


def read_labelmap_and_names(path: str | os.PathLike) -> tuple[Volume, dict[int, str]]:
    """:func:`read_labelmap` and the names of a ``.seg.nrrd``'s segments by their label value ({} for a labelmap
    image, which names none)."""
    volume, labels = read_labelmap_and_labels(path)
    return volume, {value: label.name for value, label in labels.items()}


def read_labelmap_and_labels(path: str | os.PathLike) -> tuple[Volume, dict[int, LabelInfo]]:
    """:func:`read_labelmap` and a ``.seg.nrrd``'s segments by their label value, with their names and colors
    ({} for a labelmap image, which describes none)."""
    path = Path(path)
    if not path.is_file():
        raise SegNetsError(f"{path}: no such file.")
    if is_segmentation_file(path):
        return _read_seg_nrrd(path)
    image = read_image(path, "labelmap")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise SegNetsError(f"{path}: a labelmap must be a single-component 3D image.")
    volume = volume_from_sitk(image)
    if not np.issubdtype(volume.array.dtype, np.integer):
        if not np.array_equal(volume.array, np.round(volume.array)):
            raise SegNetsError(f"{path}: the labelmap holds non-integer values.")
        volume = volume.with_array(volume.array.astype(np.int32))
    return volume, {}


def _slicerio_segmentation(labelmap: Volume, labels: list[LabelInfo]) -> dict:
    """slicerio's segmentation dict: voxels [i, j, k] holding the label values, one layer, one segment per label."""
    values = labelmap.array.astype(_label_type(labelmap.array, labels), copy=False)
    voxels = np.ascontiguousarray(values.transpose(2, 1, 0))
    extents = ndimage.find_objects(voxels)
    segments, used_ids = [], set()
    for label in labels:
        found = extents[label.value - 1] if 0 < label.value <= len(extents) else None
        extent = [0, -1, 0, -1, 0, -1] if found is None else [v for s in found for v in (s.start, s.stop - 1)]
        segment = {
            "id": _segment_id(label, used_ids),
            "name": label.name,
            "color": [float(c) for c in label.color],
            "nameAutoGenerated": False,  # the card's name and color, as the panel sets them (mrml.segmentation)
            "colorAutoGenerated": False,
            "labelValue": int(label.value),
            "layer": 0,
            "extent": extent,
        }
        if label.terminology is not None:
            segment["terminology"] = terminology_entry_from_string(label.terminology.as_slicer_string())
        segments.append(segment)
    return {
        "voxels": voxels,
        "ijkToLPS": labelmap.ijk_to_lps(),
        "segments": segments,
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
    }


def _label_type(array: np.ndarray, labels: list[LabelInfo]) -> type:
    """The smallest unsigned integer type holding every label value (uint8 up to 255, as Slicer writes them)."""
    largest = max([int(array.max(initial=0))] + [label.value for label in labels])
    return np.uint8 if largest <= 255 else np.uint16 if largest <= 65535 else np.uint32


def _segment_id(label: LabelInfo, used: set[str]) -> str:
    """A segment ID from the label name (ASCII letters, digits, underscores), unique in the file."""
    base = re.sub(r"\W+", "_", label.name, flags=re.ASCII).strip("_") or f"Segment_{label.value}"
    segment_id = base if base not in used else f"{base}_{label.value}"
    used.add(segment_id)
    return segment_id


_NAME_FIELD = re.compile(rb"^Segment([0-9]+)_Name:=(.*)$")


def _write_seg_nrrd(path: Path, segmentation: dict) -> None:
    """slicerio's write, with segment names in UTF-8 as Slicer writes and reads them (pynrrd writes its header as
    ASCII only: it is written with ASCII stand-ins, then their lines are replaced). A name's line breaks become
    spaces: a header field is one line."""
    names = [" ".join(segment["name"].splitlines()) for segment in segmentation["segments"]]
    stand_ins = [name.encode("ascii", "backslashreplace").decode("ascii") for name in names]
    segments = [dict(segment, name=stand_in) for segment, stand_in in zip(segmentation["segments"], stand_ins)]
    slicerio.write_segmentation(str(path), dict(segmentation, segments=segments), compression_level=_COMPRESSION_LEVEL)
    if stand_ins == names:
        return
    data = path.read_bytes()
    end = data.index(b"\n\n")
    lines = data[:end].split(b"\n")
    for number, line in enumerate(lines):
        if match := _NAME_FIELD.match(line):
            lines[number] = b"Segment%s_Name:=" % match.group(1) + names[int(match.group(1))].encode("utf-8")
    path.write_bytes(b"\n".join(lines) + data[end:])


def _utf8_segment_names(path: Path) -> list[str]:
    """The ``SegmentN_Name`` fields of a .seg.nrrd header decoded as UTF-8, by ascending N (slicerio's segment
    order); pynrrd drops every non-ASCII byte of a header."""
    names = {}
    with open(path, "rb") as file:
        while (line := file.readline()) not in (b"\n", b"\r\n", b""):
            if match := _NAME_FIELD.match(line.rstrip(b"\r\n")):
                names[int(match.group(1))] = match.group(2).decode("utf-8", "replace")
    return [names[index] for index in sorted(names)]


def _read_seg_nrrd(path: Path) -> tuple[Volume, dict[int, LabelInfo]]:
    check_declared_size(path, "segmentation")
    try:
        segmentation = slicerio.read_segmentation(str(path))
    except Exception as error:  # pynrrd and slicerio raise many types for broken files
        raise SegNetsError(f"{path}: not a readable .seg.nrrd file ({type(error).__name__}).") from None
    voxels = segmentation["voxels"]
    segments = segmentation.get("segments", [])
    if sum("name" in segment for segment in segments) == len(utf8_names := _utf8_segment_names(path)):
        for segment, name in zip((s for s in segments if "name" in s), utf8_names):
            segment["name"] = name
    label_values = [int(s.get("labelValue", 1)) for s in segments]
    unique = len(set(label_values)) == len(label_values)
    spatial = voxels.shape[-3:]
    labelmap = np.zeros(
        spatial[::-1], dtype=np.uint8 if len(segments) < 256 and max(label_values, default=0) < 256 else np.int32
    )
    labels, drawn = {}, []
    for index, segment in enumerate(segments):
        value = label_values[index] if unique else index + 1
        mask = slicerio.segment_mask(segmentation, segment).transpose(2, 1, 0)
        labelmap[mask] = value
        name = str(segment.get("name") or f"label {value}")
        labels[value] = LabelInfo(value, name, _segment_color(segment.get("color"), index), _terminology(segment))
        drawn.append((value, bool(mask.any())))
    left = set(np.unique(labelmap).tolist())  # the values the drawing left, in one pass
    covered = [labels[value].name for value, painted in drawn if painted and value not in left]
    if covered:
        raise SegNetsError(
            f"{path}: segment {', '.join(repr(n) for n in covered)} lies wholly under later segments (overlapping "
            "layers), and a labelmap holds one label per voxel; make the segments not overlap or save them apart."
        )
    return Volume.from_ijk_to_lps(labelmap, np.asarray(segmentation["ijkToLPS"], dtype=float)), labels


def _terminology(segment: dict) -> Terminology | None:
    """A segment's terminology (its ``TerminologyEntry`` tag, as slicerio parsed it); None when it has none."""
    entry = segment.get("terminology")
    try:
        return Terminology.from_slicer_string(terminology_entry_to_string(entry)) if entry else None
    except (KeyError, TypeError):  # a tag without a category or type
        return None


def _segment_color(value: object, index: int) -> tuple[float, float, float]:
    """A segment's RGB color from a file, each in [0, 1]; the palette's ``index``-th when the file gives none, or
    not three finite numbers (a model card would refuse it after the whole training)."""
    try:
        rgb = [float(c) for c in list(value)[:3]]  # type: ignore[call-overload]
    except (TypeError, ValueError):
        rgb = []
    if len(rgb) != 3 or not all(np.isfinite(rgb)):
        return PALETTE[index % len(PALETTE)]
    return (min(max(rgb[0], 0.0), 1.0), min(max(rgb[1], 0.0), 1.0), min(max(rgb[2], 0.0), 1.0))
