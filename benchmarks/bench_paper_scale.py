"""Paper-scale benchmark of the data path (issue 22), on CPU, in CPU-seconds.

A synthetic world at the paper's geometry (SSL4EO-S12 v1 layout, 264 px, 4 seasons, 13 S2 + 2 S1
bands, one GeoTIFF per band) with ``--locations`` locations is written and ingested by the
workflow's partitioned ingest (``data.ingest.partitions``: ``store_init``, one
``store_partition`` job per partition, ``store`` publishing) with plain Snakemake or, with
``--slurm``, through the local SLURM cluster of ``workflow/scripts/local_slurm.sh`` with
Snakemake's slurm executor. The same world is then ingested in one partition in this process
and the two stores are compared bit for bit. Reported: CPU-seconds per location (ingest against
reading the same GeoTIFFs plainly with rasterio: the throughput ratio of issue 22), the store's
bytes and files per location, pretraining samples per CPU-second at 256 px crops with their
smoothed targets (``PretrainDataset`` read and cropped by one data-loader worker, then its
batch prepared on the CPU; one thread each), map inference
from ``benchmarks/results/bench_predict.json``, and a projection to the paper's 103,793
locations. Results: ``benchmarks/results/bench_paper_scale.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "bench_paper_scale.json"
PAPER_LOCATIONS = 103_793
SIZE, SEASONS = 264, 4
STORE = "results/data/nol.zarr"
SLURM_SCRIPT = ROOT / "workflow" / "scripts" / "local_slurm.sh"
SLURM_ARGS = ("--profile", "workflow/profiles/slurm", "--slurm-status-command", "squeue",
              "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "2")


def cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def workflow_config(workdir: Path, locations: int, partitions: int) -> Path:
    """The tiny config with the paper's geometry for the NoL world and ``partitions`` ingest jobs
    for the ``nol`` store (the tiles, which this benchmark does not ingest, kept small)."""
    config = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())
    config["data"]["synthetic"].update(pretrain_locations=locations, pretrain_size=SIZE,
                                       tiles={name: 1 for name in config["data"]["synthetic"]
                                              ["tiles"]})
    config["data"]["ingest"] = {"partitions": {"nol": partitions}, "shard_samples": 16}
    path = workdir / "paper_scale.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def copy_workflow(dest: Path) -> Path:
    """A fresh working copy of what a workflow run reads."""
    dest.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "config", "reference", "cromss", "dvc.yaml",
                 "environment.yml"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
    return dest


def run_workflow(workdir: Path, config: Path, slurm: bool) -> dict[str, object]:
    """Snakemake to the ``nol`` store: wall, the jobs' CPU from their benchmark TSVs."""
    args = [sys.executable, "-m", "snakemake", "--configfile", str(config),
            "--replace-workflow-config", STORE]
    args += [*SLURM_ARGS, "--jobs", "4"] if slurm else ["--cores", "2"]
    start, cpu = time.perf_counter(), cpu_children()
    result = subprocess.run(args, cwd=workdir, capture_output=True, text=True)
    wall, local_cpu = time.perf_counter() - start, cpu_children() - cpu
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise SystemExit(f"snakemake failed:\n{output[-6000:]}")
    jobs: dict[str, float] = {}
    for tsv in sorted((workdir / "results" / "benchmarks").rglob("*.tsv")):
        with open(tsv) as handle:
            jobs[str(tsv.relative_to(workdir / "results" / "benchmarks"))] = float(
                next(csv.DictReader(handle, delimiter="\t"))["cpu_time"])
    submitted = output.count("has been submitted with SLURM jobid")
    return {"wall_s": wall, "snakemake_and_local_jobs_cpu_s": local_cpu, "jobs_cpu_s": jobs,
            "slurm_jobs": submitted, "executor": "slurm (local cluster)" if slurm else "local"}


