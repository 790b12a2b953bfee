"""Atomic file and folder writes: write under a temporary name beside the target, then rename.

A crash or cancel in the middle never leaves a half-written file or folder at the target path. What lands there has
the permissions a newly created file or folder gets (the process's umask), not the temporary one's private mode. A
temporary left behind by a process that was killed (SIGKILL, power loss) is removed by a later write of the same
target once nothing has touched it for :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from SegNetsLib.core.errors import NotWritten


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


STALE_AFTER_S = 24 * 3600.0  # a temporary untouched this long is the leftover of a killed write, not a live one
_RANDOM = re.compile(r"[a-z0-9_]{8}")  # the 8 characters mkstemp and mkdtemp put between prefix and suffix


def _remove_leftovers(target: Path, tail: str) -> None:
    """Remove the temporaries of earlier writes of ``target`` that nothing (no live writer) touched for
    STALE_AFTER_S: the file, or the folder and every file directly in it. A file or folder that only bears such a
    name (readable by others, as a temporary never is on POSIX) is kept. Never raises."""
    prefix, now = _temporary_prefix(target, tail), time.time()
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(tail) and len(name) == len(prefix) + 8 + len(tail)):
                continue
            if not _RANDOM.fullmatch(name[len(prefix) : len(prefix) + 8]):
                continue
            with contextlib.suppress(OSError):
                if os.name == "posix" and entry.stat(follow_symlinks=False).st_mode & 0o077:
                    continue  # mkstemp and mkdtemp make theirs private (0600, 0700): a user's file of that name
                folder = entry.is_dir(follow_symlinks=False)
                inside = (
                    [child.stat(follow_symlinks=False).st_mtime for child in os.scandir(entry.path)] if folder else []
                )
                if now - max([entry.stat(follow_symlinks=False).st_mtime, *inside]) < STALE_AFTER_S:
                    continue
                if folder:
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)


def _temporary_sibling(target: Path, suffix: str = "") -> Path:
    while len(os.fsencode(suffix)) > _SUFFIX_MAX and "." in suffix[1:]:  # keep the last suffixes only
        suffix = suffix[suffix.index(".", 1) :]
    tail = f".partial{suffix}"
    _remove_leftovers(target, tail)
    handle, name = tempfile.mkstemp(prefix=_temporary_prefix(target, tail), suffix=tail, dir=target.parent)
    os.close(handle)
    return Path(name)


@contextlib.contextmanager
def _naming(target: Path) -> Iterator[None]:
    """Raise an OSError of the block as :class:`NotWritten` naming ``target`` (the temporary name means nothing to
    a user)."""
    try:
        yield
    except OSError as error:
        raise NotWritten(target, error.strerror or str(error)) from error


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, keep_suffix: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` when the block succeeds.

    ``keep_suffix`` keeps the target's full suffix (".seg.nrrd", ".nii.gz") on the temporary name,
    since writers such as SimpleITK pick the format from it. An OSError in the block (a full disk) is raised as
    :class:`NotWritten` naming ``target``, not the temporary file.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes) if keep_suffix else ""
    temporary = _temporary_sibling(target, suffix)
    try:
        with _naming(target):
            yield temporary
        os.chmod(temporary, new_mode())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; rename it to ``target`` when the block succeeds.

    Refuses to replace an existing ``target`` (models are never overwritten); an OSError in the block (a full
    disk) is raised as :class:`NotWritten` naming ``target``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise FileExistsError(f"{target} already exists and will not be overwritten")
    _remove_leftovers(target, ".partial")
    temporary = Path(
        tempfile.mkdtemp(prefix=_temporary_prefix(target, ".partial"), suffix=".partial", dir=target.parent)
    )
    try:
        with _naming(target):
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
