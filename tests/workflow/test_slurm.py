"""The workflow through a real one-node SLURM cluster: Debian's slurm-wlm and munge, started and
stopped by workflow/scripts/local_slurm.sh, and the profile workflow/profiles/slurm with the local
site values on the command line. The tiny config's DAG to table 3 runs there as SLURM jobs, its
pretraining as two DDP processes under torchrun in one allocation, and every result equals the
local run of the same config (the session's ``finished_tiny_run``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT
from helpers.workflow import SNAKEMAKE, TINY_ARGS, copy_workflow

SCRIPT = ROOT / "workflow" / "scripts" / "local_slurm.sh"
SLURM_TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue")
MISSING = [tool for tool in SLURM_TOOLS if shutil.which(tool) is None]
if MISSING:
    pytest.skip(f"SLURM is not installed here (no {', '.join(MISSING)}; "
                "apt-get install slurm-wlm munge)", allow_module_level=True)

TARGET = "results/tables/table3.csv"
# the site values of the local cluster: accounting is off, so squeue, and no account
SITE = ("--slurm-status-command", "squeue", "--slurm-no-account")
# the test's own settings: a first status check after 2 s (not 40) and the logs of jobs that
# succeeded kept, to check them
TEST = ("--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs")

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm"), pytest.mark.timeout(2400)]


def local_slurm(command: str, state: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), command], env={**os.environ,
                          "LOCAL_SLURM_DIR": str(state)}, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A running one-node cluster, stopped afterwards whatever happened."""
    state = tmp_path_factory.mktemp("slurm")
    try:
        started = local_slurm("start", state)
        assert started.returncode == 0, started.stderr
        yield state
    finally:
        stopped = local_slurm("stop", state)
        assert stopped.returncode == 0, stopped.stderr


@pytest.fixture
def slurm_run(cluster: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The tiny config's DAG to table 3 through the SLURM profile: the run and its output."""
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm_run"))
    result = subprocess.run(
        [*SNAKEMAKE, "--profile", "workflow/profiles/slurm", *SITE, *TEST, *TINY_ARGS, TARGET],
        cwd=workdir, capture_output=True, text=True, timeout=2000)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return workdir, output


def check_the_cluster_runs_a_batch_job(cluster: Path, tmp_path: Path):
    again = local_slurm("start", cluster)  # idempotent: the running daemons are kept
    assert again.returncode == 0 and "cluster up" in again.stderr
    submitted = subprocess.run(["sbatch", "--parsable", "--wait", "-o", str(tmp_path / "%j.out"),
                                "--wrap", "echo ran on $SLURM_JOB_NODELIST"],
                               capture_output=True, text=True, timeout=120)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()
    assert (tmp_path / f"{job}.out").read_text().startswith("ran on ")
    assert job_states()[job] == "COMPLETED"


def job_states() -> dict[str, str]:
    """SLURM job id -> state of every job the controller still knows (MinJobAge is a day)."""
    out = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i %T"], capture_output=True,
                         text=True, check=True).stdout
    return dict(line.split() for line in out.splitlines())


def check_every_job_ran_as_a_slurm_job(slurm_run):
    workdir, output = slurm_run
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", output))
    done = re.findall(r"(\d+) of (\d+) steps \(100%\) done", output)
    assert done and len(submitted) == int(done[-1][1]), output[-3000:]
    states = job_states()
    assert all(states[slurm_id] == "COMPLETED" for slurm_id in submitted.values())
    logs = {p.stem for p in (workdir / ".snakemake/slurm_logs").rglob("*.log")}
    assert set(submitted.values()) <= logs
    assert "localrule" not in output  # nothing ran on the submitting host


def check_pretraining_ran_two_ddp_processes_in_one_allocation(slurm_run):
    workdir, _ = slurm_run
    jobs = [p.read_text() for p in (workdir / ".snakemake/slurm_logs").rglob("*.log")]
    pretraining = [job for job in jobs if " pretrain run --store " in job]
    assert pretraining  # one SLURM job per variant, whose one step ran torchrun:
    for job in pretraining:
        assert "torchrun --standalone --nproc_per_node=2 -m cromss pretrain run" in job
        assert "--threads 1" in job  # the job's 2 CPUs shared by its 2 processes
    logs = [p.read_text() for p in (workdir / "results/logs").rglob("*.log")]
    assert sum("in 2 process(es) on cpu" in log for log in logs) == len(pretraining)


def comparable(path: Path) -> object:
    """A result file's content without its run times and provenance (a published STAC item's
    datetime is the time it was written; its pretrained source names the git commit, which only
    the local run's working copy has)."""
    if path.suffix == ".jsonl":
        return [{k: v for k, v in json.loads(line).items() if k != "time_s"}
                for line in path.read_text().splitlines()]
    if path.name == "item.json":
        item = json.loads(path.read_text())
        for key in ("datetime", "mlm:pretrained_source"):
            item["properties"].pop(key)
        return item
    return path.read_text()


def check_results_equal_the_local_run(slurm_run, local_run: Path):
    workdir, _ = slurm_run
    # the results, not logs, benchmarks, raw inputs or hidden bookkeeping (e.g. a run's
    # .complete/ key, which records its inputs' modification times)
    skipped = {"logs", "benchmarks", "raw"}
    compared = [p for p in (workdir / "results").rglob("*")
                if p.suffix in (".csv", ".json", ".jsonl")
                and not any(part in skipped or part.startswith(".")
                            for part in p.relative_to(workdir).parts)]
    assert workdir / TARGET in compared and any("pretrain" in p.parts for p in compared)
    for path in compared:
        relative = path.relative_to(workdir)
        assert comparable(path) == comparable(local_run / relative), relative


def test_the_tiny_dag_runs_through_slurm(cluster: Path, slurm_run, tmp_path: Path,
                                        request: pytest.FixtureRequest):
    """One test, so one cluster: its daemons own the system-wide slurm.conf link while they run
    (a fixture shared by several tests may be set up again on another xdist worker). The local
    run is asked for last (a session fixture in the arguments would be set up first): another
    worker runs it while this one runs the DAG through SLURM."""
    check_the_cluster_runs_a_batch_job(cluster, tmp_path)
    check_every_job_ran_as_a_slurm_job(slurm_run)
    check_pretraining_ran_two_ddp_processes_in_one_allocation(slurm_run)
    check_results_equal_the_local_run(slurm_run, request.getfixturevalue("finished_tiny_run"))
