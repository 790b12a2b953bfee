"""What the header checks (NIfTI, MetaImage, NRRD) share: reading the start of a file, and the one refusal of a
file shorter than its header declares (ITK's readers allocate what a header declares and some crash reading past
a file's end, so the length is checked before they read)."""

from __future__ import annotations

import gzip
from pathlib import Path

from SegNetsLib.core.errors import SegNetsError

GZIP_MAGIC = b"\x1f\x8b"


def file_start(path: Path, size: int, gunzip: bool = False) -> tuple[bytes, bool]:
    """The first ``size`` bytes of ``path`` (of its decompressed stream when ``gunzip`` and it is gzip) and
    whether they were decompressed; an unreadable file is refused in one sentence naming it."""
    try:
        with open(path, "rb") as file:
            compressed = gunzip and file.read(len(GZIP_MAGIC)) == GZIP_MAGIC
        with gzip.open(path, "rb") if compressed else open(path, "rb") as file:
            return file.read(size), compressed
    except (OSError, EOFError) as error:
        raise SegNetsError(f"{path}: not a readable image file ({error}).") from None


def check_file_length(path: Path, holds: int, declared: int, header: str) -> None:
    """Refuse ``path`` when the ``holds`` bytes it has for voxels are fewer than the ``declared`` bytes its
    ``header`` (a format's name: "NIfTI", "MetaImage") asks for."""
    if holds < declared:
        raise SegNetsError(
            f"{path}: the file holds {holds:,} bytes but its {header} header declares {declared:,} (the file is cut "
            "short or the header is wrong)."
        )
