"""Tables and plots of the sparse-annotation benchmark (bench/sparse.py), and runs made apart merged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sparse_sets import STRUCTURES


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
        regions = sorted({r["structure"].partition(":")[2].replace("_", " ") for r in tuned})
        print(f"\n### Pretrained on two BraTS patients, fine-tuned on the third ({', '.join(regions)})\n")
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
