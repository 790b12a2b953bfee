"""Reading and writing volumes as files (NIfTI, NRRD, MHA) through SimpleITK.

Segmentation files (``.seg.nrrd`` with names, colors, terminology) are in :mod:`SegNetsLib.imageio.segmentations`.
"""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SegNetsLib.core.atomic import atomic_file
from SegNetsLib.core.constants import SEGMENTATION_SUFFIX, VOLUME_SUFFIXES, WRITTEN_VOLUME_SUFFIXES
from SegNetsLib.core.errors import NotWritten, SegNetsError
from SegNetsLib.core.memory import available_memory_bytes
from SegNetsLib.core.volume import Volume
from SegNetsLib.imageio import dicom
from SegNetsLib.imageio.metaimage_header import check_metaimage_header
from SegNetsLib.imageio.nifti_header import check_nifti_header
from SegNetsLib.imageio.nrrd_header import check_nrrd_header
from SegNetsLib.imageio.spacing import check_spacing

MAX_VOXELS = 2**31  # values (voxels x components) in one file: 8 GiB as float32, beyond any scan
_ITEM_TYPES = {
    getattr(sitk, f"sitk{name}"): dtype
    for name, dtype in (
        ("UInt8", np.uint8), ("Int8", np.int8), ("UInt16", np.uint16), ("Int16", np.int16), ("UInt32", np.uint32),
        ("Int32", np.int32), ("UInt64", np.uint64), ("Int64", np.int64), ("Float32", np.float32),
        ("Float64", np.float64), ("VectorUInt8", np.uint8), ("VectorInt16", np.int16), ("VectorFloat32", np.float32),
    )
}  # fmt: skip


def is_volume_file(path: str | os.PathLike) -> bool:
    """True when the file name ends in a volume format SegNets reads."""
    name = str(path).lower()
    return name.endswith(VOLUME_SUFFIXES)


def is_segmentation_file(path: str | os.PathLike) -> bool:
    """True for a Slicer segmentation file name (``.seg.nrrd``)."""
    return str(path).lower().endswith(SEGMENTATION_SUFFIX)


def listed_volume_files(folder: str | os.PathLike) -> list[Path]:
    """The image volume files directly inside ``folder``, sorted; hidden ones (a name starting with '.': the
    temporary file of a write cut short, ``.ct.nii.gz.x1y2.partial.nii.gz``, or a macOS ``._ct.nii.gz``) and
    segmentations (``.seg.nrrd``, a result beside its image) are no input."""
    return sorted(
        path
        for path in Path(folder).iterdir()
        if not path.name.startswith(".") and path.is_file() and is_volume_file(path) and not is_segmentation_file(path)
    )


def listed_volumes(folder: str | os.PathLike) -> list[Path]:
    """The volumes directly inside ``folder``, sorted: each volume file (:func:`listed_volume_files`) and, for each
    DICOM series (files recognised by content, any name), its first file: :func:`read_volume` of that file reads
    the whole series and :func:`input_stem` names its result."""
    return sorted(listed_volume_files(folder) + [series.files[0] for series in dicom.series_in(folder)])


def input_stem(path: str | os.PathLike) -> str:
    """The name a result of ``path`` is given: the file name without its volume suffix, or for a DICOM file its
    series' stem (description, number and the end of its UID: ``CT_abdomen_3_4f21c9``)."""
    path = Path(path)
    if is_dicom_input(path):
        return dicom.series_of(path).stem
    stem = volume_stem(path.name)
    return path.stem if stem is None else stem


def input_name(path: str | os.PathLike) -> str:
    """How messages name an input: its file name, or for a DICOM file its series."""
    path = Path(path)
    return input_stem(path) if is_dicom_input(path) else path.name


def is_dicom_input(path: str | os.PathLike) -> bool:
    """True for a file without a volume suffix that holds DICOM (recognised by content): it stands for its series."""
    path = Path(path)
    return not is_volume_file(path) and path.is_file() and dicom.is_dicom_file(path)


def volume_stem(name: str) -> str | None:
    """The file ``name`` without its volume suffix (``ct.nii.gz`` -> ``ct``; case-insensitive), None without one."""
    lower = name.lower()
    for suffix in VOLUME_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return None


def is_written_volume_file(path: str | os.PathLike) -> bool:
    """True when the file name ends in a single-file volume format SegNets writes (not a ``.seg.nrrd``)."""
    return str(path).lower().endswith(WRITTEN_VOLUME_SUFFIXES) and not is_segmentation_file(path)


