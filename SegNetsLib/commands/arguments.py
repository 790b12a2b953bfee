"""Checks on the command line's arguments shared by its sub-commands: where results go, and what JSON holds."""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

from SegNetsLib.core.errors import SegNetsError


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether paths ``a`` and ``b`` name one file (also through links or relative paths; either may not exist)."""
    first, second = Path(a), Path(b)
    if first.exists() and second.exists():
        return os.path.samefile(first, second)
    return first.resolve() == second.resolve()


def refuse_overwriting_inputs(output: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None]) -> None:
    """Raise when ``output`` names the same file as one of ``inputs`` ({flag: path or None}): a result never
    replaces what it was made from."""
    for flag, path in inputs.items():
        if path is not None and same_file(output, path):
            raise SegNetsError(f"{output}: writing there would overwrite {flag} {path}; give another output file.")


def refuse_existing(targets: list[Path]) -> None:
    """Raise when one of ``targets`` is already there (an earlier result, or the user's own file of that name): a
    result named by SegNets, not by the user, never replaces a file without ``--overwrite``."""
    existing = [target for target in targets if target.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise SegNetsError(
            f"{existing[0]} already exists{more}; give another output folder, or --overwrite to replace it."
        )


def check_place(path: str | os.PathLike, folder: bool = False) -> None:
    """Raise when ``path`` (a file, or with ``folder`` a folder) cannot be written because a file stands where one
    of its folders, or the folder itself, should be."""
    if folder and Path(path).exists() and not Path(path).is_dir():
        raise SegNetsError(f"{path} is a file, not a folder; give another place to write to.")
    for parent in Path(path).absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise SegNetsError(f"{path}: {parent} is a file, not a folder; give another place to write to.")
            return


def json_object(text: str) -> dict:
    """An argparse type: ``text`` as a JSON object (``{"base_channels": 8}``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object such as '{{\"base_channels\": 8}}'")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    return _integer(text, 1, None, "a positive integer")


def seed(text: str) -> int:
    """A random seed: an integer in 0 .. 2**32 - 1 (NumPy's generators take no negative seed)."""
    return _integer(text, 0, 2**32 - 1, f"a seed in 0 .. {2**32 - 1}")


def _integer(text: str, low: int, high: int | None, what: str) -> int:
    """``text`` as an integer from ``low`` to ``high`` (None: no bound) or argparse's refusal naming ``what``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"{text} is not {what}")
    return value


def seconds(text: str) -> float:
    """An argparse type: "3600", "90m" or "2h" -> seconds, positive and finite."""
    factor = {"s": 1, "m": 60, "h": 3600}.get(text[-1:].lower(), 1)
    number = text[:-1] if text[-1:].lower() in "smh" else text
    try:
        value = float(number) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (seconds, or e.g. 90m, 2h)") from None
    return _positive(value, text, "duration")


def learning_rate(text: str) -> float:
    """An argparse type: a positive, finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    return _positive(value, text, "learning rate")


def _positive(value: float, text: str, what: str) -> float:
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive, finite {what}")
    return value
