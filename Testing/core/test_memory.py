"""The memory a process may still take: a container's control-group limit counts (it was ignored)."""

from __future__ import annotations

import pytest

from SegNetsLib.core.memory import cgroup_headroom


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"memory.max": "1073741824\n", "memory.current": "268435456\n"}, 768 * 1024**2),  # cgroup v2
        ({"memory.max": "max\n", "memory.current": "268435456\n"}, None),
        ({"memory/memory.limit_in_bytes": "536870912", "memory/memory.usage_in_bytes": "1073741824"}, 0),  # v1, over
        ({"memory/memory.limit_in_bytes": str(2**63 - 4096), "memory/memory.usage_in_bytes": "1"}, None),
        ({}, None),
    ],
)
def test_a_control_group_limit_is_read_from_its_files(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_headroom(tmp_path) == expected
