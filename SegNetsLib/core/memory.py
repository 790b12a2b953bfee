"""Memory this process can still allocate: what readers of untrusted files check a declared size against."""

from __future__ import annotations

from pathlib import Path


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # psutil absent or unsupported platform: the fixed bound still applies
        return None


def _address_space_headroom() -> int | None:
    """What RLIMIT_AS still allows this process to map (None when unlimited or unknown)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return max(0, soft - int(line.split()[1]) * 1024)
        return soft
    except (ImportError, OSError, ValueError, IndexError):
        return None


def cgroup_headroom(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """What the memory limit of this process's control group (a container's, cgroup v2 or v1) still allows;
    None when there is no limit or it cannot be read."""
    for limit_file, usage_file in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        try:
            limit = (root / limit_file).read_text().strip()
            usage = int((root / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 2**62:  # unlimited (v1 writes a huge number)
            return None
        return max(0, int(limit) - usage)
    return None


def available_memory_bytes() -> int | None:
    """Memory this process can still allocate: the system's available memory, lowered by a container's memory
    limit and by an address-space limit (``ulimit -v``) when they are set; None when none can be read."""
    sources = (_meminfo_available(), cgroup_headroom(), _address_space_headroom())
    known = [value for value in sources if value is not None]
    return min(known) if known else None
