"""Model files: size and save / load / zip export / zip import times per architecture and preset.

Run: ``python bench/models_io.py``; prints a Markdown table. Times are wall seconds on this machine's CPU,
best of 3; load includes the tensor name/shape check and building the network.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from SegNetsLib import __version__
from SegNetsLib.card.factory import make_card
from SegNetsLib.models.library import ModelLibrary, load
from SegNetsLib.models.store import build_network, save

# (architecture, in_channels, labels, multi_label): the papers' tasks
CASES = [
    ("unet3d", 1, ["liver"], False),
    ("vnet", 1, ["prostate"], False),
    ("conresnet", 4, ["enhancing tumor", "whole tumor", "tumor core"], True),
    ("runet", 1, ["tumor"], False),
]
REPEATS = 3


def best(function) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(architecture: str, in_channels: int, labels: list[str], multi_label: bool, preset: str, work: Path) -> str:
    card = make_card(
        architecture,
        labels,
        in_channels=in_channels,
        preset=preset,
        multi_label=multi_label,
        id=f"{architecture}-{preset}",
    )
    net = build_network(card)
    parameters = sum(p.numel() for p in net.parameters())
    counter = iter(range(1000))
    save_s = best(lambda: save(net, card, work / f"{card.id}-{next(counter)}"))
    folder = work / f"{card.id}-0"
    size_mb = (folder / "weights.safetensors").stat().st_size / 1e6
    load_s = best(lambda: load(folder))
    library = ModelLibrary(work / "lib")
    library.add(net, card)
    export_s = best(lambda: library.export(card.id, work / f"{card.id}-{next(counter)}.zip"))
    archive = next(work.glob(f"{card.id}-*.zip"))
    versions = iter(f"1.0.{i}" for i in range(1, 100))
    import_s = best(lambda: ModelLibrary(work / "other").import_path(archive, version=next(versions)))
    return (
        f"| {architecture} | {preset} | {parameters:,} | {size_mb:.1f} | {save_s:.2f} | {load_s:.2f} | "
        f"{export_s:.2f} | {import_s:.2f} |"
    )


def main() -> None:
    torch.set_num_threads(2)
    print(f"SegNets {__version__}, torch {torch.__version__}, CPU, best of {REPEATS}.\n")
    print(
        "| architecture | preset | parameters | weights.safetensors MB | save s | load s | export zip s | import zip s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="segnets-bench-") as scratch:
        for architecture, in_channels, labels, multi_label in CASES:
            for preset in ("default", "paper"):
                work = Path(scratch) / f"{architecture}-{preset}"
                work.mkdir()
                print(measure(architecture, in_channels, labels, multi_label, preset, work), flush=True)


if __name__ == "__main__":
    main()
