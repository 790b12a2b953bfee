"""The one refusal of a file shorter than its header declares (NIfTI, MetaImage): ITK's readers allocate what a
header declares and some crash reading past a file's end, so the length is checked before they read."""

from __future__ import annotations

from pathlib import Path

from SegNetsLib.core.errors import SegNetsError


def check_file_length(path: Path, holds: int, declared: int, header: str) -> None:
    """Refuse ``path`` when the ``holds`` bytes it has for voxels are fewer than the ``declared`` bytes its
    ``header`` (a format's name: "NIfTI", "MetaImage") asks for."""
    if holds < declared:
        raise SegNetsError(
            f"{path}: the file holds {holds:,} bytes but its {header} header declares {declared:,} (the file is cut "
            "short or the header is wrong)."
        )