def check_written_volume_name(path: str | os.PathLike, what: str = "a volume") -> None:
    """Raise unless ``path`` names a single-file volume SegNets writes (a detached header would point at the
    temporary name its voxels were written under)."""
    if not is_written_volume_file(path):
        raise SegNetsError(f"{path}: {what} can be written only as {', '.join(WRITTEN_VOLUME_SUFFIXES)}.")


def volume_from_sitk(image: sitk.Image, voxels: bool = True) -> Volume:
    """Convert a SimpleITK image to a :class:`Volume`: 3D scalar [k,j,i], 3D vector [c,k,j,i], or 4D with the
    channels on its last axis, as the Medical Segmentation Decathlon stores them, [c,k,j,i] (a 4D vector image's
    components follow each other within each 4th-axis index).

    ``voxels=False`` gives a zero-memory placeholder of the image's (first channel's) shape and geometry.
    """
    dimension = image.GetDimension()
    direction = np.array(image.GetDirection()).reshape(dimension, dimension)[:3, :3]
    spacing, origin = image.GetSpacing()[:3], image.GetOrigin()[:3]
    if not voxels:
        shape = tuple(image.GetSize())[:3][::-1]
        return Volume(np.broadcast_to(np.float32(0), shape), spacing, origin, direction)
    array = sitk.GetArrayFromImage(image)  # [(t,) k, j, i(, components)]
    if image.GetNumberOfComponentsPerPixel() > 1:
        array = np.moveaxis(array, -1, 1 if dimension == 4 else 0)
    if dimension == 4:
        array = array.reshape(-1, *array.shape[-3:])
    return Volume(array, spacing, origin, direction)


def volume_to_sitk(volume: Volume) -> sitk.Image:
    """Convert a single-channel :class:`Volume` to a SimpleITK image with the same geometry."""
    if volume.array.ndim != 3:
        raise ValueError("only single-channel volumes can be converted to a SimpleITK image")
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(volume.direction.ravel()))
    return image


