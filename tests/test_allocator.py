"""The process keeps freed memory: repeated batch-sized allocations stop faulting pages in."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cromss import allocator

PROGRAM = """
import resource, sys
import numpy as np
from cromss import allocator
if sys.argv[1] == "keep":
    assert allocator.keep_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):  # a data loader's batches: arrays of a few MB, freed again
    batch = [np.ones(size // 8) for size in (3 << 20, 7 << 20, 1 << 20, 10 << 20, 20 << 20)]
    del batch
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    # measured: about 2,300 page faults (the first batch only) against 92,000-112,000
    assert page_faults("keep") * 10 < page_faults("default")


def test_every_command_keeps_freed_memory(monkeypatch):
    from cromss import cli

    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(True) or True)
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert calls == [True]
