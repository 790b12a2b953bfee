"""The interactive loop benchmarked: rounds 1 to N, each adding the slice SegNets suggests.

Round 1: k0 bin-centre slices (bench/sparse.py's protocol), from scratch for ``--time-limit`` s or
``--iterations``. Round r > 1: the user paints the suggested slice fully (the reference on it), the model of
round r - 1 continues warm (``finetune.rounds.finetune_round``) and the result on screen changes where the added
slice reaches (``finetune.update.local_update``; the walkers run only there). Per round: Dice
against the full reference, wall and CPU seconds of the round and of the suggestion, beside Fill between slices
(``mci``) and the random walker (``rw``) given the same slices. At rounds 2 and 3 (k0 -> k0 + 1 -> k0 + 2) the
same previous model also continues with the slice the fixed bin rule would add (of the k + 1 bin centres, the one
farthest from the painted slices) and with a random slice of the structure's extent, so the three choices are
compared on equal terms.

Usage: python bench/sparse_rounds.py --set report [--structures a:b,...] [--rounds 4] [--iterations 300]
       python bench/sparse.py --rounds 4 --set report ...            (the same, from the one entry point)
       python bench/sparse_rounds.py --merge DIR1,DIR2 --results DIR  (tables and plot of runs made apart)
Writes ``rounds.json``, Markdown tables to stdout and ``sparse_rounds.png`` into ``--results``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from sparse_methods import read_case, structure_labels  # noqa: E402
from sparse_sets import SETS  # noqa: E402

from SegNetsLib.core.annotation import bin_centre_slices  # noqa: E402
from SegNetsLib.evaluation.classical import random_walker  # noqa: E402
from SegNetsLib.evaluation.metrics import dice  # noqa: E402
from SegNetsLib.finetune.suggest import DEFAULT_MEASURE, MEASURES  # noqa: E402

COMPARED_ROUNDS = (2, 3)  # the round whose added slice is compared: k0 -> k0 + 1 and k0 + 1 -> k0 + 2


def painted(truth: np.ndarray, slices: list[int]) -> np.ndarray:
    """The annotation a user who paints ``slices`` fully gives: the reference on them, 0 elsewhere."""
    annotation = np.zeros(truth.shape, dtype=np.uint8)
    annotation[slices] = truth[slices]
    return annotation


def bin_rule_slice(truth: np.ndarray, slices: list[int]) -> int | None:
    """The slice the fixed bin rule adds to ``slices``: of the len(slices) + 1 bin centres, the one farthest
    from every painted slice (None when all are painted)."""
    centres = [c for c in bin_centre_slices(truth, len(slices) + 1) if c not in slices]
    return max(centres, key=lambda c: min(abs(c - s) for s in slices)) if centres else None


def random_slice(truth: np.ndarray, slices: list[int], seed: int) -> int | None:
    """A random unpainted slice inside the structure's extent along axis 0 (None when there is none)."""
    present = np.nonzero(truth.any(axis=(1, 2)))[0]
    free = [i for i in range(int(present.min()), int(present.max()) + 1) if i not in slices]
    return int(np.random.default_rng(seed).choice(free)) if free else None


def continue_round(image, truth, slices, previous, options, shown):
    """Continue ``previous`` (FinetuneResult) on ``slices`` painted, the labelmap ``shown`` on screen (the result
    then changes it where the added slice reaches); (result, seconds)."""
    from SegNetsLib.finetune.rounds import finetune_round

    chosen = dataclasses.replace(options, slices={0: sorted(slices)})  # all-background slices count too
    began, cpu = time.monotonic(), time.process_time()
    result = finetune_round(
        image,
        image.with_array(painted(truth, sorted(slices))),
        (previous.net, previous.card),
        chosen,
        measure=None,
        previous=shown,
    )
    result.cpu_seconds = time.process_time() - cpu
    return result, time.monotonic() - began


