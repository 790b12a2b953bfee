"""Checks of a MetaImage header (``.mha``, ``.mhd``) before ITK reads it.

ITK's MetaImage reader crashes on some headers (``NDims`` negative or 100: a segmentation fault or a corrupted
heap; found by fuzzing the header) and never returns on a ``TransformMatrix`` of huge values. These checks parse
the header's ``Key = Value`` lines and refuse such files first, in one sentence naming the field.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from SegNetsLib.core.errors import SegNetsError
from SegNetsLib.imageio.header_files import check_file_length, file_start

SUFFIXES = (".mha", ".mhd")
MAX_HEADER_BYTES = 1 << 16  # a header is a few hundred bytes; the data starts after ElementDataFile
MAX_DIMENSIONS = 4  # SegNets reads 3D volumes, and 4D ones whose last axis holds channels
MAX_CHANNELS = 256
MAX_SIZE = 2**31 - 1  # voxels along one axis
ELEMENT_BYTES = {"CHAR": 1, "UCHAR": 1, "SHORT": 2, "USHORT": 2, "INT": 4, "UINT": 4, "LONG": 4, "ULONG": 4,
                 "LONG_LONG": 8, "ULONG_LONG": 8, "FLOAT": 4, "DOUBLE": 8}  # fmt: skip
# fields holding NDims numbers / NDims x NDims numbers, where present (MetaIO's synonyms included)
VECTORS = ("ElementSpacing", "ElementSize", "Offset", "Position", "Origin", "CenterOfRotation")
MATRICES = ("TransformMatrix", "Rotation", "Orientation")
MAX_MATRIX_ENTRY = 1e6  # direction cosines are at most 1; ITK never returns on some matrices of 1e308 entries


def _header(path: Path) -> tuple[dict[str, str], int]:
    """The header's fields (key -> value text; the last of a repeated key) and the byte where the data of
    ``ElementDataFile = LOCAL`` starts (the header's end)."""
    start, _ = file_start(path, MAX_HEADER_BYTES)
    fields, position = {}, 0
    for line in start.split(b"\n"):
        position += len(line) + 1
        key, equals, value = line.decode("latin-1").partition("=")
        if equals:
            fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            return fields, position
    raise SegNetsError(
        f"{path}: the MetaImage header has no ElementDataFile line in its first {MAX_HEADER_BYTES:,} bytes."
    )


def _numbers(path: Path, fields: dict[str, str], key: str, count: int, integer: bool = False) -> list:
    """``count`` finite numbers (floats, or ints when ``integer``) of field ``key``, refused in one sentence
    otherwise."""
    text = fields[key]
    try:
        values = [int(v) if integer else float(v) for v in text.split()]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        kind = "integers" if integer else "finite numbers"
        raise SegNetsError(f"{path}: the MetaImage header's {key} {text[:80]!r} is not {count} {kind}.")
    return values


def check_metaimage_header(path: str | os.PathLike) -> None:
    """Refuse a MetaImage file (by its suffix) whose header ITK cannot read safely; do nothing for other files.

    Refused: ``NDims`` not an integer from 1 to 4; ``DimSize`` not NDims sizes from 1 to 2^31 - 1; a spacing,
    origin, centre or matrix field (where present) not NDims (NDims x NDims) finite numbers, or a matrix entry
    beyond ±1e6; an unknown ``ElementType``; ``ElementNumberOfChannels`` outside 1 to 256; ``HeaderSize`` below
    -1; binary, uncompressed voxels (in this file or the one it names) fewer than the header declares.
    """
    path = Path(path)
    if not path.name.lower().endswith(SUFFIXES):
        return
    fields, data_start = _header(path)
    if "NDims" not in fields or "DimSize" not in fields:
        raise SegNetsError(f"{path}: the MetaImage header lacks NDims or DimSize.")
    ndims = _numbers(path, fields, "NDims", 1, integer=True)[0]
    if not 1 <= ndims <= MAX_DIMENSIONS:
        raise SegNetsError(f"{path}: the MetaImage header's NDims {ndims} is not from 1 to {MAX_DIMENSIONS}.")
    sizes = _numbers(path, fields, "DimSize", ndims, integer=True)
    if not all(1 <= s <= MAX_SIZE for s in sizes):
        raise SegNetsError(f"{path}: the MetaImage header's DimSize {sizes} is not a valid image size.")
    for key in (k for k in VECTORS if k in fields):
        _numbers(path, fields, key, ndims)
    for key in (k for k in MATRICES if k in fields):
        if max(map(abs, _numbers(path, fields, key, ndims * ndims))) > MAX_MATRIX_ENTRY:
            raise SegNetsError(
                f"{path}: the MetaImage header's {key} holds a value beyond ±{MAX_MATRIX_ENTRY:,.0f}, not axis directions."
            )
    element = fields.get("ElementType", "").removeprefix("MET_").removesuffix("_ARRAY")
    if element not in ELEMENT_BYTES:
        raise SegNetsError(
            f"{path}: the MetaImage header's ElementType {fields.get('ElementType', '')[:40]!r} is unknown."
        )
    channels = (
        _numbers(path, fields, "ElementNumberOfChannels", 1, integer=True)[0]
        if "ElementNumberOfChannels" in fields
        else 1
    )
    if not 1 <= channels <= MAX_CHANNELS:
        raise SegNetsError(
            f"{path}: the MetaImage header's ElementNumberOfChannels {channels} is not from 1 to {MAX_CHANNELS}."
        )
    skip = _numbers(path, fields, "HeaderSize", 1, integer=True)[0] if "HeaderSize" in fields else 0
    if skip < -1:
        raise SegNetsError(f"{path}: the MetaImage header's HeaderSize {skip} is below -1.")
    if _true(fields, "BinaryData") and not _true(fields, "CompressedData"):
        declared = math.prod(sizes) * channels * ELEMENT_BYTES[element]
        _check_data_length(path, fields["ElementDataFile"], data_start, max(skip, 0), declared)


def _true(fields: dict[str, str], key: str) -> bool:
    """A MetaImage boolean as MetaIO reads it: true when its text starts with T, t or 1."""
    return fields.get(key, "")[:1] in ("T", "t", "1")


def _check_data_length(path: Path, data_file: str, header_end: int, skip: int, declared: int) -> None:
    """Refuse binary voxels shorter than ``declared`` bytes: after the header's end and ``skip`` bytes in this file
    (``LOCAL``), or after ``skip`` bytes of the one file ``data_file`` names beside it; a list or a pattern of files
    is left to ITK."""
    if data_file == "LOCAL":
        check_file_length(path, path.stat().st_size - header_end - skip, declared, "MetaImage")
        return
    target = path.parent / data_file
    if data_file != "LIST" and "%" not in data_file and target.is_file():
        check_file_length(target, target.stat().st_size - skip, declared, "MetaImage")
