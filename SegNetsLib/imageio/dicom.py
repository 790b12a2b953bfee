"""DICOM series as volumes: files recognised by content (``DICM`` at byte 128, whatever their name), grouped by
Series Instance UID, checked (one orientation, evenly spaced slices, none missing, 3D) and read with SimpleITK's
GDCM series reader. Only files directly inside a folder are considered; non-image DICOM objects are ignored."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SegNetsLib.core.errors import SegNetsError

_TAGS = {
    "uid": "0020|000e", "description": "0008|103e", "number": "0020|0011", "orientation": "0020|0037",
    "position": "0020|0032", "frames": "0028|0008",
}  # fmt: skip
_UID_TAIL = 6  # characters of the Series Instance UID kept in a name, more when two series would share one


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True when the file holds the DICOM preamble mark (``DICM`` at byte 128), whatever its name."""
    try:
        with open(path, "rb") as file:
            head = file.read(132)
    except OSError:
        return False
    return has_dicom_mark(head)


def has_dicom_mark(head: bytes) -> bool:
    """True when a file's first bytes (at least 132) hold the DICOM preamble mark."""
    return head[128:132] == b"DICM"


@dataclass(frozen=True)
class _Slice:
    path: Path
    size: tuple[int, ...]  # (i, j[, frames]) as GDCM reports it
    pixel_id: int
    tags: dict[str, str]


@dataclass(frozen=True)
class DicomSeries:
    """One series found in ``folder``: its slices (in file name order) and a safe, unique output stem."""

    folder: Path
    uid: str
    slices: tuple[_Slice, ...]
    stem: str

    @property
    def files(self) -> list[Path]:
        return [piece.path for piece in self.slices]

    @property
    def label(self) -> str:
        """How messages name the series: folder, number, description and the end of its UID."""
        tags = self.slices[0].tags
        number = f" {tags['number']}" if tags.get("number") else ""
        description = f" {tags['description']!r}" if tags.get("description") else ""
        return f"{self.folder}: DICOM series{number}{description} (UID ...{self.uid[-12:]})"

    @property
    def pixel_id(self) -> int:
        return self.slices[0].pixel_id

    @property
    def size(self) -> tuple[int, int, int]:
        """(i, j, k) voxels of the volume the series would make."""
        return (*self.slices[0].size[:2], len(self.slices))


def _read_slice(path: Path) -> _Slice | None:
    """The header of one DICOM file; None for a DICOM object that is not an image (a report, a DICOMDIR)."""
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    tags = {key: reader.GetMetaData(tag).strip() for key, tag in _TAGS.items() if reader.HasMetaDataKey(tag)}
    return _Slice(path, tuple(reader.GetSize()), reader.GetPixelIDValue(), tags)


def _safe(text: str) -> str:
    """``text`` with only letters, digits, '-' and '_' (runs of anything else become one '_')."""
    return re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_-")[:48]


def _stems(series: dict[str, list[_Slice]]) -> dict[str, str]:
    """A file-name stem per series UID: description, number and the end of the UID, unique in the folder."""
    tail = _UID_TAIL
    while True:
        stems = {}
        for uid, slices in series.items():
            tags = slices[0].tags
            words = [_safe(tags.get("description", "")) or "series", _safe(tags.get("number", ""))]
            stems[uid] = "_".join(word for word in (*words, _safe(uid[-tail:])) if word)
        if len({stem.casefold() for stem in stems.values()}) == len(stems) or tail >= 64:
            return stems
        tail += 4


@functools.lru_cache(maxsize=4)
def _scan(folder: Path, signature: tuple) -> tuple[DicomSeries, ...]:
    grouped: dict[str, list[_Slice]] = {}
    for name, *_ in signature:
        path = folder / name
        piece = _read_slice(path) if is_dicom_file(path) else None
        if piece is not None and len(piece.size) >= 2:
            grouped.setdefault(piece.tags.get("uid", ""), []).append(piece)
    stems = _stems(grouped)
    return tuple(DicomSeries(folder, uid, tuple(slices), stems[uid]) for uid, slices in grouped.items())


