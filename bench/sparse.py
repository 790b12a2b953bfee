"""Sparse-annotation benchmark: fine-tuning vs Slicer's Fill between slices and a seeded random walker.

k fully annotated slices at the centres of k equal bins through each structure's extent along array
axis 0 (the protocol of ../shared/data/README.md). Per structure and k: Dice, 95% Hausdorff distance
(mm, MONAI) and seconds for each method:
- ``network``: ``segnets finetune`` from scratch (3D U-Net sized for the budget, ``--time-limit`` s);
- ``mci``: 3D Slicer's Fill between slices (ITK MorphologicalContourInterpolator, in a subprocess);
- ``rw``: scikit-image's seeded random walker (stand-in for Slicer's Grow from seeds);
- ``--pretrained``: BraTS whole tumour, leave one out: a model trained on the two other patients
  (dense labels, ``--pretrain-time`` s each), then alone (``base``) and fine-tuned from k slices (``tuned``).
``--device`` fine-tunes and pretrains there (e.g. ``cuda`` with ``--time-limit 20``).

Usage: python bench/sparse.py [--structures ts_ct_full:liver,...] [--k 2,3,5] [--time-limit 120]
       [--methods network,mci,rw] [--pretrained] [--device cpu|cuda] [--data ../shared/data] [--results DIR]
       python bench/sparse.py --merge DIR1,DIR2,... --results DIR   (tables and plots of runs made apart)
       python bench/sparse.py --rescore DIR1,... --results DIR   (network rows again from saved labelmaps)
       python bench/sparse.py --rounds 4 [--set report] ...   (the interactive loop: bench/sparse_rounds.py)
Writes Markdown tables to stdout, and ``bench/results/sparse.json`` / ``sparse_dice_vs_k.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from SegNetsLib.core.annotation import bin_centre_slices  # noqa: E402
from SegNetsLib.evaluation.classical import fill_between_slices, random_walker  # noqa: E402
from SegNetsLib.evaluation.metrics import dice, hausdorff95  # noqa: E402

sys.path.insert(0, str(BENCH))
from sparse_sets import REPORT, SETS, TUNE  # noqa: E402

# folder:structure -> label values forming the structure (../shared/data/README.md): the tune set, then the report set
STRUCTURES = {**TUNE, **REPORT}
THREADS: int | None = None  # torch CPU threads of every fine-tune (--threads); None: the pipeline's own choice
BRATS = ("brats_pat0001_1", "brats_pat0002_1", "brats_pat0003_1")
# whole tumour of each BraTS case as a structure of its own (for the classical baselines of the pretrained setting)
BRATS_WHOLE_TUMOUR = {f"{case}:whole_tumour": [1, 2, 3, 4] for case in BRATS}


def metrics(prediction: np.ndarray, truth: np.ndarray, spacing_kji) -> tuple[float, float]:
    """Dice and 95% Hausdorff distance (mm) of two boolean masks [k, j, i]."""
    return dice(prediction, truth), hausdorff95(prediction, truth, spacing_kji)


def read_case(folder: Path, label_values):
    from SegNetsLib.imageio.volumes import read_volume

    image = read_volume(folder / "image.nii.gz")
    labels = read_volume(folder / "label.nii.gz").array
    truth = np.isin(labels, np.atleast_1d(label_values))
    return image, truth


def sparse_annotation(truth: np.ndarray, k: int) -> tuple[np.ndarray, list[int]]:
    slices = bin_centre_slices(truth, k)
    annotation = np.zeros(truth.shape, dtype=np.uint8)
    annotation[slices] = truth[slices]
    return annotation, slices


def run_network(image, annotation, start, time_limit, device):
    from SegNetsLib.finetune.options import FinetuneOptions
    from SegNetsLib.finetune.run import finetune

    options = FinetuneOptions(time_limit_s=time_limit, device=device, threads=THREADS)
    began = time.monotonic()
    result = finetune(image, annotation, start, options)
    return result.labelmap.array > 0, time.monotonic() - began, result


def evaluate(name, image, truth, k, methods, time_limit, rows, save=None, labelmaps: Path | None = None, device="cpu"):
    """Each method on k bin-centre slices of ``truth``; rows appended, the network's labelmaps kept in ``labelmaps``."""
    spacing_kji = image.spacing[::-1]
    annotation, slices = sparse_annotation(truth, k)
    for method in methods:
        began = time.monotonic()
        extra = {}
        if method == "network":
            prediction, seconds, result = run_network(image, image.with_array(annotation), "unet3d", time_limit, device)
            if labelmaps:  # for studying the clean-up and refinement steps without training again
                labelmaps.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(
                    labelmaps / f"{name.replace(':', '_')}_k{k}.npz",
                    network=result.network_labelmap,
                    refined=result.labelmap.array,
                    slices=np.array(slices),
                )
            dice, hd95 = metrics(result.network_labelmap > 0, truth, spacing_kji)
            extra = {"iterations": result.iterations}
            rows.append(
                {
                    "structure": name,
                    "k": k,
                    "method": "unet-only",
                    "dice": dice,
                    "hd95": hd95,
                    "seconds": seconds,
                    **extra,
                }
            )
        elif method == "mci":
            prediction = fill_between_slices(annotation) > 0
            seconds = time.monotonic() - began
        elif method == "rw":
            prediction = random_walker(image.array, annotation, {0: slices}) > 0
            seconds = time.monotonic() - began
            if labelmaps:  # the walker alone, for studying how the pipeline's last steps use it
                labelmaps.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(labelmaps / f"{name.replace(':', '_')}_k{k}_rw.npz", rw=prediction)
        elif method == "rw-range":  # the pipeline's own walker: confined to where the painted slices tell something
            from SegNetsLib.finetune.cleanup import known_box
            from SegNetsLib.finetune.refine import walker_alone

            box = known_box(truth.shape, {0: slices}, annotation, image.spacing)
            prediction = walker_alone(image.array, annotation, {0: slices}, box) > 0
            seconds = time.monotonic() - began
        elif method == "interp":  # the pipeline's own interpolation of the painted outlines, alone
            from SegNetsLib.finetune.interpolate import interpolate_slices

            prediction = interpolate_slices(annotation, {0: slices}, image.spacing) > 0
            seconds = time.monotonic() - began
        else:
            raise SystemExit(f"sparse: error: unknown method {method!r}")
        dice, hd95 = metrics(prediction, truth, spacing_kji)
        rows.append(
            {"structure": name, "k": k, "method": method, "dice": dice, "hd95": hd95, "seconds": seconds, **extra}
        )
        print(f"<!-- {name} k={k} {method}: Dice {dice:.3f}, HD95 {hd95:.1f} mm, {seconds:.0f} s -->", flush=True)
        if save:
            save()


