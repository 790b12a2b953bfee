"""The temporaries of writes killed mid-way (SIGKILL: no clean-up runs) are removed by a later write of the same
target once stale, and never while a live process is still writing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from SegNetsLib.core.atomic import atomic_file

ROOT = Path(__file__).resolve().parents[2]
LONG_AGO_S = 3 * 24 * 3600.0  # untouched this long: no live write (core.atomic.STALE_AFTER_S is a day)
WRITER = """
import os, signal, sys
from pathlib import Path
from SegNetsLib.core.atomic import atomic_file, atomic_folder

target, how = Path(sys.argv[1]), sys.argv[2]
with (atomic_folder(target) if how.endswith("folder") else atomic_file(target)) as temporary:
    if how.endswith("folder"):
        (temporary / "weights.safetensors").write_bytes(b"half")
    else:
        temporary.write_bytes(b"half")
    print(temporary, flush=True)
    if how.startswith("kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.readline()  # a live writer: it goes on when told
    (temporary.write_bytes(b"done") if how == "wait" else (temporary / "weights.safetensors").write_bytes(b"done"))
"""


def _writer(target: Path, how: str) -> tuple[subprocess.Popen, Path]:
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target), how], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    return process, Path(process.stdout.readline().strip())


def _age(path: Path, seconds: float) -> None:
    """Set the times of ``path`` and what it holds ``seconds`` back, as if that long had passed."""
    for item in [path, *(path.iterdir() if path.is_dir() else [])]:
        then = time.time() - seconds
        os.utime(item, (then, then))


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
def test_a_killed_writes_leftover_goes_with_a_later_write_of_its_target_and_a_live_write_is_kept(tmp_path):
    target, other = tmp_path / "ct.seg.nrrd", tmp_path / "mr.seg.nrrd"
    killed, old = _writer(target, "kill")
    killed_other, other_old = _writer(other, "kill")
    assert killed.wait(timeout=60) == -signal.SIGKILL and killed_other.wait(timeout=60) == -signal.SIGKILL
    assert old.exists() and old.name.startswith(".ct.seg.nrrd.") and old.name.endswith(".partial.seg.nrrd")
    _age(old, LONG_AGO_S)
    _age(other_old, LONG_AGO_S)
    live, fresh = _writer(target, "wait")
    with atomic_file(target) as temporary:  # a later run writing the same result
        temporary.write_text("result")
    assert target.read_text() == "result" and not old.exists()
    assert fresh.exists() and other_old.exists()  # a live writer's file, and another target's leftover, stay
    live.communicate("\n", timeout=60)
    assert live.returncode == 0 and target.read_bytes() == b"done" and not fresh.exists()


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
def test_a_killed_model_saves_leftover_folder_goes_when_that_version_is_saved(tmp_path):
    from model_helpers import tiny_model

    from SegNetsLib.models.library import ModelLibrary

    library = ModelLibrary(tmp_path / "lib")
    net, card = tiny_model()
    killed, old = _writer(library.root / card.id / card.version, "kill-folder")
    assert killed.wait(timeout=60) == -signal.SIGKILL and (old / "weights.safetensors").exists()
    library.add(net, card)  # a fresh leftover (a save that may still be running) stays
    assert old.exists() and [e.version for e in library.list()] == [card.version]
    library.remove(card.id)
    _age(old, LONG_AGO_S)
    library.add(net, card)
    assert not old.exists() and sorted(p.name for p in old.parent.iterdir()) == [card.version]


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_a_users_own_file_named_like_a_stale_temporary_is_kept(tmp_path):
    """A hidden file of the user's that matches a temporary's name (8 characters, '.partial' and the target's suffix)
    is not a leftover: temporaries are private (0600, 0700), a user's file or folder is not."""
    target = tmp_path / "ct.nii.gz"
    mine = [tmp_path / ".ct.nii.gz.backup01.partial.nii.gz", tmp_path / ".ct.nii.gz.version2.partial.nii.gz"]
    mine[0].write_text("my own copy")
    mine[1].mkdir()
    for path in mine:
        path.chmod(0o644 if path.is_file() else 0o755)
        _age(path, LONG_AGO_S)
    with atomic_file(target) as temporary:
        temporary.write_text("result")
    assert target.read_text() == "result" and mine[0].read_text() == "my own copy" and mine[1].is_dir()