def series_in(folder: str | os.PathLike) -> list[DicomSeries]:
    """The DICOM image series directly inside ``folder`` (hidden files skipped), in file name order of their
    first files. Volume files (``.nii.gz`` ...) are left to the caller."""
    folder = Path(folder)
    entries = sorted(
        (entry.name, entry.stat().st_size, entry.stat().st_mtime_ns)
        for entry in os.scandir(folder)
        if not entry.name.startswith(".") and entry.is_file()
    )
    return list(_scan(folder, tuple(entries)))


def series_of(path: str | os.PathLike) -> DicomSeries:
    """The series the DICOM file ``path`` belongs to, with the other files of that series in the same folder."""
    path = Path(path)
    for series in series_in(path.parent):
        if any(piece.path.name == path.name for piece in series.slices):
            return series
    raise SegNetsError(f"{path}: a DICOM file that holds no image.")


def ordered_files(series: DicomSeries) -> list[Path]:
    """The series' files from first to last slice along the slice normal; raises SegNetsError (one sentence naming
    the series) unless they stack into an evenly spaced 3D volume."""
    slices, name = series.slices, series.label
    if any(
        len(piece.size) > 2 and piece.size[2] > 1 or int(piece.tags.get("frames", "1") or 1) > 1 for piece in slices
    ):
        raise SegNetsError(
            f"{name}: a multi-frame (enhanced) DICOM object, which SegNets does not read as a volume; export the "
            "series as single-slice DICOM files or as NIfTI/NRRD."
        )
    if len(slices) < 2:
        raise SegNetsError(f"{name}: a single slice (a localizer or a 2D image), not a 3D volume.")
    try:
        orientations = np.array([[float(v) for v in p.tags["orientation"].split("\\")] for p in slices])
        positions = np.array([[float(v) for v in p.tags["position"].split("\\")] for p in slices])
    except (KeyError, ValueError):
        raise SegNetsError(
            f"{name}: slices without a readable position or orientation; they cannot be stacked."
        ) from None
    if orientations.shape[1] != 6 or positions.shape[1] != 3:
        raise SegNetsError(f"{name}: slices without a readable position or orientation; they cannot be stacked.")
    if len({p.size[:2] for p in slices}) > 1:
        raise SegNetsError(f"{name}: its slices do not all have the same number of rows and columns.")
    odd = np.flatnonzero(np.abs(orientations - orientations[0]).max(axis=1) > 1e-3)
    if odd.size:
        raise SegNetsError(
            f"{name}: its slices do not all have the same orientation ({slices[odd[0]].path.name} differs from "
            f"{slices[0].path.name})."
        )
    normal = np.cross(orientations[0, :3], orientations[0, 3:])
    order = np.argsort(positions @ normal)
    positions = positions[order]
    steps = np.diff(positions @ normal)
    step = float(np.median(steps))
    files = [slices[i].path for i in order]
    tolerance = max(0.01 * step, 1e-3)
    if step <= tolerance or (steps <= tolerance).any():
        at = int(np.argmin(steps))
        raise SegNetsError(f"{name}: {files[at].name} and {files[at + 1].name} lie at the same slice position.")
    sideways = np.diff(positions, axis=0) - np.outer(steps, normal)
    if np.abs(sideways).max() > tolerance:
        raise SegNetsError(f"{name}: its slices are shifted sideways from one to the next (a tilted acquisition).")
    for at, gap in enumerate(steps):
        if abs(gap - step) > tolerance:
            ratio = gap / step
            problem = (
                f"{round(ratio) - 1} slice(s) missing between {files[at].name} and {files[at + 1].name}"
                if round(ratio) >= 2 and abs(ratio - round(ratio)) * step <= tolerance
                else f"slices not evenly spaced ({files[at].name} and {files[at + 1].name} are {gap:.3g} mm apart, "
                f"the others {step:.3g} mm)"
            )
            raise SegNetsError(f"{name}: {problem}.")
    return files


def read_series(series: DicomSeries) -> sitk.Image:
    """The series as one 3D image (geometry as SimpleITK's series reader gives it) after :func:`ordered_files`."""
    files = ordered_files(series)
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames([str(path) for path in files])
    try:
        return reader.Execute()
    except RuntimeError as error:
        last = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown reason"
        raise SegNetsError(f"{series.label}: the slices could not be read ({last[:200]}).") from None
