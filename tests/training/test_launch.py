"""Multi-node pretraining: the launcher's command line under bash, and two torchrun "nodes" meeting
at a c10d rendezvous on loopback (gloo) train exactly what one node with as many processes does."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

from cromss.errors import CromssError
from cromss.training.launch import launcher, torchrun_args
from helpers.settings import PRETRAIN_SETTINGS
from helpers.stores import write_store

# SLURM's commands as the job's shell meets them on a cluster: the node list of the allocation,
# and srun, which here prints the command it would start on every node (one argument a line)
FAKE_SLURM = {
    "scontrol": '[ "$1 $2" = "show hostnames" ] && [ "$3" = "gpu[07-08]" ] && '
                'printf "gpu07\\ngpu08\\n"',
    "squeue": '[ "$*" = "-h -j 4242 -o %N" ] && echo "gpu[07-08]"',
    "srun": 'printf "%s\\n" "$@"',
}


def run_in_bash(command: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in FAKE_SLURM.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    environment.update(PATH=f"{bin_dir}:{os.environ['PATH']}", **env)
    # as Snakemake runs a rule's shell command
    return subprocess.run(["bash", "-c", f"set -euo pipefail; {command}"], env=environment,
                          capture_output=True, text=True, timeout=30)


def test_one_node_launchers_are_unchanged():
    assert launcher(1, 1) == "cromss"
    assert launcher(1, 4, gpus=4, cpus=32) == "torchrun --standalone --nproc_per_node=4 -m cromss"


@pytest.mark.parametrize("nodelist", [{"SLURM_JOB_NODELIST": "gpu[07-08]"}, {}])
def test_multi_node_command_runs_torchrun_on_every_node_at_the_first_host(tmp_path, nodelist):
    out = "results/pretrain/a variant; touch pwned"  # the rule quotes its paths ({...:q})
    command = (f"{launcher(2, 4, gpus=4, cpus=32)} pretrain run --out '{out}'")
    result = run_in_bash(command, tmp_path, SLURM_JOB_ID="4242", **nodelist)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
        "--cpus-per-task=32", "--gres=gpu:4", "torchrun", "--nnodes=2", "--nproc_per_node=4",
        "--rdzv_backend=c10d", f"--rdzv_endpoint=gpu07:{20000 + 4242 % 12000}",
        "--rdzv_id=4242", "-m", "cromss", "pretrain", "run", "--out", out]
    assert not (tmp_path / "pwned").exists()


def test_multi_node_command_outside_slurm_fails_before_starting_anything(tmp_path):
    result = run_in_bash(f"{launcher(3, 1)} pretrain run", tmp_path)
    assert result.returncode != 0 and result.stdout == ""
    assert "nodes_per_training_job above 1 needs a SLURM allocation" in result.stderr


@pytest.mark.parametrize("bad", ["2; rm -rf ~", "2 nodes", 2.0, True, 0, -1])
def test_only_counts_enter_the_command(bad):
    with pytest.raises(CromssError, match="nodes_per_training_job must be an integer >= 1"):
        launcher(bad, 1)  # type: ignore[arg-type]
    with pytest.raises(CromssError, match="processes per node"):
        torchrun_args(2, bad if bad != -1 else 0, "host:1", "id")  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_torchrun(args: list[str], store: Path, out: Path, log: Path) -> subprocess.Popen:
    """``cromss pretrain run`` under torchrun, in its own process group (killed as one)."""
    settings = {**PRETRAIN_SETTINGS, "epochs": 2, "val_fraction": 0.2}
    code = "import sys; from cromss.cli import main; sys.exit(main())"
    command = [sys.executable, "-m", "torch.distributed.run", *args, "--no-python",
               sys.executable, "-c", code, "pretrain", "run", "--store", str(store),
               "--settings", json.dumps(settings), "--out", str(out), "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    with log.open("w") as sink:
        return subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_all(processes: list[subprocess.Popen], logs: list[Path], timeout: float) -> None:
    try:
        for process, log in zip(processes, logs):
            assert process.wait(timeout=timeout) == 0, log.read_text()[-3000:]
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.mark.timeout(400)
def test_two_nodes_train_what_one_node_of_two_processes_trains(tmp_path):
    """Two torchrun "nodes" of one process each, meeting at a c10d rendezvous on 127.0.0.1 with
    the launcher's own torchrun arguments, against ``torchrun --standalone --nproc_per_node=2``:
    the same world size, ranks, shards and global batch, so the same weights, bit for bit (the
    gloo all-reduce of two gradients sums the same two tensors in either order)."""
    store = write_store(tmp_path / "nol.zarr", samples=10, size=32)
    endpoint, rdzv_id = f"127.0.0.1:{free_port()}", uuid.uuid4().hex
    nodes = [start_torchrun(torchrun_args(2, 1, endpoint, rdzv_id), store, tmp_path / "multi",
                            tmp_path / f"node{n}.log") for n in range(2)]
    single = start_torchrun(["--standalone", "--nproc_per_node=2"], store, tmp_path / "single",
                            tmp_path / "single.log")
    wait_all([*nodes, single], [tmp_path / "node0.log", tmp_path / "node1.log",
                                tmp_path / "single.log"], timeout=300)
    multi_state = torch.load(tmp_path / "multi" / "model.pt", weights_only=False)
    single_state = torch.load(tmp_path / "single" / "model.pt", weights_only=False)
    weights = [multi_state["state_dict"], single_state["state_dict"]]
    assert weights[0].keys() == weights[1].keys() and len(weights[0]) > 10
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    logs = [[json.loads(line) for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
            for run in ("multi", "single")]
    for record in (*logs[0], *logs[1]):
        record.pop("time_s")
    assert logs[0] == logs[1] and [r["epoch"] for r in logs[0]] == [0, 1]
    assert not (tmp_path / "multi" / "checkpoint.pt").exists()
