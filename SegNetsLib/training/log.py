"""The per-epoch training log: ``log.csv`` and ``log.json`` rewritten each epoch, ``curves.png`` at the end.

One row per epoch: epoch number (1-based), stage, learning rate, mean training loss, validation
Dice per label and their mean, seconds since the start. Rows survive a resume: the trainer
reloads the log and drops rows newer than the checkpoint it resumes from.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from SegNetsLib.core.atomic import atomic_file

CSV_NAME = "log.csv"
JSON_NAME = "log.json"
PLOT_NAME = "curves.png"


def _number(value: float | None) -> float:
    """A value to plot: None (no such label in the validation cases) becomes NaN, a gap in the curve."""
    return math.nan if value is None else float(value)


class TrainingLog:
    """Rows of per-epoch numbers kept in ``folder`` (written by the main rank only)."""

    def __init__(self, folder: str | os.PathLike, label_names: list[str]) -> None:
        self.folder = Path(folder)
        self.label_names = list(label_names)
        self.rows: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}

    @classmethod
    def resume(cls, folder: str | os.PathLike, label_names: list[str], up_to_epoch: int) -> TrainingLog:
        """The log in ``folder`` with rows after ``up_to_epoch`` dropped (an empty log when absent)."""
        log = cls(folder, label_names)
        path = log.folder / JSON_NAME
        if path.is_file():
            saved = json.loads(path.read_text())
            log.rows = [row for row in saved["epochs"] if row["epoch"] <= up_to_epoch]
            log.summary = saved.get("summary", {})
        return log

    def add(self, row: dict[str, Any]) -> None:
        """Append one epoch's row and rewrite the CSV and JSON files."""
        self.rows.append(row)
        self.write()

    def running(self, entry: dict[str, Any]) -> None:
        """Note where the running epoch is (``log.json``'s "running" entry) while it runs."""
        self._write_json({"epochs": self.rows, "summary": self.summary, "running": entry})

    def _write_json(self, content: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.folder / JSON_NAME) as temporary:
            temporary.write_text(json.dumps(content, indent=1))

    def write(self) -> None:
        self._write_json({"epochs": self.rows, "summary": self.summary})
        columns = ["epoch", "stage", "learning_rate", "train_loss"]
        columns += [f"dice_{name}" for name in self.label_names] + ["dice_mean", "seconds"]
        with atomic_file(self.folder / CSV_NAME) as temporary:
            with open(temporary, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
                writer.writeheader()
                for row in self.rows:
                    flat = dict(row)
                    flat.update({f"dice_{name}": value for name, value in row.get("dice", {}).items()})
                    writer.writerow(flat)

    def plot(self) -> Path:
        """Draw the loss and validation Dice curves to ``curves.png`` (matplotlib, Agg) and return its path."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [row["epoch"] for row in self.rows]
        figure, (loss_axes, dice_axes) = plt.subplots(1, 2, figsize=(10, 4))
        loss_axes.plot(epochs, [row["train_loss"] for row in self.rows], marker="o")
        loss_axes.set(xlabel="epoch", ylabel="training loss", title="Loss")
        for name in self.label_names:
            values = [_number(row.get("dice", {}).get(name)) for row in self.rows]
            dice_axes.plot(epochs, values, marker="o", label=name)
        dice_axes.plot(epochs, [_number(row.get("dice_mean")) for row in self.rows], "k--", label="mean")
        dice_axes.set(xlabel="epoch", ylabel="validation Dice", ylim=(0, 1), title="Validation Dice")
        dice_axes.legend(fontsize="small")
        figure.tight_layout()
        path = self.folder / PLOT_NAME
        with atomic_file(path) as temporary:
            figure.savefig(temporary, dpi=100)
        plt.close(figure)
        return path
