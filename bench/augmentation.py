"""Augmentation benchmark: milliseconds per training patch of the fine-tuning augmentation, side by side.

Times :func:`SegNetsLib.training.augment.augment` on one sample of the fine-tuning crop (patch 8 x 48 x 48, the
input :func:`~SegNetsLib.training.augment.input_size` gives for it) in four settings, interleaved round by round so
that a shared machine's load falls on all of them alike: with and without the dense deformation (a new network
from painted slices keeps it, a correction round leaves it out), each with MONAI's metadata tracking (its default)
and without it (what ``augment`` does). Prints a Markdown table: median ms per patch and the ratio to the first row.

Usage: python bench/augmentation.py [--rounds 30] [--repeats 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from SegNetsLib.training.augment import AugmentOptions, augment, build_augmentation, input_size  # noqa: E402

PATCH = (8, 48, 48)


def _sample(crop: tuple[int, ...]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    label = (torch.rand((1, *crop), generator=generator) > 0.7).float()
    return {"image": torch.randn((1, *crop), generator=generator), "label": label, "weight": torch.ones_like(label)}


def _tracked(transform, sample):
    """The transform with MONAI's metadata tracking on (its default), to compare with :func:`augment`."""
    return transform(dict(sample))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="rounds; each times every setting once")
    parser.add_argument("--repeats", type=int, default=20, help="patches per setting and round")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    crop = input_size(PATCH, AugmentOptions())
    sample = _sample(crop)
    settings = {}
    for deform in (True, False):
        for name, run in (("tracked", _tracked), ("untracked (augment)", augment)):
            transform = build_augmentation(PATCH, AugmentOptions(deform=deform), slice_axis=0, seed=0)
            settings[f"{'with' if deform else 'without'} deformation, metadata {name}"] = (transform, run)
    times = {label: [] for label in settings}
    for _ in range(args.rounds):
        for label, (transform, run) in settings.items():
            began = time.perf_counter()
            for _ in range(args.repeats):
                run(transform, sample)
            times[label].append((time.perf_counter() - began) / args.repeats * 1000.0)
    first = statistics.median(next(iter(times.values())))
    print(f"crop {' x '.join(map(str, crop))} -> patch {' x '.join(map(str, PATCH))}, {args.threads} threads\n")
    print("| setting | ms per patch (median of rounds) | ratio to the first row |")
    print("|---|---|---|")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"| {label} | {median:.1f} | {median / first:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
