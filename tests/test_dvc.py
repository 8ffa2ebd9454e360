"""The DVC sharing story on a toy workflow: run, push, clone, pull, and Snakemake plans nothing.

The toy mirrors the real layout: an untracked raw input, a directory store, a model and a table,
all DVC outputs of one ``workflow`` stage whose command is Snakemake, plus DVC metrics and plots.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PULL_SCRIPT = ROOT / "workflow" / "scripts" / "dvc_pull.sh"

SNAKEFILE = """
rule all:
    default_target: True
    input: "results/tables/t.csv", "results/metrics/summary.json"

rule raw:
    output: "results/raw/a.txt"
    shell: "echo raw > {output}"

rule store:
    input: "results/raw/a.txt"
    output: directory("results/data/s.zarr")
    shell: "mkdir -p {output} && cat {input} > {output}/x"

rule model:
    input: "results/data/s.zarr"
    output: "results/pretrain/m.txt"
    params: lr=config["lr"]
    shell: "cat {input}/x > {output} && echo {params.lr} >> {output}"

rule table:
    input: "results/pretrain/m.txt"
    output:
        "results/tables/t.csv",
        "results/metrics/summary.json",
        directory("results/metrics/pretrain"),
    params: seeds=config["seeds"]
    shell:
        "wc -c < {input} > {output[0]} && echo '{{\\"mIoU\\": 42.5}}' > {output[1]} && "
        "mkdir -p {output[2]} && "
        "printf 'epoch,val_loss\\\\n0,2.0\\\\n1,1.5\\\\n' > {output[2]}/v.csv"
"""

DVC_YAML = """
stages:
  workflow:
    cmd: snakemake --cores 1
    deps: [Snakefile, config.yaml]
    outs:
      - results/data: {persist: true}
      - results/pretrain: {persist: true}
      - results/tables: {persist: true}
      - results/metrics/pretrain: {persist: true}
    metrics:
      - results/metrics/summary.json: {persist: true}
plots:
  - results/metrics/pretrain:
      x: epoch
      y: [val_loss]
"""


def run(*command: str | Path, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org"}
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed:\n{result.stdout}\n{result.stderr}")
    return result


def planned_jobs(repo: Path, *options: str) -> str:
    """Snakemake's dry-run summary (``Nothing to be done`` when it plans nothing)."""
    result = run("snakemake", "-n", *options, cwd=repo)
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An origin repository whose workflow ran and was pushed, and its remote."""
    if not shutil.which("dvc") or not shutil.which("snakemake"):
        pytest.skip("dvc and snakemake are needed")
    base = tmp_path_factory.mktemp("dvc")
    origin, remote = base / "origin", base / "remote"
    origin.mkdir()
    (origin / "Snakefile").write_text('configfile: "config.yaml"\n' + SNAKEFILE)
    (origin / "config.yaml").write_text("lr: 0.1\nseeds: 2\n")
    (origin / "dvc.yaml").write_text(DVC_YAML)
    (origin / ".gitignore").write_text("/results/*\n/.snakemake/\n")
    scripts = origin / "workflow" / "scripts"
    scripts.mkdir(parents=True)
    shutil.copy2(PULL_SCRIPT, scripts / PULL_SCRIPT.name)
    run("git", "init", "-q", cwd=origin)
    run("dvc", "init", "-q", cwd=origin)
    run("dvc", "remote", "add", "-d", "storage", remote, cwd=origin)
    run("dvc", "repro", "-q", cwd=origin)
    run("dvc", "push", "-q", cwd=origin)
    run("git", "add", "-A", cwd=origin)
    run("git", "commit", "-qm", "results", cwd=origin)
    return origin, remote


@pytest.fixture()
def clone(shared: tuple[Path, Path], tmp_path: Path) -> Path:
    origin, _ = shared
    target = tmp_path / "clone"
    run("git", "clone", "-q", origin, target, cwd=tmp_path)
    return target


def make_stale(repo: Path) -> None:
    """The worst checkout order: the store looks newer than everything made from it."""
    future = (repo / "results" / "tables" / "t.csv").stat().st_mtime + 100
    stamp = repo / "results" / "data" / "s.zarr" / ".snakemake_timestamp"
    os.utime(stamp, (future, future))


def test_origin_records_every_output(shared: tuple[Path, Path]) -> None:
    origin, remote = shared
    lock = (origin / "dvc.lock").read_text()
    for path in ("results/data", "results/pretrain", "results/tables",
                 "results/metrics/summary.json"):
        assert f"path: {path}\n" in lock
    assert "results/raw" not in lock
    assert any(remote.rglob("*")), "dvc push sent nothing"


def test_pull_then_fix_plans_nothing(clone: Path) -> None:
    run("dvc", "pull", "-q", cwd=clone)
    assert (clone / "results" / "pretrain" / "m.txt").read_text() == "raw\n0.1\n"
    assert not (clone / "results" / "raw").exists()
    make_stale(clone)
    assert "Nothing to be done" not in planned_jobs(clone)

    run("bash", "workflow/scripts/dvc_pull.sh", cwd=clone)

    assert "Nothing to be done" in planned_jobs(clone)
    assert run("dvc", "status", "-q", cwd=clone, check=False).returncode == 0


def test_after_fix_a_changed_param_reruns_only_its_downstream(clone: Path) -> None:
    run("bash", "workflow/scripts/dvc_pull.sh", cwd=clone)
    plan = planned_jobs(clone, "--config", "seeds=3")
    jobs = {line.split()[0] for line in plan.splitlines()
            if line[:1].isalpha() and line.split()[-1:] == ["1"]}
    assert jobs == {"table", "all"}


def test_pull_refuses_to_trust_results_of_other_code(clone: Path) -> None:
    (clone / "config.yaml").write_text("lr: 0.2\nseeds: 2\n")
    result = run("bash", "workflow/scripts/dvc_pull.sh", cwd=clone, check=False)
    assert result.returncode == 1
    assert "differs from dvc.lock" in result.stderr
    assert (clone / "results" / "pretrain" / "m.txt").exists()


def test_metrics_and_plots_show_after_pull(clone: Path) -> None:
    run("dvc", "pull", "-q", cwd=clone)
    metrics = json.loads(run("dvc", "metrics", "show", "--json", cwd=clone).stdout)
    (workspace,) = metrics.values()  # keyed "" (the workspace) in DVC 3
    values = workspace["data"]["results/metrics/summary.json"]["data"]
    assert values == {"mIoU": 42.5}
    run("dvc", "plots", "show", "-o", "plots", cwd=clone)
    assert "val_loss" in (clone / "plots" / "index.html").read_text()
