"""The fuzzing suite's frame (Testing/fuzz/): each reader gets mutated inputs from hypothesis, under a memory limit, in a
folder of its own; every outcome must be a valid result or a one-sentence SegNetsError.

Each fuzzing test runs twice: a short, derandomized run in the default suite and a long, random one under
the ``slow`` marker; the example counts come from ``Testing/helpers/robustness_cases.py`` (the table).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import re
import resource
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fuzz_helpers import keeps_the_promise
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from robustness_cases import examples

MEMORY_HEADROOM = 1024**3  # what one reader may allocate beyond what the test process maps when it starts
LENGTHS = [pytest.param(False, id="short"), pytest.param(True, marks=pytest.mark.slow, id="long")]


@contextlib.contextmanager
def memory_limit(headroom: int = MEMORY_HEADROOM) -> Iterator[None]:
    """An address-space limit of what the process maps now plus ``headroom``: a reader that allocates more
    fails (MemoryError, or a library's allocation error), which breaks the promise and fails the test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    mapped = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize:"))
    limit = mapped + headroom if hard == resource.RLIM_INFINITY else min(hard, mapped + headroom)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def private_temporary_folder(folder: Path) -> Iterator[None]:
    """Python's temporary files go to ``folder`` while the block runs (what a reader leaves there shows)."""
    saved = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = saved


def fuzz(
    key: str,
    long: bool,
    strategy: st.SearchStrategy,
    attempt: Callable[[object, Path], Callable[[], object]],
    workspace: Path,
) -> collections.Counter:
    """Run ``attempt(value, folder)()`` for ``examples(key, long)`` mutated values, each in a new ``folder``
    under ``workspace``, under :func:`memory_limit`, with Python's temporary folder moved to a private one.
    Returns how often each outcome came (``ok`` or the refusal's first words). Fails on any other exception,
    on a write outside ``folder``, or on a temporary file or folder left behind."""
    outcomes: collections.Counter = collections.Counter()
    counter = itertools.count()
    temporary = workspace / "tmp"
    temporary.mkdir()

    @settings(
        max_examples=examples(key, long),
        deadline=None,
        database=None,
        derandomize=not long,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def one(value) -> None:
        folder = workspace / f"example-{next(counter)}"
        folder.mkdir()
        siblings = sorted(p.name for p in workspace.iterdir())
        call = attempt(value, folder)
        with memory_limit(), private_temporary_folder(temporary):
            outcome = keeps_the_promise(call)
        outcomes["ok" if outcome == "ok" else _kind(outcome)] += 1
        assert sorted(p.name for p in workspace.iterdir()) == siblings, "a write outside the example's folder"
        left = sorted(p.name for p in temporary.iterdir())
        assert not left, f"temporary entries left behind: {left}"

    one()
    print(f"\n{key}: {sum(outcomes.values())} mutations -> {dict(outcomes.most_common())}")
    return outcomes


def _kind(message: str) -> str:
    """A short name for a refusal: the message without its file name and numbers, cut to a few words."""
    text = message.split(": ", 1)[-1]
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\([^)]*\)|\[[^\]]*\]|\{[^}]*\}|\S*/\S*|\S*[\d…]\S*", "", text)
    words = text.split()[:5]
    return "refused: " + " ".join(words)


# ----- strategies shared by the readers ------------------------------------------------------------------
def json_values(max_leaves: int = 6) -> st.SearchStrategy:
    """Any JSON value: odd numbers (huge, negative, NaN, infinities), unicode strings, nested lists and objects."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.sampled_from([0, -1, 1, 2**31, 2**63, 10**6, 100000])
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=12)
        | st.sampled_from(["", "\u202e", "é" * 3, "\x00", "../../etc", "a" * 300, "default", "paper"])
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=max_leaves,
    )


def paths_of(data, prefix=()) -> list[tuple]:
    """Every path (tuple of keys / indices) into a JSON structure, the root excluded."""
    found = []
    children = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in children:
        found.append((*prefix, key))
        found.extend(paths_of(value, (*prefix, key)))
    return found


@st.composite
def mutated_json(draw, base: dict, max_mutations: int = 3):
    """``base`` (a JSON object) with 1 to ``max_mutations`` changes: a value replaced, a key deleted, an
    unknown key added, a list emptied or lengthened."""
    import copy

    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_mutations))):
        paths = paths_of(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add", "grow"]))
        if action == "replace":
            parent[last] = draw(json_values())
        elif action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(json_values())
        elif action == "grow" and isinstance(parent[last], list) and parent[last]:
            parent[last] = parent[last] * draw(st.sampled_from([0, 2, 50]))
    return data
