"""Building hostile inputs for the robustness and fuzzing tests: sparse weights files, subprocess runs under
a memory limit, and the one promise every reader keeps (a SegNetsError with one sentence, or a result)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest

from SegNetsLib.core.errors import SegNetsError

REPO = Path(__file__).resolve().parents[2]
_DTYPE_BYTES = {"F32": 4, "F16": 2, "I64": 8, "U8": 1}


def sparse_safetensors(path: Path, shapes: Mapping[str, tuple[int, ...]], dtype: str = "F32") -> Path:
    """A safetensors file whose header declares ``shapes`` and whose data is a hole (no disk, no memory)."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        count = 1
        for size in shape:
            count *= int(size)
        nbytes = count * _DTYPE_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + offset)
    return path


def one_sentence(error: BaseException) -> str:
    """The error's message, checked to be one clear sentence (ends with '.', no traceback, not too long)."""
    text = str(error)
    assert isinstance(error, SegNetsError), f"{type(error).__name__}: {text}"
    # a traceback's first line, not the word: a fuzzed header value may be "Traceback" itself, and is echoed
    assert text.endswith((".", ".)", ".'")) and "\n" not in text and "Traceback (most recent call" not in text, text
    assert 10 < len(text) < 1200, text
    return text


def keeps_the_promise(call: Callable[[], object]) -> str:
    """Run ``call``: a result is fine, a SegNetsError must be one sentence; anything else fails the test.
    Returns "ok" or the error's message."""
    try:
        call()
    except SegNetsError as error:
        return one_sentence(error)
    return "ok"


HEADER_TEST_VOXELS = np.random.default_rng(0).normal(100, 30, (24, 20, 18)).astype(np.int16)  # [k, j, i]


def written_volume(folder: Path, name: str) -> bytes:
    """The bytes of :data:`HEADER_TEST_VOXELS` at 4 x 4 x 5 mm written uncompressed by SimpleITK as ``name`` in
    ``folder`` (the format follows the suffix): the sound file the header tests change."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(HEADER_TEST_VOXELS)
    image.SetSpacing((4.0, 4.0, 5.0))
    sitk.WriteImage(image, str(folder / name), useCompression=False)
    return (folder / name).read_bytes()


def read_volume_in_child(path: Path, timeout: float = 60) -> str:
    """What ``read_volume`` says of ``path`` in a child process: ``ok`` or the refusal. For files ITK's readers
    crash on or never return from: such a file, unchecked, fails the test instead of stopping the test run."""
    code = (
        "import sys; from SegNetsLib.imageio.volumes import read_volume; from SegNetsLib.core.errors import "
        "SegNetsError\ntry:\n    read_volume(sys.argv[1]); print('ok')\nexcept SegNetsError as e:\n    print(e)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"the reader crashed ({result.returncode}): {result.stderr[-400:]}"
    return result.stdout.strip()


def run_limited(code: str, memory_bytes: int | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python with an address-space limit of ``memory_bytes`` beyond what the
    interpreter has mapped after importing torch (the limit is set inside the child once torch is in)."""
    prologue = textwrap.dedent(
        f"""
        import os, resource, sys
        sys.path.insert(0, {str(REPO)!r})
        import torch
        extra = {memory_bytes!r}
        if extra:
            mapped = next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmSize:'))
            resource.setrlimit(resource.RLIMIT_AS, (mapped + extra, resource.RLIM_INFINITY))
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", prologue + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=str(REPO),
    )


@contextlib.contextmanager
def read_only_folder(folder: Path) -> Iterator[None]:
    """``folder`` made read-only for this process: mode 0555, or (as root, whom modes do not stop) the
    immutable attribute; skips the test where neither is possible."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot make a folder read-only for root here (chattr +i refused)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)


@contextlib.contextmanager
def full_disk(folder: Path, size_kib: int = 256) -> Iterator[None]:
    """``folder`` on a ``size_kib`` KiB tmpfs (a disk that fills up); skips the test where mounting is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip("cannot mount a small tmpfs here to fill a disk")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
