"""Keep freed memory in the process: glibc's malloc otherwise maps every block above its dynamic
threshold afresh and gives freed heap tops back to the kernel, so the arrays and tensors a data
loader or a training step allocates (a few MB each, again for every batch) are page-faulted in
and zeroed by the kernel every time. PyTorch's CPU tuning guide advises jemalloc or tcmalloc for
the same reason; these two of glibc's own settings (``mallopt``) get most of it without
preloading a library. Every ``cromss`` command sets them (:func:`cromss.cli.main`);
measured in benchmarks/README.md."""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
"""Blocks up to 32 MiB (glibc's largest threshold on 64-bit) come from the heap."""
TRIM_THRESHOLD = 256 << 20
"""Up to 256 MiB free at the top of the heap stays with the process."""


def keep_freed_memory() -> bool:
    """Set both thresholds for this process and the processes it forks; False where the C
    library is not glibc (nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