def pretrained_bench(
    data: Path,
    ks,
    time_limit,
    pretrain_time,
    cases,
    rows,
    baseline_methods=("mci", "rw"),
    save=None,
    device="cpu",
    library_folder: str | None = None,
):
    """Leave-one-out on BraTS whole tumour: pretrain on the two others (dense), fine-tune on k slices.

    library_folder: keep the pretrained models there, and reuse one found there instead of pretraining again."""
    import tempfile

    from SegNetsLib.models.library import ModelLibrary

    volumes = {case: read_case(data / case, BRATS_WHOLE_TUMOUR[f"{case}:whole_tumour"]) for case in BRATS}
    library = ModelLibrary(library_folder or tempfile.mkdtemp(prefix="segnets-bench-models-"))
    for held_out in cases:
        start = pretrained_model(library, held_out, volumes, pretrain_time, device)
        image, truth = volumes[held_out]
        spacing_kji = image.spacing[::-1]
        from SegNetsLib.inference.predictor import Predictor
        from SegNetsLib.models.library import load

        began = time.monotonic()
        base_net, base_card = load(start)
        base = Predictor(base_net, base_card, device).predict(image).labelmap.array > 0
        dice, hd95 = metrics(base, truth, spacing_kji)
        for k in ks:
            rows.append(
                {
                    "structure": f"{held_out}:whole_tumour",
                    "k": k,
                    "method": "base",
                    "dice": dice,
                    "hd95": hd95,
                    "seconds": time.monotonic() - began,
                }
            )
        for k in ks:
            annotation, slices = sparse_annotation(truth, k)
            prediction, seconds, result = run_network(image, image.with_array(annotation), start, time_limit, device)
            d, h = metrics(prediction, truth, spacing_kji)
            rows.append(
                {
                    "structure": f"{held_out}:whole_tumour",
                    "k": k,
                    "method": "tuned",
                    "dice": d,
                    "hd95": h,
                    "seconds": seconds,
                    "kept": result.kept,
                    "iterations": result.iterations,
                }
            )
            d2, h2 = metrics(result.network_labelmap > 0, truth, spacing_kji)
            rows.append(
                {
                    "structure": f"{held_out}:whole_tumour",
                    "k": k,
                    "method": "tuned-unet-only",
                    "dice": d2,
                    "hd95": h2,
                    "seconds": seconds,
                    "kept": result.kept,
                    "iterations": result.iterations,
                }
            )
            print(f"<!-- {held_out} k={k}: base {dice:.3f}, tuned {d:.3f} (kept {result.kept}) -->", flush=True)
            if save:
                save()
            evaluate(f"{held_out}:whole_tumour", image, truth, k, baseline_methods, time_limit, rows, save)


