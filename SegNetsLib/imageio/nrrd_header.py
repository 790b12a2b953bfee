"""A check of a NRRD header's axis vectors before ITK reads it.

Where a ``space directions`` vector is too long for its squared length to be a float (1e200 mm), ITK's NRRD
reader gives the axis a spacing of 1 mm and no direction, silently: the volume would be segmented on a grid
the file does not describe. The vectors' lengths are checked as the spacings they are.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from SegNetsLib.imageio.header_files import file_start
from SegNetsLib.imageio.spacing import check_spacing

SUFFIXES = (".nrrd", ".nhdr")
MAX_HEADER_BYTES = 1 << 16
VECTOR = re.compile(r"\(([^()]*)\)|none")


def _space_directions(path: Path) -> str | None:
    """The text of the header's ``space directions`` field, or None where it has none."""
    start, _ = file_start(path, MAX_HEADER_BYTES)
    for line in start.split(b"\n")[1:]:  # the first line is the NRRD magic
        if not line.strip():
            return None  # the header's end
        key, colon, value = line.decode("latin-1").partition(":")
        if colon and key.strip() == "space directions":
            return value.strip()
    return None


def check_nrrd_header(path: str | os.PathLike) -> None:
    """Refuse a NRRD file (by its suffix) whose ``space directions`` give an axis a length outside the spacings
    SegNets accepts (:func:`~SegNetsLib.imageio.spacing.check_spacing`); do nothing for other files, for axes
    given as ``none``, and for a field the reader will refuse itself (not numbers)."""
    path = Path(path)
    if not path.name.lower().endswith(SUFFIXES):
        return
    text = _space_directions(path)
    if text is None:
        return
    lengths = []
    for match in VECTOR.finditer(text):
        if match.group(1) is None:
            continue  # a non-spatial axis
        try:
            lengths.append(math.hypot(*(float(v) for v in match.group(1).split(","))))
        except (ValueError, OverflowError):
            return
    check_spacing(lengths, str(path))