def read_header(path: str | os.PathLike) -> sitk.ImageFileReader:
    """Read only a volume file's header (size, spacing, dimension) without its voxels.

    Raises SegNetsError naming the file when the header cannot be read, or is a header ITK cannot read safely or
    reads silently wrong (:mod:`~SegNetsLib.imageio.nifti_header`, :mod:`~SegNetsLib.imageio.metaimage_header`,
    :mod:`~SegNetsLib.imageio.nrrd_header`).
    """
    check_nifti_header(path)
    check_metaimage_header(path)
    check_nrrd_header(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise SegNetsError(f"{path}: not a readable image file (the header could not be read).") from None
    return reader


def check_declared_size(path: str | os.PathLike, what: str = "image") -> None:
    """Refuse a file whose header declares more than :data:`MAX_VOXELS` values or more bytes than this process
    can still allocate, before any voxel is read."""
    reader = read_header(path)
    _check_size(path, reader.GetSize(), max(1, reader.GetNumberOfComponents()), reader.GetPixelIDValue(), what)


def _check_size(path: str | os.PathLike, size: tuple[int, ...], components: int, pixel_id: int, what: str) -> None:
    """Refuse ``size`` voxels of ``components`` values of SimpleITK type ``pixel_id`` beyond the limits above."""
    values = math.prod(size) * components
    pixel = sitk.GetPixelIDValueAsString(pixel_id)
    item = np.dtype(_ITEM_TYPES.get(pixel_id, np.float64)).itemsize
    if values > MAX_VOXELS:
        raise SegNetsError(
            f"{path}: the header declares {' x '.join(map(str, size))} voxels ({values:,} values), more than the "
            f"{MAX_VOXELS:,} SegNets reads; it is not a usable {what}."
        )
    free = available_memory_bytes()
    if free is not None and values * item > free:
        raise SegNetsError(
            f"{path}: reading its {' x '.join(map(str, size))} {pixel} voxels needs {values * item / 1024**3:.2f} "
            f"GiB of memory but only {free / 1024**3:.2f} GiB is available."
        )


def read_image(path: str | os.PathLike, what: str = "image") -> sitk.Image:
    """``sitk.ReadImage`` of an untrusted file, after :func:`check_declared_size`."""
    check_declared_size(path, what)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown reason"
        raise SegNetsError(f"{path}: not a readable {what} file ({first_line[:200]}).") from None


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a volume from a NIfTI, NRRD or MHA file and check it is usable: 3D [k,j,i], or [c,k,j,i] from a vector
    image or a 4D one whose last axis holds the channels (see :func:`volume_from_sitk`).

    A DICOM file (recognised by content, any name) reads its whole series from its folder; a folder reads the one
    DICOM series it holds (see :mod:`~SegNetsLib.imageio.dicom`).

    Raises SegNetsError (one sentence naming the file) for unreadable files, images that are neither 3D nor 4D,
    absurd spacing, NaN/Inf voxels and empty or constant volumes.
    """
    path = Path(path)
    if path.is_dir() or is_dicom_input(path):
        return _read_series(path)
    if not path.is_file():
        raise SegNetsError(f"{path}: no such file.")
    image = read_image(path)
    if image.GetDimension() not in (3, 4):
        raise SegNetsError(
            f"{path}: a {image.GetDimension()}D image; SegNets segments 3D volumes (4D ones with channels last)."
        )
    volume = volume_from_sitk(image)
    check_volume(volume, str(path))
    return volume


def _read_series(path: Path) -> Volume:
    """The DICOM series of the file ``path``, or the one series in the folder ``path``."""
    if path.is_file():
        series = dicom.series_of(path)
    else:
        found = dicom.series_in(path)
        if len(found) != 1:
            some = "no DICOM series" if not found else f"{len(found)} DICOM series ({', '.join(s.stem for s in found)})"
            raise SegNetsError(f"{path}: a folder with {some}; give one volume file, or one file of the series.")
        series = found[0]
    _check_size(series.label, series.size, 1, series.pixel_id, "image")
    volume = volume_from_sitk(dicom.read_series(series))
    check_volume(volume, series.label)
    return volume


def check_volume(volume: Volume, name: str) -> None:
    """Raise SegNetsError when a volume cannot be segmented (shape, spacing, NaN/Inf, constant)."""
    if volume.array.ndim not in (3, 4):
        raise SegNetsError(f"{name}: a {volume.array.ndim}D array; SegNets segments 3D volumes.")
    if min(volume.shape_kji) < 2:
        raise SegNetsError(f"{name}: shape {volume.shape_kji} is not a 3D volume (an axis has fewer than 2 voxels).")
    check_spacing(volume.spacing, name)
    direction = np.asarray(volume.direction, dtype=float)
    if not np.isfinite(direction).all() or abs(abs(np.linalg.det(direction)) - 1.0) > 1e-2:
        raise SegNetsError(f"{name}: the axis directions are not a rotation (the file's direction matrix is damaged).")
    if volume.array.dtype.kind == "f" and not np.isfinite(volume.array).all():  # integers are always finite
        raise SegNetsError(f"{name}: the volume contains NaN or infinite voxel values.")
    if volume.array.size == 0 or np.ptp(volume.array) == 0:
        raise SegNetsError(f"{name}: the volume is constant (every voxel has the same value), nothing to segment.")


def write_volume(volume: Volume, path: str | os.PathLike) -> Path:
    """Write a single-channel volume atomically; the format follows the suffix (a single-file one)."""
    path = Path(path)
    check_written_volume_name(path)
    return write_image(volume_to_sitk(volume), path)


def write_image(image: sitk.Image, path: str | os.PathLike) -> Path:
    """Write ``image`` atomically to ``path`` (the format follows the suffix). ITK reports a full disk as a long
    RuntimeError (NRRD, MetaImage) or not at all (NIfTI: it prints a line and leaves a short file, or an empty
    one on a disk already full), so a failed or short write raises :class:`NotWritten` naming ``path`` and leaves
    nothing there."""
    path = Path(path)
    with atomic_file(path) as temporary:
        try:
            sitk.WriteImage(image, str(temporary), useCompression=True)
        except RuntimeError as error:
            known = (os.strerror(code) for code in (errno.ENOSPC, errno.EFBIG, errno.EIO))
            reason = next(
                (text for text in known if text in str(error)), "the image writer stopped, the disk may be full"
            )
            raise NotWritten(path, reason) from None
        if path.name.lower().endswith((".nii", ".nii.gz")):  # a whole header and every voxel it declares
            try:
                check_nifti_header(temporary, written=True)
            except SegNetsError:
                raise NotWritten(path, "the file came out short, the disk may be full") from None
    return path
