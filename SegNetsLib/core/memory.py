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


def available_memory_bytes() -> int | None:
    """Memory this process can still allocate: the system's available memory, lowered by an address-space
    limit (``ulimit -v``) when one is set; None when neither can be read."""
    known = [value for value in (_meminfo_available(), _address_space_headroom()) if value is not None]
    return min(known) if known else None
