"""The shared training loop under torchrun: a checkpoint that only some processes see (an output
directory on a per-node disk) stops every process with an error, instead of some resuming it."""

from __future__ import annotations

import os
import subprocess
import sys

# each process's own output directory: rank 0's holds a checkpoint, rank 1's none, as on two
# nodes whose output directories are not one shared directory
RESUME = """
import os, sys
from pathlib import Path
import torch
from cromss.errors import CromssError
from cromss.training import distributed
from cromss.training.loop import TrainingLoop
ctx = distributed.setup()
out = Path(sys.argv[1]) / f"node{ctx.rank}"
model = torch.nn.Linear(2, 2)
loop = TrainingLoop(out=out, ctx=ctx, epochs=1, batch_size=1, checkpoint_every=1,
                    sampler=distributed.ResumableSampler(list(range(4)), ctx, 0), model=model,
                    stateful={"model": model})
try:
    loop.resume()
except CromssError as err:  # a file per process: their prints can interleave on one pipe
    (Path(sys.argv[1]) / f"error_rank{ctx.rank}.txt").write_text(str(err))
distributed.teardown(ctx)
"""


def test_a_checkpoint_seen_by_some_processes_only_stops_all(tmp_path):
    (tmp_path / "node0").mkdir()
    (tmp_path / "node0" / "checkpoint.pt").write_bytes(b"not read: the check comes first")
    (tmp_path / "node1").mkdir()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2", "--no-python", sys.executable, "-c", RESUME,
                str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(torchrun, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    errors = [(tmp_path / f"error_rank{rank}.txt").read_text() for rank in (0, 1)]
    assert all("seen by some training processes and not by others" in error
               and "shared by all its nodes" in error for error in errors)
