"""Building hostile inputs for the robustness and fuzzing tests: sparse weights files, subprocess runs under
a memory limit, and the one promise every reader keeps (a SegNetsError with one sentence, or a result)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

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
    assert text.endswith((".", ".)", ".'")) and "\n" not in text and "Traceback" not in text, text
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