def nol_files(raw: Path) -> list[Path]:
    """The GeoTIFFs the nol store is read from: S1, S2, noisy labels and true maps."""
    return sorted([*(raw / "ssl4eo_s12").rglob("*.tif"),
                   *(raw / "noldo" / "ssl4eo_s12_nol").rglob("*.tif"),
                   *(raw / "truth").rglob("*.tif")])


def plain_read_cpu(files: list[Path]) -> float:
    """CPU of opening and reading every file once with rasterio (one GDAL environment)."""
    import rasterio

    start = time.process_time()
    with rasterio.Env():
        for path in files:
            with rasterio.open(path) as src:
                src.read()
    return time.process_time() - start


def ingest_cpu(raw: Path, out: Path) -> float:
    """CPU of ``ingest('nol')`` in this process, one partition, one reading process (the writer
    thread's CPU included)."""
    from cromss.data.ingest import ingest

    shutil.rmtree(out, ignore_errors=True)
    start = time.process_time()
    ingest("nol", raw, out)
    return time.process_time() - start


def same_stores(a: Path, b: Path) -> bool:
    """Every array and attribute of two stores equal (in blocks of 16 samples), but ``source``
    (the raw root as each run named it)."""
    import zarr

    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    attrs = [{k: v for k, v in g.attrs.asdict().items() if k != "source"} for g in (ga, gb)]
    if sorted(ga.array_keys()) != sorted(gb.array_keys()) or attrs[0] != attrs[1]:
        return False
    for name in ga.array_keys():
        x, y = ga[name], gb[name]
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        for start in range(0, max(x.shape[0], 1), 16):
            if not np.array_equal(x[start:start + 16], y[start:start + 16]):
                return False
    return True


def tree_size(path: Path) -> tuple[int, int]:
    """Bytes and files below ``path``."""
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def loader_rate(store: Path, samples: int) -> dict[str, float]:
    """Pretraining items per CPU-second at the paper's settings (256 px crops of the 264 px
    maps), one thread: a data-loader worker reading and cropping, and the batched preparation
    (smoothed soft targets, scaling, flips, rotation) when it runs on the CPU, not a GPU."""
    import torch
    from snakemake.utils import validate

    from cromss.config import variant_settings
    from cromss.settings import Pretrain
    from cromss.training.datasets import PretrainDataset

    torch.set_num_threads(1)
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    settings = Pretrain.parse(variant_settings(config["pretrain"], "midF-13B"))
    dataset = PretrainDataset(store, range(samples), settings, train=True)
    dataset.prepare(dataset.__getitems__([0]), torch.device("cpu"))  # opened, warm
    batch, read, prepare = 16, float("inf"), float("inf")
    for _ in range(3):
        batches, start = [], time.process_time()
        for first in range(0, samples, batch):
            batches.append(dataset.__getitems__(list(range(first, min(first + batch, samples)))))
        read = min(read, time.process_time() - start)
        start = time.process_time()
        for stored in batches:
            dataset.prepare(stored, torch.device("cpu"))
        prepare = min(prepare, time.process_time() - start)
    return {"crop": settings.crop, "items": samples,
            "cpu_s_per_item": read / samples, "items_per_cpu_s": samples / read,
            "prepare_cpu_s_per_item": prepare / samples,
            "items_per_cpu_s_prepared_on_cpu": samples / (read + prepare)}


def predict_figures() -> dict[str, object]:
    """Map inference from bench_predict's results (wall seconds with its threads): CPU-seconds
    per megapixel as threads x wall, an upper bound (the threads are not always busy)."""
    path = ROOT / "benchmarks" / "results" / "bench_predict.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    tiled = [r for r in data["results"] if r["mode"] == "tiled"]
    largest = max(tiled, key=lambda r: r["megapixels"])
    return {"source": "benchmarks/results/bench_predict.json (not re-measured here)",
            "scene_px": largest["size_px"], "threads": data["threads"],
            "cpu_s_per_megapixel_upper_bound": data["threads"] * largest["seconds"]
            / largest["megapixels"]}