def pretrained_model(library, held_out: str, volumes: dict, pretrain_time: float, device: str) -> str:
    """Path of the model pretrained on every BraTS case but ``held_out``: found in ``library``, or trained from
    scratch on one case's dense label and then fine-tuned on the next one's (``pretrain_time`` s each)."""
    from SegNetsLib.card.factory import slug
    from SegNetsLib.finetune.options import FinetuneOptions
    from SegNetsLib.finetune.run import finetune
    from SegNetsLib.finetune.save import save_result

    model_id = slug(f"brats-wt-without-{held_out}")  # the id save_result gives this name
    versions = library.versions(model_id)
    if len(versions) == len(BRATS) - 1:  # complete: one version per pretraining case
        return str(library.find(model_id))
    start = "unet3d"
    for case in (c for c in BRATS if c != held_out):  # dense labels: every axial slice is annotated
        image, truth = volumes[case]
        options = FinetuneOptions(
            time_limit_s=pretrain_time,
            device=device,
            validation=False,
            segment=False,
            slices={0: list(range(truth.shape[0]))},
            scratch_downsample=2,
        )
        result = finetune(image, image.with_array(truth.astype(np.uint8)), start, options)
        start = str(library.find(*save_result(result, model_id, library).split("@")))
    return start


def table(rows, methods) -> str:
    ks = sorted({r["k"] for r in rows})
    lines = [
        "| structure | k | " + " | ".join(f"{m} Dice / HD95 mm / s" for m in methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for name in dict.fromkeys(r["structure"] for r in rows):
        for k in ks:
            cells = []
            for m in methods:
                hit = [r for r in rows if r["structure"] == name and r["k"] == k and r["method"] == m]
                cells.append(f"{hit[0]['dice']:.3f} / {hit[0]['hd95']:.1f} / {hit[0]['seconds']:.0f}" if hit else "-")
            if any(c != "-" for c in cells):
                lines.append(f"| {name} | {k} | " + " | ".join(cells) + " |")
    lines.append(
        "| **mean Dice** | | "
        + " | ".join(
            " ".join(
                f"k={k}: {np.mean([r['dice'] for r in rows if r['k'] == k and r['method'] == m]):.3f}"
                for k in ks
                if any(r["k"] == k and r["method"] == m for r in rows)
            )
            for m in methods
        )
        + " |"
    )
    return "\n".join(lines)


def rescore(folders: list[str], data: Path, results: Path) -> None:
    """The ``network`` and ``unet-only`` rows of earlier runs again, from their saved network labelmaps
    through the current steps after the network (clean-up, then ``refine_result``): for changes after the
    network, without training again. Seconds stay those of the original run; rescored rows are marked."""
    from SegNetsLib.core import annotation as ann
    from SegNetsLib.finetune.calibrate import classical_inputs
    from SegNetsLib.finetune.cleanup import clean_scratch_prediction, known_box
    from SegNetsLib.finetune.refine import refine_result

    rows, cases = [], {}
    for folder in folders:
        for row in json.loads((Path(folder) / "sparse.json").read_text()):
            if row["method"] in ("network", "unet-only"):
                name, k = row["structure"], row["k"]
                if name not in cases:  # one read per structure, not per k
                    cases[name] = read_case(data / name.partition(":")[0], STRUCTURES[name])
                image, truth = cases[name]
                saved = np.load(Path(folder) / "labelmaps" / f"{name.replace(':', '_')}_k{k}.npz")
                annotation, _ = sparse_annotation(truth, k)
                slices = ann.annotated_slices(annotation, 255)
                weight = ann.weight_map(annotation, slices, 255)
                network = saved["network"]  # a fresh array per access of the .npz
                clean_scratch_prediction(network, slices, annotation, weight, image.spacing, [1])
                out = network
                if row["method"] == "network":  # refine_result returns a new labelmap
                    painted = np.where(weight > 0, annotation, 0)
                    box = known_box(network.shape, slices, painted, image.spacing)
                    classical, outline_weight = classical_inputs(image.array, painted, slices, box, image.spacing)
                    out = refine_result(
                        image.array,
                        network,
                        annotation,
                        weight,
                        image.spacing,
                        slices,
                        classical=classical,
                        interpolation_weight=outline_weight,
                    )
                dice, hd95 = metrics(out > 0, truth, image.spacing[::-1])
                print(
                    f"<!-- {name} k={k} {row['method']} rescored: Dice {row['dice']:.3f} -> {dice:.3f} -->", flush=True
                )
                row = {**row, "dice": dice, "hd95": hd95, "rescored": True}
            rows.append(row)
    results.mkdir(parents=True, exist_ok=True)
    (results / "sparse.json").write_text(json.dumps(rows, indent=1))


def with_best_classical(rows: list[dict]) -> list[dict]:
    """``rows`` plus a ``best-classical`` row per structure and k: the better of MCI and RW by Dice."""
    best = {}
    for r in rows:
        if r["method"] in ("mci", "rw"):
            key = (r["structure"], r["k"])
            if key not in best or r["dice"] > best[key]["dice"]:
                best[key] = {**r, "method": "best-classical"}
    return rows + list(best.values())


def merge(folders: list[str], results: Path) -> None:
    """Tables and plot from the ``sparse.json`` of several runs (e.g. baselines and networks run apart)."""
    rows = []
    for folder in folders:
        rows += json.loads((Path(folder) / "sparse.json").read_text())
    order = list(STRUCTURES)  # the protocol's order; other structures (BraTS) after it
    rows = sorted(
        with_best_classical(rows), key=lambda r: order.index(r["structure"]) if r["structure"] in order else len(order)
    )
    pretrained = {r["structure"] for r in rows if r["method"] in ("base", "tuned")}
    scratch = [r for r in rows if r["structure"] not in pretrained and not r["structure"].startswith("brats")]
    tuned = [r for r in rows if r["structure"] in pretrained]
    if scratch:
        print("\n### From scratch\n")
        shown = ["network", "unet-only", "rw-range", "interp", "mci", "rw", "best-classical"]
        print(table(scratch, [m for m in shown if any(r["method"] == m for r in scratch)]))
    if tuned:
        print("\n### Pretrained on two BraTS patients, fine-tuned on the third (whole tumour)\n")
        print(table(tuned, ["base", "tuned", "tuned-unet-only", "mci", "rw", "best-classical"]))
    results.mkdir(parents=True, exist_ok=True)
    (results / "sparse.json").write_text(json.dumps(rows, indent=1))
    if scratch:
        plot(scratch, results / "sparse_dice_vs_k.png")
    if tuned:
        plot(tuned, results / "sparse_pretrained_dice_vs_k.png")
    print(f"\nWrote {results}/sparse.json and the plots")


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(5, 3.6))
    for method in dict.fromkeys(r["method"] for r in rows):
        ks = sorted({r["k"] for r in rows if r["method"] == method})
        means = [np.mean([r["dice"] for r in rows if r["method"] == method and r["k"] == k]) for k in ks]
        ax.plot(ks, means, marker="o", label=method)
    ax.set_xlabel("annotated slices k")
    ax.set_ylabel("mean Dice")
    ax.set_xticks(sorted({r["k"] for r in rows}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


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
        "(or brats_pat000N_1:whole_tumour), or 'all', or 'none'",
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
        global THREADS
        THREADS = args.threads
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
        image, truth = read_case(data / folder, {**STRUCTURES, **BRATS_WHOLE_TUMOUR}[name])
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
            )
            print("\n### Pretrained on two BraTS patients, fine-tuned on the third (whole tumour)\n")
            print(table(pre_rows, ["base", "tuned", "tuned-unet-only", *baselines]))
    all_rows = rows + pre_rows
    if all_rows:
        save()
        plot(all_rows, results / "sparse_dice_vs_k.png")
        print(f"\nWrote {results / 'sparse.json'} and {results / 'sparse_dice_vs_k.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
