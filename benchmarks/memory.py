"""A benchmark process's own resident memory, from ``/proc/self/status`` (Linux)."""

from __future__ import annotations

from pathlib import Path


def resident_bytes(field: str = "VmRSS") -> int:
    """This process's resident memory now (``VmHWM``: its peak; unlike ``ru_maxrss``, not
    inherited from the parent process through exec)."""
    status = Path("/proc/self/status").read_text().splitlines()
    (line,) = [line for line in status if line.startswith(field + ":")]
    return int(line.split()[1]) * 1024