def projection(per_location: dict[str, float], locations: int = PAPER_LOCATIONS
               ) -> dict[str, float]:
    """Linear in the locations: every figure per location times ``locations``."""
    return {"locations": locations,
            "ingest_cpu_hours": per_location["ingest_cpu_s"] * locations / 3600,
            "partitioned_ingest_cpu_hours": per_location["partitioned_ingest_cpu_s"] * locations
            / 3600,
            "store_gigabytes": per_location["store_bytes"] * locations / 1e9,
            "store_files": per_location["store_files"] * locations,
            "raw_gigabytes": per_location["raw_bytes"] * locations / 1e9,
            "raw_files": per_location["raw_files"] * locations,
            "loader_cpu_hours_per_epoch": per_location["loader_cpu_s"] * locations / 3600,
            "prepare_on_cpu_hours_per_epoch": per_location["prepare_on_cpu_s"] * locations / 3600}


def local_slurm(command: str, state: Path) -> None:
    result = subprocess.run(["bash", str(SLURM_SCRIPT), command], capture_output=True, text=True,
                            env={**os.environ, "LOCAL_SLURM_DIR": str(state)}, timeout=180)
    if result.returncode != 0:
        raise SystemExit(f"local_slurm.sh {command} failed:\n{result.stderr}")


def run(locations: int, partitions: int, slurm: bool, scratch: Path) -> dict[str, object]:
    workdir = copy_workflow(scratch / "workflow")
    config = workflow_config(workdir, locations, partitions)
    if slurm:
        local_slurm("start", scratch / "slurm")
    try:
        workflow = run_workflow(workdir, config, slurm)
    finally:
        if slurm:
            local_slurm("stop", scratch / "slurm")
    raw = workdir / "results" / "raw" / "synthetic"
    partitioned = workdir / STORE
    files = nol_files(raw)
    read_s = min(plain_read_cpu(files) for _ in range(2))
    single = scratch / "nol_one_partition.zarr"
    ingest_s = min(ingest_cpu(raw, single) for _ in range(2))
    jobs = workflow["jobs_cpu_s"]
    assert isinstance(jobs, dict)
    ingest_jobs = sum(v for k, v in jobs.items() if k.startswith("store/"))
    store_bytes, store_files = tree_size(partitioned)
    raw_bytes, raw_files = tree_size(raw / "ssl4eo_s12")
    label_bytes, label_files = tree_size(raw / "noldo" / "ssl4eo_s12_nol")
    loader = loader_rate(partitioned, min(locations, 64))
    per_location = {
        "plain_read_cpu_s": read_s / locations, "ingest_cpu_s": ingest_s / locations,
        "partitioned_ingest_cpu_s": ingest_jobs / locations,
        "synthesis_cpu_s": jobs.get("synthetic_world.tsv", float("nan")) / locations,
        "store_bytes": store_bytes / locations, "store_files": store_files / locations,
        "raw_bytes": (raw_bytes + label_bytes) / locations,
        "raw_files": (raw_files + label_files) / locations,
        "loader_cpu_s": loader["cpu_s_per_item"],
        "prepare_on_cpu_s": loader["prepare_cpu_s_per_item"]}
    return {
        "benchmark": "bench_paper_scale", "locations": locations, "partitions": partitions,
        "geometry": {"size_px": SIZE, "seasons": SEASONS, "s2_bands": 13, "s1_bands": 2},
        "machine": platform.platform(), "cpus": os.cpu_count(),
        "load_average": os.getloadavg(), "geotiffs_read": len(files),
        "ingest_over_plain_read_throughput": read_s / ingest_s,
        "partitioned_equals_one_partition": same_stores(partitioned, single),
        "per_location": per_location, "workflow": workflow, "loader": loader,
        "predict": predict_figures(),
        "projection": {"assumptions": (
            "every figure per location measured here times 103,793 (the paper's SSL4EO-S12@NoL "
            "locations): linear scaling, the same synthetic content (real scenes compress "
            "differently), this machine's CPU; the loader's CPU per epoch is one item per "
            "location; the partitioned ingest's jobs include their start-up and imports"),
            **projection(per_location)},
    }