def structure_rounds(name, image, truth, args, rows, save) -> None:
    """Rounds 1..args.rounds on one structure; rows appended (see the module docstring)."""
    from SegNetsLib.finetune.options import FinetuneOptions
    from SegNetsLib.finetune.rounds import finetune_round, suggest_for

    options = FinetuneOptions(device=args.device, threads=args.threads)
    slices = bin_centre_slices(truth, args.k0)
    if not truth[slices].any():  # one bin-centre slice in a gap of the structure (the MR vertebrae's, k0 = 1)
        print(f"<!-- {name}: its bin-centre slice(s) {slices} hold none of it; left out -->", flush=True)
        return
    began, cpu = time.monotonic(), time.process_time()
    first = FinetuneOptions(time_limit_s=args.time_limit, device=args.device, threads=args.threads)
    if args.iterations:  # a fixed amount of training: the same result on a busy machine as on an idle one
        first = FinetuneOptions(iterations=args.iterations, device=args.device, threads=args.threads)
    result = finetune_round(image, image.with_array(painted(truth, slices)), "unet3d", first, measure=None)
    result.cpu_seconds = time.process_time() - cpu
    seconds = time.monotonic() - began
    seed, shown = zlib.crc32(name.encode()), np.asarray(result.labelmap.array)
    for number in range(1, args.rounds + 1):
        if number > 1:
            suggestion = result.suggestion
            how = "suggested"
            if suggestion is None:  # nothing uncertain: the bin rule's slice instead (marked in the row)
                index, how = bin_rule_slice(truth, slices), "bin rule (no suggestion)"
            else:
                index = suggestion.index
            if index is None:
                print(f"<!-- {name}: no slice left to paint after round {number - 1} -->", flush=True)
                return
            previous, before_shown = result, shown
            result, seconds = continue_round(image, truth, slices + [index], previous, options, shown)
            shown = np.asarray(result.labelmap.array)
            if number in COMPARED_ROUNDS and not args.network_only:
                for choice, other in (
                    ("bin rule", bin_rule_slice(truth, slices)),
                    ("random", random_slice(truth, slices, seed + number)),
                ):
                    if other is None:
                        continue
                    alternative, alt_seconds = continue_round(
                        image, truth, slices + [other], previous, options, before_shown
                    )
                    seen = np.asarray(alternative.labelmap.array)
                    method = f"network ({choice})"
                    rows.append(row(name, number, method, alternative, truth, alt_seconds, slices + [other], seen))
                    rows[-1]["before"] = dice(before_shown > 0, truth)
            slices = slices + [index]
            rows.append(row(name, number, "network", result, truth, seconds, slices, shown, how))
        else:
            rows.append(row(name, number, "network", result, truth, seconds, slices, shown, "bin centres"))
        suggestion_began, cpu = time.monotonic(), time.process_time()
        result.suggestion = suggest_for(result, image, args.measure, args.device)
        rows[-1]["suggestion_seconds"] = time.monotonic() - suggestion_began
        rows[-1]["suggestion_cpu_seconds"] = time.process_time() - cpu
        rows[-1]["suggested"] = None if result.suggestion is None else result.suggestion.index
        network = rows[-1]
        if not args.network_only:
            began = time.monotonic()
            prediction = random_walker(image.array, painted(truth, slices), {0: slices}) > 0
            rows.append(classical_row(name, number, slices, "rw", dice(prediction, truth), time.monotonic() - began))
        print(
            f"<!-- {name} round {number} (k={len(slices)}): network {network['dice']:.3f} in {network['seconds']:.1f} s"
            f" (+{network['suggestion_seconds']:.1f} s suggesting)"
            + ("" if args.network_only else f", rw {rows[-1]['dice']:.3f}")
            + " -->",
            flush=True,
        )
        save()


def classical_row(name, number, slices, method, value, seconds) -> dict:
    return {
        "structure": name,
        "round": number,
        "k": len(slices),
        "method": method,
        "dice": value,
        "seconds": seconds,
        "slices": sorted(int(s) for s in slices),
    }


