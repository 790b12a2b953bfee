"""Which slices a painting is read as: realistic paintings of every structure of a set, read back.

A user paints whole slices of a structure in patterns beyond the benchmark's bin centres: two neighbouring slices
and one apart, a pair, three in a row, two pairs a gap apart; along any of the three axes. SegNets reads the
annotated slices from the labelmap alone (``SegNetsLib.core.annotation.annotated_slices``); a painting read along
another axis, or with slices added or missing, makes fine-tuning learn unpainted slices as background. For each
structure of the set and each axis, the patterns are placed on the structure's three bin-centre slices along that
axis (slices that hold none of it are left out); a painting is read right when its slices come back exactly.

Usage: python bench/painting_reads.py [--set tune|report] [--data ../shared/data]
Prints a Markdown table of misread paintings per pattern and the list of those misread. Without the data folder,
the volumes of Testing/Data are read (structures of other volumes are left out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from sparse_sets import SETS  # noqa: E402

from SegNetsLib.core.annotation import annotated_slices, bin_centre_slices  # noqa: E402
from SegNetsLib.imageio.volumes import read_volume  # noqa: E402

PATTERNS = {  # name -> the painted slices, from the three bin centres b along the axis
    "adjacent + far": lambda b: [b[0], b[0] + 1, b[2]],
    "far + adjacent": lambda b: [b[0], b[2] - 1, b[2]],
    "pair": lambda b: [b[1], b[1] + 1],
    "three in a row": lambda b: [b[1] - 1, b[1], b[1] + 1],
    "bin centres": lambda b: list(b),
    "two pairs apart": lambda b: [b[0], b[0] + 1, b[2], b[2] + 1],
}


def paintings(mask: np.ndarray):
    """(axis, pattern, painted slices, labelmap uint8 [k, j, i]) for ``mask`` (bool [k, j, i]) painted whole on
    each pattern's slices along each axis; slices holding none of the structure are left out."""
    for axis in range(3):
        centres = bin_centre_slices(mask, 3, axis)
        for pattern, place in PATTERNS.items():
            painted, labels = [], np.zeros(mask.shape, dtype=np.uint8)
            for index in sorted(set(place(centres))):
                plane = (slice(None),) * axis + (index,)
                if 0 <= index < mask.shape[axis] and mask[plane].any():
                    labels[plane] = mask[plane]
                    painted.append(index)
            if painted:
                yield axis, pattern, painted, labels


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(SETS), default="tune")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    args = parser.parse_args(argv)
    data = Path(args.data) if Path(args.data).is_dir() else REPO / "Testing" / "Data"  # the test copies of some
    counts = {pattern: [0, 0] for pattern in PATTERNS}  # pattern -> [misread, paintings]
    misread, labels_of = [], {}
    for name, values in SETS[args.set].items():
        folder = name.split(":")[0]
        path = data / folder / "label.nii.gz"
        if not path.is_file():
            continue
        if folder not in labels_of:
            labels_of[folder] = read_volume(path).array
        mask = np.isin(labels_of[folder], np.atleast_1d(values))
        for axis, pattern, painted, labels in paintings(mask):
            read = annotated_slices(labels)
            counts[pattern][1] += 1
            if read != {a: (painted if a == axis else []) for a in range(3)}:
                counts[pattern][0] += 1
                shown = "; ".join(f"axis {a}: {', '.join(map(str, s))}" for a, s in read.items() if s)
                misread.append(f"| {name} | {axis} | {pattern} | {', '.join(map(str, painted))} | {shown} |")
    print(f"| pattern ({args.set}) | misread | paintings |\n|---|---|---|")
    for pattern, (bad, total) in counts.items():
        print(f"| {pattern} | {bad} | {total} |")
    bad, total = (sum(c[i] for c in counts.values()) for i in range(2))
    print(f"| **all** | **{bad}** | {total} |\n")
    print("| structure | axis | pattern | painted | read as |\n|---|---|---|---|---|")
    print("\n".join(misread))
    return 0


if __name__ == "__main__":
    sys.exit(main())
