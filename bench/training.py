"""Training benchmark: short runs of each architecture on a tiny real CT dataset, and 1 vs 2 CPU ranks.

Builds the 5-case MSD-layout dataset of ``Testing/helpers/msd_builder.py`` (TotalSegmentator example CT, liver
and spleen, 6 mm voxels; 4 training cases, 1 validation case), trains each architecture with a small
width on the CPU and prints a Markdown table: parameters, seconds per iteration, best validation Dice.
``--ddp`` also times the same unet3d run under ``torchrun --nproc_per_node=2`` (gloo).

Usage: python bench/training.py [--epochs 8] [--iterations 20] [--architectures unet3d,runet] [--ddp]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "Testing" / "helpers"))
sys.path.insert(0, str(ROOT))

from msd_builder import make_msd_dataset  # noqa: E402

from SegNetsLib.training.trainer import TrainOptions, train  # noqa: E402

WIDTHS = {
    "unet3d": {"base_channels": 8, "levels": 3},
    "vnet": {"base_channels": 8},
    "conresnet": {"base_channels": 8},
    "runet": {"base_channels": 8},
}
RATES = {"unet3d": 1e-2, "vnet": 1e-3, "conresnet": 1e-3, "runet": 1e-3}
PATCH = (16, 48, 48)


def _row(architecture: str, dataset: Path, folder: Path, epochs: int, iterations: int) -> str:
    options = TrainOptions(
        save_model=f"bench {architecture}",
        epochs=epochs,
        iterations_per_epoch=iterations,
        batch_size=2,
        patch_size=PATCH,
        learning_rate=RATES[architecture],
        device="cpu",
        build_args=WIDTHS[architecture],
        work_dir=folder / architecture,
    )
    start = time.perf_counter()
    result = train(dataset, architecture, options)
    seconds = time.perf_counter() - start
    parameters = sum(p.numel() for p in result.net.parameters())
    dice = result.card.provenance.validation
    per_iteration = seconds / (epochs * iterations)
    return (
        f"| {architecture} | {WIDTHS[architecture]['base_channels']} | {parameters:,} | {epochs}x{iterations} | "
        f"{per_iteration:.2f} | {seconds:.0f} | {dice.get('liver', float('nan')):.3f} | "
        f"{dice.get('spleen', float('nan')):.3f} |"
    )


def _ddp_seconds(dataset: Path, folder: Path, processes: int, epochs: int, iterations: int) -> float:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "SegNetsLib.cli",
        "train",
        "--dataset",
        str(dataset),
        "--save-model",
        f"ddp {processes}",
        "--epochs",
        str(epochs),
        "--iterations",
        str(iterations),
        "--batch-size",
        "1",
        "--patch-size",
        *map(str, PATCH),
        "--base-channels",
        "8",
        "--build-args",
        '{"levels": 3}',
        "--device",
        "cpu",
        "--work-dir",
        str(folder / f"ddp{processes}"),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run(command, env=environment, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--architectures", default="unet3d,vnet,conresnet,runet")
    parser.add_argument("--ddp", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        os.environ["SEGNETS_MODELS"] = str(folder / "models")
        dataset = make_msd_dataset(folder / "TinyAbdomen", ROOT / "Testing" / "Data", cases=5)
        print(
            f"Tiny abdomen CT dataset (4 training cases, 1 validation case, 6 mm), patch {PATCH}, batch 2, CPU, "
            f"{os.cpu_count()} cores (shared), torch threads {__import__('torch').get_num_threads()}.\n"
        )
        print(
            "| network | base channels | parameters | epochs x iterations | s / iteration | total s | "
            "best Dice liver | Dice spleen |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for architecture in args.architectures.split(","):
            print(_row(architecture, dataset, folder, args.epochs, args.iterations), flush=True)
        if args.ddp:
            print("\n| torchrun processes (gloo, CPU) | batch per rank | wall s (incl. start-up) |")
            print("|---|---|---|")
            for processes in (1, 2):
                seconds = _ddp_seconds(dataset, folder, processes, 2, args.iterations)
                print(f"| {processes} | 1 | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
