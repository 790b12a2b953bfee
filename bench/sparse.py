"""Sparse-annotation benchmark: fine-tuning vs Slicer's Fill between slices and a seeded random walker.

k fully annotated slices at the centres of k equal bins through each structure's extent along array
axis 0 (the protocol of ../shared/data/README.md). Per structure and k: Dice, 95% Hausdorff distance
(mm, MONAI) and seconds for each method:
- ``network``: ``segnets finetune`` from scratch (3D U-Net sized for the budget, ``--time-limit`` s);
- ``mci``: 3D Slicer's Fill between slices (ITK MorphologicalContourInterpolator, in a subprocess);
- ``rw``: scikit-image's seeded random walker (stand-in for Slicer's Grow from seeds);
- ``--pretrained``: BraTS whole tumour (``--pretrained-region tumour_core``: the setting's tune structure), leave
  one out: a model trained on the two other patients (dense labels, ``--pretrain-time`` s each), then alone
  (``base``) and fine-tuned from k slices (``tuned``).
``--device`` fine-tunes and pretrains there (e.g. ``cuda`` with ``--time-limit 20``).

Usage: python bench/sparse.py [--structures ts_ct_full:liver,...] [--k 2,3,5] [--time-limit 120]
       [--methods network,mci,rw] [--pretrained] [--device cpu|cuda] [--data ../shared/data] [--results DIR]
       python bench/sparse.py --merge DIR1,DIR2,... --results DIR   (tables and plots of runs made apart)
       python bench/sparse.py --rescore DIR1,... --results DIR   (network rows again from saved labelmaps)
       python bench/sparse.py --rounds 4 [--set report] ...   (the interactive loop: bench/sparse_rounds.py)
Writes Markdown tables to stdout, and ``bench/results/sparse.json`` / ``sparse_dice_vs_k.png``.
Its parts: sparse_sets.py (the structures), sparse_methods.py (one structure's methods), sparse_pretrained.py
(``--pretrained``), sparse_tables.py (tables, plots, ``--merge``), sparse_rounds.py (``--rounds``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(BENCH))
import sparse_methods  # noqa: E402
from sparse_methods import BRATS, evaluate, metrics, read_case, sparse_annotation, structure_labels  # noqa: E402
from sparse_sets import SETS, STRUCTURES  # noqa: E402
from sparse_tables import merge, plot, table  # noqa: E402


def rescore(folders: list[str], data: Path, results: Path) -> None:
    """The ``network`` and ``unet-only`` rows of earlier runs again, from their saved network labelmaps
    through the current steps after the network (clean-up, then ``refine_result``): for changes after the
    network, without training again. Seconds stay those of the original run; rescored rows are marked."""
    from SegNetsLib.core import annotation as ann
    from SegNetsLib.finetune.cleanup import clean_scratch_prediction, known_box
    from SegNetsLib.finetune.walkers import prepare_walkers

    rows, cases = [], {}
    for folder in folders:
        for row in json.loads((Path(folder) / "sparse.json").read_text()):
            if row["method"] in ("network", "unet-only"):
                name, k = row["structure"], row["k"]
                if name not in cases:  # one read per structure, not per k
                    cases[name] = read_case(data / name.partition(":")[0], structure_labels(name))
                image, truth = cases[name]
                saved = np.load(Path(folder) / "labelmaps" / f"{name.replace(':', '_')}_k{k}.npz")
                annotation, _ = sparse_annotation(truth, k)
                slices = ann.annotated_slices(annotation, 255)
                weight = ann.weight_map(annotation, slices, 255)
                network = saved["network"]  # a fresh array per access of the .npz
                clean_scratch_prediction(network, slices, annotation, weight, image.spacing, [1])
                out = network
                if row["method"] == "network":  # as the pipeline refines: on its walkers' grid, a new labelmap
                    box = known_box(network.shape, slices, np.where(weight > 0, annotation, 0), image.spacing)
                    walkers = prepare_walkers(image.array, annotation, weight, image.spacing, slices, box, True)
                    out = walkers.refine(walkers.on_grid(network))
                    out[weight > 0] = annotation[weight > 0]  # every painted voxel keeps the user's label
                dice, hd95 = metrics(out > 0, truth, image.spacing[::-1])
                print(
                    f"<!-- {name} k={k} {row['method']} rescored: Dice {row['dice']:.3f} -> {dice:.3f} -->", flush=True
                )
                row = {**row, "dice": dice, "hd95": hd95, "rescored": True}
            rows.append(row)
    results.mkdir(parents=True, exist_ok=True)
    (results / "sparse.json").write_text(json.dumps(rows, indent=1))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--rounds" or a.startswith("--rounds=") for a in argv):  # the interactive loop
        import sparse_rounds

        return sparse_rounds.main(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--structures",
        default="ts_ct_full:liver",
        help=f"comma-separated folder:structure from {', '.join(STRUCTURES)} "
        "(or brats_pat000N_1:whole_tumour or :tumour_core), folder:V or folder:V+W for label values V, W of a "
        "folder of one's own under --data (image.nii.gz, label.nii.gz), or 'all', or 'none'",
    )
    parser.add_argument(
        "--set",
        choices=sorted(SETS),
        help="the structures of bench/sparse_sets.py's tune or report set (overrides --structures)",
    )
    parser.add_argument("--k", default="2,3,5")
    parser.add_argument("--time-limit", type=float, default=60.0, help="fine-tuning seconds per run")
    parser.add_argument("--methods", default="network,mci,rw")
    parser.add_argument("--pretrained", action="store_true", help="also run the BraTS leave-one-out setting")
    parser.add_argument("--brats-cases", default=",".join(BRATS), help="held-out BraTS cases to evaluate")
    parser.add_argument("--pretrain-time", type=float, default=240.0, help="pretraining seconds per BraTS case")
    parser.add_argument(
        "--pretrained-region",
        choices=("whole_tumour", "tumour_core"),
        default="whole_tumour",
        help="the BraTS region of the pretrained setting (tumour_core: the setting's tune structure)",
    )
    parser.add_argument(
        "--pretrained-library",
        help="folder keeping the pretrained BraTS models; models found there are reused instead of pretraining again",
    )
    parser.add_argument("--device", default="cpu", help="where to fine-tune and pretrain: cpu, cuda, cuda:N")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: all, or one when the machine is busier than its cores)"
    )
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--results", default=str(BENCH / "results"))
    parser.add_argument(
        "--rescore",
        help="comma-separated result folders: their network rows again from the saved "
        "network labelmaps with the current refinement step",
    )
    parser.add_argument("--merge", help="comma-separated result folders of earlier runs: print their tables together")
    args = parser.parse_args(argv)
    if args.merge:
        merge(args.merge.split(","), Path(args.results))
        return 0
    if args.rescore:
        rescore(args.rescore.split(","), Path(args.data), Path(args.results))
        return 0

    import torch

    if args.threads:
        sparse_methods.THREADS = args.threads
        torch.set_num_threads(args.threads)
    elif os.getloadavg()[0] > (os.cpu_count() or 1):
        torch.set_num_threads(1)
    data = Path(args.data)
    if not data.is_dir():
        data = REPO / "Testing" / "Data"
    ks = [int(k) for k in args.k.split(",")]
    methods = args.methods.split(",")
    names = (
        list(SETS[args.set])
        if args.set
        else list(STRUCTURES)
        if args.structures == "all"
        else []
        if args.structures == "none"
        else args.structures.split(",")
    )
    unknown = [n for n in names if structure_labels(n) is None] + [
        m for m in methods if m not in ("network", "rw-range", "interp", "mci", "rw")
    ]
    if unknown:
        parser.error(f"unknown structure or method {', '.join(map(repr, unknown))}; see --help for the names.")
    rows: list[dict] = []
    pre_rows: list[dict] = []
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every measurement, so an interrupted run keeps what it measured
        (results / "sparse.json").write_text(json.dumps(rows + pre_rows, indent=1))

    for name in names:
        folder, _, structure = name.partition(":")
        if not (data / folder).is_dir():
            print(f"<!-- {name}: {data / folder} is absent, skipped -->")
            continue
        image, truth = read_case(data / folder, structure_labels(name))
        for k in ks:
            evaluate(name, image, truth, k, methods, args.time_limit, rows, save, results / "labelmaps", args.device)
    where = (
        torch.cuda.get_device_name(args.device)
        if args.device.startswith("cuda")
        else f"CPU, torch threads {torch.get_num_threads()}"
    )
    if rows:
        print(f"\n### From scratch ({args.time_limit:.0f} s fine-tuning, {where})\n")
        print(table(rows, methods + (["unet-only"] if "network" in methods else [])))
    if args.pretrained:
        if not all((data / case).is_dir() for case in BRATS):
            print("<!-- BraTS cases absent: pretrained setting skipped -->")
        else:
            from sparse_pretrained import pretrained_bench

            baselines = [m for m in methods if m in ("mci", "rw")]
            pretrained_bench(
                data,
                ks,
                args.time_limit,
                args.pretrain_time,
                args.brats_cases.split(","),
                pre_rows,
                baselines,
                save,
                args.device,
                args.pretrained_library,
                results / "labelmaps",
                args.pretrained_region,
            )
            region = args.pretrained_region.replace("_", " ")
            print(f"\n### Pretrained on two BraTS patients, fine-tuned on the third ({region})\n")
            print(table(pre_rows, ["base", "tuned", "tuned-unet-only", *baselines]))
    all_rows = rows + pre_rows
    if all_rows:
        save()
        plot(all_rows, results / "sparse_dice_vs_k.png")
        print(f"\nWrote {results / 'sparse.json'} and {results / 'sparse_dice_vs_k.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
