"""Atomic file and folder writes: write under a temporary name beside the target, then rename.

A crash or cancel in the middle never leaves a half-written file or folder at the target path. What lands there has
the permissions a newly created file or folder gets (the process's umask), not the temporary one's private mode.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def new_mode(folder: bool = False) -> int:
    """The permissions a newly created file (or ``folder``) gets: 0o666 (0o777) less the process's umask."""
    return (0o777 if folder else 0o666) & ~_umask()


def _umask() -> int:
    """The process's file mode creation mask (read without changing it where Linux tells it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems
_SUFFIX_MAX = 64  # the dot-suffixes a temporary file keeps (".seg.nrrd", ".nii.gz"), at most


def _temporary_prefix(target: Path, tail: str) -> str:
    """'.' and as much of ``target``'s name as fits beside ``tail`` and mkstemp's 8 random characters."""
    room = max(NAME_MAX - len(os.fsencode(tail)) - 8 - 2, 0)
    return f".{os.fsencode(target.name)[:room].decode(errors='ignore')}."


def _temporary_sibling(target: Path, suffix: str = "") -> Path:
    while len(os.fsencode(suffix)) > _SUFFIX_MAX and "." in suffix[1:]:  # keep the last suffixes only
        suffix = suffix[suffix.index(".", 1) :]
    tail = f".partial{suffix}"
    handle, name = tempfile.mkstemp(prefix=_temporary_prefix(target, tail), suffix=tail, dir=target.parent)
    os.close(handle)
    return Path(name)


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, keep_suffix: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` when the block succeeds.

    ``keep_suffix`` keeps the target's full suffix (".seg.nrrd", ".nii.gz") on the temporary name,
    since writers such as SimpleITK pick the format from it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes) if keep_suffix else ""
    temporary = _temporary_sibling(target, suffix)
    try:
        yield temporary
        os.chmod(temporary, new_mode())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; rename it to ``target`` when the block succeeds.

    Refuses to replace an existing ``target`` (models are never overwritten).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise FileExistsError(f"{target} already exists and will not be overwritten")
    temporary = Path(
        tempfile.mkdtemp(prefix=_temporary_prefix(target, ".partial"), suffix=".partial", dir=target.parent)
    )
    try:
        yield temporary
        os.chmod(temporary, new_mode(folder=True))
        os.rename(temporary, target)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


def writable_folder(folder: str | os.PathLike) -> Path:
    """Make ``folder`` (and its parents) and check that a file can be created in it, before any long work whose
    results go there; raises OSError (a file in the way, a read-only disk, no permission)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle, probe = tempfile.mkstemp(prefix=".segnets-probe-", dir=folder)
    os.close(handle)
    os.unlink(probe)
    return folder