def fill_between_rounds(cases: dict, rows: list[dict]) -> None:
    """Fill between slices given each round's slices, all in one subprocess after the networks' rounds (ITK's
    import takes longer than an interpolation and would run beside the timed rounds); seconds exclude it.

    cases: structure -> (image, truth)."""
    import subprocess
    import tempfile

    jobs = [r for r in rows if r["method"] == "network" and r["structure"] in cases]
    with tempfile.TemporaryDirectory(prefix="segnets-rounds-mci-") as folder:
        boxes = []
        for index, job in enumerate(jobs):
            annotation = painted(cases[job["structure"]][1], job["slices"])
            coords = np.nonzero(annotation)
            box = tuple(slice(max(0, int(c.min()) - 1), int(c.max()) + 2) for c in coords)
            boxes.append(box)
            np.save(Path(folder) / f"{index}.npy", np.ascontiguousarray(annotation[box].astype(np.uint16)))
        script = (
            "import sys, time, json; from pathlib import Path; "
            "from SegNetsLib.evaluation.classical import _run_mci; f = Path(sys.argv[1]); s = {}\n"
            "_run_mci(f / '0.npy', f / 'warm-up.npy')\n"  # ITK loads the filter on its first call
            "for i in range(int(sys.argv[2])):\n"
            "    t = time.monotonic(); _run_mci(f / f'{i}.npy', f / f'{i}.out.npy'); s[i] = time.monotonic() - t\n"
            "(f / 'seconds.json').write_text(json.dumps(s))"
        )
        subprocess.run(
            [sys.executable, "-c", script, folder, str(len(jobs))],
            check=True,
            cwd=REPO,
            env={**os.environ, "OMP_NUM_THREADS": "1", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"},
        )
        seconds = json.loads((Path(folder) / "seconds.json").read_text())
        for index, (job, box) in enumerate(zip(jobs, boxes)):
            truth = cases[job["structure"]][1]
            out = np.zeros(truth.shape, dtype=bool)
            out[box] = np.load(Path(folder) / f"{index}.out.npy") > 0
            value = dice(out, truth)
            rows.append(classical_row(job["structure"], job["round"], job["slices"], "mci", value, seconds[str(index)]))


def row(name, number, method, result, truth, seconds, slices, shown, how=None) -> dict:
    """A network row: ``dice`` of what the user sees (``shown``: the round's update where the added slice reaches,
    ``finetune.update.local_update``, the previous result elsewhere)."""
    out = {
        "structure": name,
        "round": number,
        "k": len(slices),
        "method": method,
        "dice": dice(shown > 0, truth),
        "unet_dice": dice(result.network_labelmap > 0, truth) if result.network_labelmap is not None else None,
        "seconds": seconds,
        "cpu_seconds": getattr(result, "cpu_seconds", None),
        "load": os.getloadavg()[0],
        "iterations": result.iterations,
        "slices": sorted(int(s) for s in slices),
        "added": int(slices[-1]),
        "notes": list(result.notes),
    }
    if how:
        out["how"] = how
    return out


def mean(values) -> float:
    return float(np.mean(kept)) if (kept := [v for v in values if v is not None]) else float("nan")


def tables(rows: list[dict]) -> str:
    """The round table (mean Dice and seconds per round and method), per-structure Dice, and the comparison."""
    rounds = sorted({r["round"] for r in rows})
    methods = ("network", "mci", "rw")
    names = list(dict.fromkeys(r["structure"] for r in rows))
    complete = [
        n
        for n in names
        if {r["round"] for r in rows if r["structure"] == n and r["method"] == "network"} >= set(rounds)
    ]
    out = [f"Structures with every round: {len(complete)} of {len(names)} (the means are over them).", ""]
    out += [
        "| round | k | "
        + " | ".join(f"{m} Dice / s" for m in methods)
        + " | network CPU s mean / max (+ suggestion) | Dice lower than the round before |",
        "|---|---|" + "---|" * (len(methods) + 2),
    ]
    for number in rounds:
        cells, pick = [], [r for r in rows if r["round"] == number and r["structure"] in complete]
        for m in methods:
            hit = [r for r in pick if r["method"] == m]
            cells.append(f"{mean(r['dice'] for r in hit):.3f} / {mean(r['seconds'] for r in hit):.1f}" if hit else "-")
        network = [r for r in pick if r["method"] == "network"]
        drops = sum(
            1
            for r in network
            for p in rows
            if p["structure"] == r["structure"]
            and p["method"] == "network"
            and p["round"] == number - 1
            and r["dice"] < p["dice"]
        )
        k = network[0]["k"] if network else "-"
        out.append(
            f"| {number} | {k} | "
            + " | ".join(cells)
            + f" | {mean(r.get('cpu_seconds') for r in network):.1f} / {max(r.get('cpu_seconds') or 0 for r in network):.1f}"
            + f" (+{mean(r.get('suggestion_cpu_seconds') for r in network):.1f}) | {drops if number > 1 else '-'} |"
        )
    out += ["", "| structure | " + " | ".join(f"round {n}" for n in rounds) + " |", "|---|" + "---|" * len(rounds)]
    for n in names:
        cells = []
        for number in rounds:
            hit = {r["method"]: r for r in rows if r["structure"] == n and r["round"] == number}
            cells.append(
                " / ".join(f"{hit[m]['dice']:.3f}" for m in methods if m in hit)
                + (f" ({hit['network']['seconds']:.0f} s)" if "network" in hit else "")
            )
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    out += ["", "Cells: network / mci / rw Dice (network seconds).", ""]
    out += [
        "| added slice | "
        + " | ".join(f"round {n}: Dice gain" for n in COMPARED_ROUNDS)
        + " | wins of the suggested slice |",
        "|---|" + "---|" * (len(COMPARED_ROUNDS) + 1),
    ]

    def dice_of(n: str, number: int, method: str) -> float | None:
        hit = [r["dice"] for r in rows if r["structure"] == n and r["round"] == number and r["method"] == method]
        return hit[0] if hit else None

    measured = {r["method"] for r in rows}
    for choice in ("suggested", "bin rule", "random"):
        if choice != "suggested" and f"network ({choice})" not in measured:
            continue  # not measured (--network-only)
        cells, wins = [], []
        for number in COMPARED_ROUNDS:
            gains = []
            for n in names:
                before = dice_of(n, number - 1, "network")
                after = dice_of(n, number, "network" if choice == "suggested" else f"network ({choice})")
                if before is not None and after is not None:
                    gains.append(after - before)
                    if choice != "suggested":
                        wins.append((dice_of(n, number, "network") or 0.0) > after)
            cells.append(f"{mean(gains):+.4f} (n = {len(gains)})")
        out.append(f"| {choice} | " + " | ".join(cells) + f" | {f'{sum(wins)} of {len(wins)}' if wins else '-'} |")
    return "\n".join(out)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_round, by_time) = plt.subplots(1, 2, figsize=(9, 3.6))
    names = list(dict.fromkeys(r["structure"] for r in rows))
    rounds = sorted({r["round"] for r in rows})
    for method in ("network", "mci", "rw"):
        means = [mean(r["dice"] for r in rows if r["method"] == method and r["round"] == n) for n in rounds]
        by_round.plot(rounds, means, marker="o", label=method)
    cumulative = []
    for number in rounds:
        per = []
        for n in names:
            hit = [r for r in rows if r["structure"] == n and r["method"] == "network" and r["round"] <= number]
            if len(hit) == number:
                per.append(sum(r["seconds"] + r.get("suggestion_seconds", 0.0) for r in hit))
        cumulative.append(mean(per))
    means = [mean(r["dice"] for r in rows if r["method"] == "network" and r["round"] == n) for n in rounds]
    by_time.plot(cumulative, means, marker="o", label="network (round 1, 2, ...)")
    by_round.set_xlabel("round (slices painted = round + 1)")
    by_round.set_ylabel("mean Dice")
    by_round.set_xticks(rounds)
    by_time.set_xlabel("seconds since the first click (mean)")
    by_time.set_ylabel("mean Dice")
    for ax in (by_round, by_time):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run(args) -> int:
    """The rounds on every structure asked for; rows saved after every measurement."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    names = list(SETS[args.set]) if args.set else args.structures.split(",")
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    cases: dict = {}

    def save() -> None:
        (results / "rounds.json").write_text(json.dumps(rows, indent=1))

    for name in names:
        folder = Path(args.data) / name.partition(":")[0]
        if not folder.is_dir():
            print(f"<!-- {name}: {folder} is absent, skipped -->")
            continue
        image, truth = read_case(folder, structure_labels(name))
        structure_rounds(name, image, truth, args, rows, save)
        cases[name] = (image, truth)
    if cases and not args.network_only:
        fill_between_rounds(cases, rows)
    save()
    print(tables(rows))
    plot(rows, results / "sparse_rounds.png")
    print(f"\nWrote {results / 'rounds.json'} and {results / 'sparse_rounds.png'}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(SETS), help="bench/sparse_sets.py's tune or report set")
    parser.add_argument(
        "--structures",
        default="ts_ct_full:kidney_right",
        help="comma-separated folder:structure (or brats_pat000N_1:whole_tumour or :tumour_core)",
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds of round 1 (from scratch)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--results", default=str(BENCH / "results" / "rounds"))
    parser.add_argument("--merge", help="comma-separated result folders of earlier runs: their tables and plot")
    parser.add_argument("--k0", type=int, default=2, help="bin-centre slices painted before round 1")
    parser.add_argument(
        "--measure", default=DEFAULT_MEASURE, choices=MEASURES, help="uncertainty measure of the suggestion"
    )
    parser.add_argument("--iterations", type=int, help="round 1 trains this many iterations instead of --time-limit")
    parser.add_argument(
        "--network-only",
        action="store_true",
        help="the suggested slices alone: no compared slices, Fill between slices or random walker (large volumes)",
    )
    args = parser.parse_args(argv)
    if not Path(args.data).is_dir():  # no data collection beside the checkout: the test volumes, as bench/sparse.py
        args.data = str(REPO / "Testing" / "Data")
    unknown = [n for n in args.structures.split(",") if structure_labels(n) is None]
    if unknown and not args.set and not args.merge:
        parser.error(
            f"unknown structure {', '.join(map(repr, unknown))}: folder:structure of bench/sparse_sets.py, or folder:V "
            "(label values V+W...) of a folder of one's own"
        )
    if args.merge:
        rows = [r for folder in args.merge.split(",") for r in json.loads((Path(folder) / "rounds.json").read_text())]
        results = Path(args.results)
        results.mkdir(parents=True, exist_ok=True)
        missing = {r["structure"] for r in rows} - {r["structure"] for r in rows if r["method"] == "mci"}
        if missing:  # a run stopped before its Fill between slices: run it now
            fill_between_rounds(
                {n: read_case(Path(args.data) / n.partition(":")[0], structure_labels(n)) for n in missing}, rows
            )
        (results / "rounds.json").write_text(json.dumps(rows, indent=1))
        print(tables(rows))
        plot(rows, results / "sparse_rounds.png")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
