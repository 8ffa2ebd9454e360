"""The DAG side of ``bench_workflow.py``: copies of the workflow, planned jobs, runs from nothing
with their CPU (all processes, and each job's Snakemake benchmark TSV), start-up shares and the
quality checks of a finished main job."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREADS = 2
TORCH_RULES = {"pretrain", "pretrain_s1", "pretrain_s2", "transfer_runs", "ablation_transfer_runs",
               "samples_figure", "predictions_figure"}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(code: str, repeats: int = 3) -> float:
    """Least CPU seconds of a fresh interpreter running ``code`` (start-up + imports)."""
    times = []
    for _ in range(repeats):
        before = children_cpu()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        times.append(children_cpu() - before)
    return min(times)


def workflow_copy(dest: Path) -> Path:
    for name in ("Snakefile", "workflow", "config", "reference", "cromss", "dvc.yaml",
                 "environment.yml", "tests/configs"):
        src, target = ROOT / name, dest / name
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, target)
    return dest


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", *args, "--quiet", "rules"],
                         cwd=workdir, capture_output=True, text=True, check=True).stdout
    table = out.split("job ", 1)[1] if "job " in out else ""
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)
            if m[0] not in ("total", "all")}


def run_dag(workdir: Path, *args: str) -> dict[str, object]:
    """Run a DAG from nothing: wall, CPU of all processes, and the jobs' benchmark TSVs."""
    env = {**os.environ, "PYTHONPATH": str(workdir)}
    before, start = children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(THREADS), *args],
                   cwd=workdir, check=True, capture_output=True, env=env)
    wall, cpu = time.perf_counter() - start, children_cpu() - before
    jobs: dict[str, list[float]] = {}
    for tsv in (workdir / "results/benchmarks").rglob("*.tsv"):
        rule = tsv.relative_to(workdir / "results/benchmarks").parts[0].removesuffix(".tsv")
        with tsv.open() as stream:
            row = next(csv.DictReader(stream, delimiter="\t"))
        jobs.setdefault(rule, []).append(float(row["cpu_time"]))
    return {"wall_s": wall, "cpu_s": cpu, "job_cpu_s": {r: sum(v) for r, v in jobs.items()}}


def import_cpu(jobs: dict[str, int], imports: dict[str, float]) -> float:
    """Estimated start-up CPU of ``jobs``: each job's process imports what its rule needs."""
    return sum(n * imports["torch_s" if rule in TORCH_RULES else "light_s"]
               for rule, n in jobs.items())


def measured_dag(workdir: Path, jobs: dict[str, int], imports: dict[str, float],
                 args: tuple[str, ...]) -> dict[str, object]:
    """A DAG run from nothing and its overhead: all the CPU its processes used that was not a
    job's own work. A job's work is its benchmark TSV's CPU less the imports of its kind of
    process; everything else (the jobs' imports, torchrun, Snakemake itself) is overhead."""
    measured = run_dag(workdir, *args)
    work = sum(measured["job_cpu_s"].values()) - import_cpu(jobs, imports)
    overhead = measured["cpu_s"] - work
    return {**measured, "jobs": jobs, "work_cpu_s": work, "startup_cpu_s": overhead,
            "startup_share": overhead / measured["cpu_s"]}


def startup_share(jobs: dict[str, int], imports: dict[str, float], compute_s: float
                  ) -> dict[str, float]:
    """Estimated start-up CPU of a run of ``jobs`` (each job imports what its rule needs) and its
    share of the run's CPU."""
    heavy = sum(n for rule, n in jobs.items() if rule in TORCH_RULES)
    startup = import_cpu(jobs, imports)
    return {"torch_processes": heavy, "other_processes": sum(jobs.values()) - heavy,
            "startup_cpu_s": startup, "compute_cpu_s": compute_s,
            "share": startup / (startup + compute_s), "target": 0.10}


def quality(results_dir: Path) -> dict[str, object]:
    """(6) CromSS against random init in tables 1-3, and the selection precision against the
    label precision in the last epoch of each pretraining log. Two margins per row: the mIoU
    difference beyond one std of the difference (sqrt(std_row^2 + std_random^2), the issue's
    "beyond one std"), and beyond the sum of both stds (the +-1 std bars do not overlap)."""
    import pandas as pd

    one_std, both_std = {}, {}
    for number in (1, 2, 3):
        table = pd.read_csv(results_dir / f"tables/table{number}.csv")
        table = table[table["mIoU"].notna()].fillna({"mIoU_std": 0})  # our runs, not the paper's
        for (modality, setting), rows in table.groupby(["input", "setting"]):
            random = rows[rows["weights"] == "random"].iloc[0]
            for _, row in rows[rows["weights"] != "random"].iterrows():
                key = f"table{number}/{modality}/{setting}/{row['weights']}"
                gain = row["mIoU"] - random["mIoU"]
                one_std[key] = round(gain - math.hypot(row["mIoU_std"], random["mIoU_std"]), 3)
                both_std[key] = round(gain - row["mIoU_std"] - random["mIoU_std"], 3)
    precision = {}
    for log in sorted((results_dir / "pretrain").glob("*/log.jsonl")):
        last = json.loads(log.read_text().splitlines()[-1])
        if last.get("label_precision") is not None:
            precision[log.parent.name] = {k: last.get(k) for k in (
                "label_precision", "selection_precision_s1", "selection_precision_s2")}
    return {"mIoU_margin_beyond_one_std": one_std,
            "all_beyond_one_std": all(m > 0 for m in one_std.values()),
            "mIoU_margin_beyond_both_std": both_std,
            "all_beyond_both_std": all(m > 0 for m in both_std.values()),
            "precision": precision}
