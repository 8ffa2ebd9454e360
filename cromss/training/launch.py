"""The command line that starts one pretraining job: the plain CLI, ``torchrun`` in one allocation,
or ``srun`` + ``torchrun`` with a c10d rendezvous across the nodes of a SLURM allocation.

Only integers from the config enter the command, each checked and quoted; the shell code around
them (the first host of the allocation, the rendezvous port) is fixed text of this module.
"""

from __future__ import annotations

import shlex

from cromss.errors import CromssError

# the job id (the guard: no allocation, no multi-node job) and the first host of the allocation;
# SLURM_JOB_NODELIST is set by sbatch but dropped by Snakemake's jobstep executor (it keeps
# SLURM_JOB_ID only), hence squeue as the fallback
NEEDS_SLURM = "resources.nodes_per_training_job above 1 needs a SLURM allocation (the SLURM profile)"
FIRST_HOST = (f': "${{SLURM_JOB_ID:?{NEEDS_SLURM}}}"; '
              'CROMSS_RDZV_HOST=$(scontrol show hostnames '
              '"${SLURM_JOB_NODELIST:-$(squeue -h -j "$SLURM_JOB_ID" -o %N)}" | sed -n 1p)')
# one port per job (20000-31999, below Linux's ephemeral range): two jobs whose first node is the
# same do not collide
ENDPOINT = '"$CROMSS_RDZV_HOST:$((20000 + SLURM_JOB_ID % 12000))"'
JOB_ID = '"$SLURM_JOB_ID"'


def _count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CromssError(f"config: {name} must be an integer >= {minimum}, not {value!r}")
    return value


def torchrun_args(nodes: int, processes: int, endpoint: str, rdzv_id: str) -> list[str]:
    """The arguments of ``torchrun`` for ``nodes`` nodes of ``processes`` processes each meeting
    at the c10d rendezvous ``endpoint`` (host:port) under ``rdzv_id`` (the same on every node)."""
    return [f"--nnodes={_count('resources.nodes_per_training_job', nodes, 1)}",
            f"--nproc_per_node={_count('processes per node', processes, 1)}",
            "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}", f"--rdzv_id={rdzv_id}"]


def launcher(nodes: int, processes: int, gpus: int = 0, cpus: int = 0) -> str:
    """The shell prefix of ``cromss ...`` for a job of ``nodes`` nodes with ``processes`` training
    processes, ``gpus`` GPUs and ``cpus`` CPUs (0 or less: not given) on each node."""
    nodes = _count("resources.nodes_per_training_job", nodes, 1)
    processes = _count("processes per node", processes, 1)
    gpus = _count("resources.gpus_per_training_job", gpus, 0)
    cpus = max(0, _count("cpus_per_task", cpus, -(2**31)))
    if nodes == 1:
        if processes > 1:
            return f"torchrun --standalone --nproc_per_node={processes} -m cromss"
        return "cromss"
    # the step's geometry in full: the jobstep executor strips the allocation's SLURM_* defaults
    srun = ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1",
            "--kill-on-bad-exit=1"]
    srun += [f"--cpus-per-task={cpus}"] * bool(cpus) + [f"--gres=gpu:{gpus}"] * bool(gpus)
    args = torchrun_args(nodes, processes, "@ENDPOINT@", "@JOB_ID@")
    command = " ".join(shlex.quote(arg) for arg in [*srun, "torchrun", *args, "-m", "cromss"])
    command = command.replace("@ENDPOINT@", ENDPOINT).replace("@JOB_ID@", JOB_ID)
    return f"{FIRST_HOST}; {command}"
