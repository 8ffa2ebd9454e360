"""Running the workflow the way a user does: a fresh copy of the checkout, Snakemake and DVC as
subprocesses, dry-run plans read back as rule -> job count."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from helpers import ROOT

TINY = ROOT / "tests" / "configs" / "tiny.yaml"

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def copy_workflow(dest: Path) -> Path:
    """A fresh working copy of the workflow (everything a run reads, nothing it wrote)."""
    for name in ("Snakefile", "workflow", "config", "reference", "cromss", "dvc.yaml", ".dvc",
                 ".dvcignore", ".gitignore", "environment.yml"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "tmp"))
        else:
            shutil.copy(src, dest / name)
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Rule name -> number of jobs a dry run plans."""
    out = snakemake(workdir, "-n", *args, "--quiet", "rules").stdout
    table = out.split("job ", 1)[1] if "job " in out else ""
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", table, re.M) if m[0] != "total"}


def with_config(workdir: Path, name: str, base: Path, change) -> Path:
    config = yaml.safe_load(base.read_text())
    change(config)
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path

TINY_ARGS = ("--configfile", str(TINY), "--replace-workflow-config")


def run_tiny_workflow(workdir: Path) -> Path:
    """The whole DAG of the tiny config, run in a fresh git checkout of the workflow (the
    session's ``tiny_run`` fixture, see conftest.py)."""
    workdir.mkdir()
    copy_workflow(workdir)
    run_command("git", "init", "-q", cwd=workdir)
    run_command("git", "add", ".", cwd=workdir)
    run_command("git", "commit", "-qm", "workflow", cwd=workdir)
    snakemake(workdir, "--cores", "2", *TINY_ARGS)
    return workdir


def run_command(*command: str | Path, cwd: Path,
                check: bool = True) -> subprocess.CompletedProcess:
    """Run git, DVC or Snakemake as a user would, with a committer identity and no analytics."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org"}
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed:\n{result.stdout}\n{result.stderr}")
    return result