def report(results: dict) -> str:
    per, proj, flow = results["per_location"], results["projection"], results["workflow"]
    lines = [
        f"paper-scale data path: {results['locations']} locations at {SIZE} px, "
        f"{results['partitions']} ingest partitions, executor {flow['executor']}"
        + (f" ({flow['slurm_jobs']} SLURM jobs)" if flow["slurm_jobs"] else ""),
        f"  plain rasterio read: {per['plain_read_cpu_s']:.4f} CPU-s per location "
        f"({results['geotiffs_read']} GeoTIFFs)",
        f"  ingest, one partition, in process: {per['ingest_cpu_s']:.4f} CPU-s per location; "
        f"throughput over the plain read: {results['ingest_over_plain_read_throughput']:.3f}",
        f"  partitioned ingest (the workflow's jobs, start-up included): "
        f"{per['partitioned_ingest_cpu_s']:.4f} CPU-s per location; the store equals the "
        f"one-partition store bit for bit: {results['partitioned_equals_one_partition']}",
        f"  synthesis: {per['synthesis_cpu_s']:.3f} CPU-s per location; workflow wall "
        f"{flow['wall_s']:.0f} s",
        f"  store: {per['store_bytes'] / 1e6:.2f} MB and {per['store_files']:.3f} files per "
        f"location (raw GeoTIFFs: {per['raw_bytes'] / 1e6:.2f} MB, {per['raw_files']:.0f} files)",
        f"  loader: {results['loader']['items_per_cpu_s']:.1f} pretraining items per CPU-second "
        f"per worker ({results['loader']['crop']} px crops, read and cropped; one thread); with "
        f"the batch's targets, scaling and augmentation prepared on the CPU as well: "
        f"{results['loader']['items_per_cpu_s_prepared_on_cpu']:.1f}",
    ]
    if results["predict"]:
        pred = results["predict"]
        lines.append(f"  map inference (from bench_predict.json, not re-measured): at most "
                     f"{pred['cpu_s_per_megapixel_upper_bound']:.0f} CPU-s per megapixel "
                     f"({pred['threads']} threads x wall, {pred['scene_px']} px scene)")
    lines += [
        f"PROJECTION to {proj['locations']:,} locations ({proj['assumptions']}):",
        f"  ingest {proj['ingest_cpu_hours']:.1f} CPU-hours in one process "
        f"({proj['partitioned_ingest_cpu_hours']:.1f} as partitioned jobs), "
        f"store {proj['store_gigabytes']:.0f} GB in {proj['store_files']:,.0f} files, raw "
        f"{proj['raw_gigabytes']:.0f} GB in {proj['raw_files']:,.0f} files, loader "
        f"{proj['loader_cpu_hours_per_epoch']:.1f} CPU-hours per pretraining epoch (plus "
        f"{proj['prepare_on_cpu_hours_per_epoch']:.1f} for the batch preparation where it runs on "
        "the CPU, not a GPU)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locations", type=int, default=256, help="locations of the world")
    parser.add_argument("--partitions", type=int, default=4, help="ingest partitions")
    parser.add_argument("--slurm", action="store_true",
                        help="run the workflow's jobs through the local SLURM cluster")
    parser.add_argument("--out", type=Path, default=OUT, help="results JSON (a .txt beside it)")
    args = parser.parse_args()
    from cromss import allocator

    allocator.keep_freed_memory()  # as every cromss command runs (the in-process ingest)
    with tempfile.TemporaryDirectory(prefix="paper_scale_") as scratch:
        results = run(args.locations, args.partitions, args.slurm, Path(scratch))
    text = report(results)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    args.out.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
