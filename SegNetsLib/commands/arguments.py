"""Checks on the command line's arguments shared by its sub-commands: where results go, and what JSON holds."""

from __future__ import annotations

import argparse
import json
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
