"""Small real DICOM series written with SimpleITK (classic single-slice CT files, as a scanner exports them)."""

from __future__ import annotations

import locale
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def ct_crop(image_path: Path, shape_kji: tuple[int, int, int] = (16, 32, 32)) -> sitk.Image:
    """A central [k,j,i] crop of a CT file, as int16 Hounsfield units with the file's geometry."""
    image = sitk.Cast(sitk.ReadImage(str(image_path)), sitk.sitkInt16)
    size = image.GetSize()
    start = [(s - n) // 2 for s, n in zip(size, shape_kji[::-1])]
    return sitk.RegionOfInterest(image, shape_kji[::-1], start)


def write_series(
    image: sitk.Image,
    folder: Path,
    description: str = "CT abdomen",
    number: int = 3,
    uid: str | None = None,
    names: str = "IM{:04d}",
    tilt_slice: int | None = None,
    moved: dict[int, float] | None = None,
) -> list[Path]:
    """Write ``image`` [k,j,i] as one DICOM file per k slice (no suffix, as scanners name them); ``tilt_slice``
    gives that slice an orientation rotated 90 degrees in plane, ``moved`` shifts slices {k: mm} along the slice
    normal. Returns the files in slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = uid or f"1.2.826.0.1.3680043.2.1125.{time.time_ns()}"
    direction = np.array(image.GetDirection()).reshape(3, 3)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    paths = []
    for k in range(image.GetDepth()):
        piece = image[:, :, k]
        row, column = direction[:, 0], direction[:, 1]
        if k == tilt_slice:
            row, column = column, -row
        position = (
            np.array(image.TransformIndexToPhysicalPoint((0, 0, k))) + (moved or {}).get(k, 0.0) * direction[:, 2]
        )
        tags = {
            "0008|0060": "CT",
            "0008|103e": description,
            "0010|0010": "Test^Phantom",
            "0020|000d": uid + ".1",
            "0020|000e": uid,
            "0020|0011": str(number),
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": "\\".join(f"{v:.6f}" for v in (*row, *column)),
            "0008|0018": f"{uid}.{k + 1}",
            "0028|0030": "\\".join(f"{v:.6f}" for v in image.GetSpacing()[1::-1]),
            "0018|0050": f"{image.GetSpacing()[2]:.6f}",
        }
        for tag, value in tags.items():
            piece.SetMetaData(tag, value)
        path = folder / names.format(k + 1)
        writer.SetFileName(str(path))
        writer.SetImageIO("GDCMImageIO")
        kept = locale.setlocale(locale.LC_ALL)  # GDCM's writer leaves the C library's locale at "C", and Python's
        writer.Execute(piece)  # text-mode subprocesses of later tests would then decode UTF-8 output as ASCII
        locale.setlocale(locale.LC_ALL, kept)
        paths.append(path)
    return paths
