"""Benchmark of the workflow's speed on CPU, in one run on one machine: every figure is a ratio of
two things measured in the same run, so a loaded machine slows both sides alike.

(1) start-up share: CPU of process start-up and imports over the CPU of the main job. Measured:
    the CPU of a process that imports the model stack (torch + smp + the training modules) and of
    one that imports a report or data module, and the job count of each kind in the default DAG
    (``snakemake -n``). The main job's compute is estimated from the epochs measured in (2) and
    the ingest in (4); ``--main-job`` measures it instead (a real run of the default DAG).
(2) epoch overhead: a pretraining epoch (offline default, variant midF, with its validation and
    its share of the checkpoints written every ``checkpoint_every`` epochs) over the compute of its
    training steps (the same batches, forward + backward + Adam, timed alone); the same for a
    fine-tuning epoch (dw, S2, random init, fine-tuned, and frozen). Target: at most 1.25.
(3) loader: pretraining patches per second per worker from the Zarr store (``PretrainDataset``)
    over a reference-style loader (per sample: read and decode its arrays, the smoothing prior
    with ``scipy.ndimage.gaussian_filter`` on the full maps, soft labels, crop). Target >= 4.
(4) ingest: GeoTIFF -> Zarr throughput of the ``nol`` store over the throughput of reading the
    same GeoTIFFs with rasterio. Target >= 0.5.
(5) wall: the tiny end-to-end DAG (``tests/configs/tiny.yaml``) from nothing, with its CPU;
    target under 90 s. ``--main-job`` also runs the default DAG (target 10 minutes).

Run: ``python benchmarks/bench_workflow.py [--main-job] [--skip-tiny] [--dag-only]``; writes
``benchmarks/results/bench_workflow.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import dataclasses
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from snakemake.utils import validate
from torch.utils.data import DataLoader

from cromss import allocator, models
from cromss.atomic import atomic_path
from cromss.config import FINETUNE_MATRIX, variant_settings
from cromss.data.layouts import rasters
from cromss.data.store import open_array, open_arrays
from cromss.data.ingest import ingest
from cromss.data.synthetic import synthesise
from cromss.settings import Finetune, Pretrain
from cromss.smoothing import reference_smoothing_prior, soft_labels
from cromss.training import datasets, distributed, finetune, pretrain
from cromss.training.datasets import PretrainDataset, SegmentationDataset, model_input
from cromss.weights import files
from workflow_dag import (measured_dag, planned_jobs, process_cpu, quality, startup_share,
                          workflow_copy)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "bench_workflow.json"
THREADS = 2
IMPORTS = {
    "torch_s": "import cromss.training.runs, cromss.training.finetune, cromss.training.pretrain",
    "light_s": "import cromss.report.figures, cromss.report.tables, cromss.data.inspect",
}
"""What a process imports: a training job, a table/figure job."""


def load_config(path: Path) -> dict:
    config = yaml.safe_load(path.read_text())
    validate(config, str(ROOT / "workflow/schemas/config.schema.yaml"))  # fills the defaults
    return config


# -- (4) ingest ----------------------------------------------------------------------------------

def ingest_ratio(raw: Path, out: Path, workers: int = THREADS) -> dict[str, float]:
    """Ingest ``nol`` into ``out`` with ``workers`` reading processes, as the workflow's rule runs
    it (the GeoTIFFs read are listed by a first run with one), then read those files alone."""
    opened: list[Path] = []
    reader = rasters._open  # every layout reads its GeoTIFFs through it

    def recording(path, *args, **kwargs):
        opened.append(Path(path))
        return reader(path, *args, **kwargs)

    rasters._open = recording
    try:
        ingest("nol", raw, out.with_name("listing.zarr"))
    finally:
        rasters._open = reader
    start, cpu = time.perf_counter(), _cpu_with_children()
    ingest("nol", raw, out, workers=workers)
    ingest_s, cpu_s = time.perf_counter() - start, _cpu_with_children() - cpu
    import rasterio

    opened = list(dict.fromkeys(opened))  # each file once
    start, size = time.perf_counter(), 0
    for path in opened:
        with rasterio.open(path) as src:
            size += src.read().nbytes
    read_s = time.perf_counter() - start
    return {"files": len(opened), "megabytes": size / 1e6, "raw_read_s": read_s,
            "ingest_s": ingest_s, "ingest_workers": workers, "cpu_s": cpu_s,
            "ratio": read_s / ingest_s,
            "target": 0.5}


def _cpu_with_children() -> float:
    import resource

    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                resource.getrusage(resource.RUSAGE_CHILDREN)))


# -- (3) loader ----------------------------------------------------------------------------------

def reference_items(dataset: PretrainDataset, arrays: dict, ks: list[int]
                    ) -> list[dict[str, np.ndarray]]:
    """The reference loader's way: one sample at a time, each array read alone (``arrays``: the
    store's arrays, opened by the caller), scipy smoothing on the full maps."""
    items = []
    for k in ks:
        index, season, transform = dataset._draw(dataset.indices[k])
        labels = np.asarray(arrays["label"][index])  # one read per array and sample
        prior = reference_smoothing_prior(labels, season, dataset.num_classes)
        soft = soft_labels(labels[season], prior, dataset.num_classes)
        item = {"s1": model_input(np.asarray(arrays["s1"][index, season]), "s1", 2),
                "s2": model_input(np.asarray(arrays["s2"][index, season]), "s2",
                                  dataset.s2_bands),
                "label": labels[season].astype(np.int64), "soft": soft.astype(np.float32)}
        items.append({key: transform(value) for key, value in item.items()})
    return items


def loader_ratio(nol: Path, settings: Pretrain, repeats: int = 5) -> dict[str, float]:
    """Ours against the reference-style loader reading with zarr-python's own codec pipeline
    (``ratio``, the target) and with zarrs, as ours reads (``ratio_same_reader``)."""
    dataset = PretrainDataset(nol, range(_samples(nol)), settings, train=True)
    group = open_arrays(nol)
    readers = {"zarr": {name: group[name] for name in ("label", "s1", "s2")},
               "zarrs": {name: open_array(group, name) for name in ("label", "s1", "s2")}}
    batches = [list(range(i, min(i + settings.batch_size, len(dataset))))
               for i in range(0, len(dataset), settings.batch_size)]
    times: dict[str, list[float]] = {"ours": [], "zarr": [], "zarrs": []}
    cpu = torch.device("cpu")
    for _ in range(repeats):  # interleaved: each side sees the same machine load
        for name in times:
            start = time.perf_counter()
            for ks in batches:
                if name == "ours":  # read and crop, then targets etc. batched (on the CPU here)
                    dataset.prepare(dataset.__getitems__(ks), cpu)
                else:
                    reference_items(dataset, readers[name], ks)
            times[name].append(time.perf_counter() - start)
    best = {name: min(values) for name, values in times.items()}
    return {"patches": len(dataset), "ours_patches_per_s": len(dataset) / best["ours"],
            "reference_patches_per_s": len(dataset) / best["zarr"],
            "reference_zarrs_patches_per_s": len(dataset) / best["zarrs"],
            "ratio": best["zarr"] / best["ours"],
            "ratio_same_reader": best["zarrs"] / best["ours"], "target": 4.0}


def _samples(store: Path) -> int:
    return int(open_arrays(store)["label"].shape[0])


# -- (2) epoch overhead --------------------------------------------------------------------------

def timed_steps(step, batches, repeats: int = 1) -> float:
    """Median seconds of running ``step`` over all ``batches`` (one epoch of steps)."""
    step(batches[0])  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            step(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pretrain_overhead(nol: Path, settings: Pretrain, work: Path, epochs: int = 2) -> dict[str, float]:
    ctx = distributed.Context(0, 1, torch.device("cpu"))
    trainer = pretrain.Trainer(nol, settings, work / "steps", ctx)
    loader = trainer._loader(trainer.train_set, trainer.sampler)
    batches = list(loader)

    def step(batch):
        total, _, _ = trainer.loss(batch, 0)
        trainer.optimizer.zero_grad(set_to_none=True)
        total.backward()
        trainer.optimizer.step()

    steps_s = timed_steps(step, batches)
    start = time.perf_counter()
    files.save(trainer.state(), work / "ckpt.pt")
    ckpt_s = time.perf_counter() - start
    ckpt_mb = (work / "ckpt.pt").stat().st_size / 1e6
    trainer = None  # frees the model before the full run (step holds it otherwise)
    out = work / "pretrain"
    start = time.perf_counter()
    pretrain.pretrain(nol, dataclasses.replace(settings, epochs=epochs), out)
    run_s = time.perf_counter() - start
    epoch_s = statistics.median(r["time_s"] for r in
                                map(json.loads, (out / "log.jsonl").read_text().splitlines()))
    every = settings.checkpoint_every
    return {"steps_per_epoch": len(batches), "steps_compute_s": steps_s, "epoch_s": epoch_s,
            "checkpoint_s": ckpt_s, "checkpoint_mb": ckpt_mb, "checkpoint_every": every,
            "run_s": run_s,
            "ratio": (epoch_s + ckpt_s / every) / steps_s, "target": 1.25}


def finetune_overhead(train: Path, settings: Finetune, setting: str, work: Path
                      ) -> dict[str, float]:
    """The mean epoch of a fine-tuning run of the offline default's length (its first epoch,
    which decodes the tiles, included; in the workflow the other runs of the group find them
    decoded) over the compute of its training steps."""
    task, crop = "dw", settings.crop.of("dw")
    dataset = SegmentationDataset(train, modality="s2", s2_bands=13, crop=crop, seed=0)
    torch.manual_seed(0)
    model = models.build_downstream(task, str(settings.encoder), 13)
    if setting == "frozen":
        model.encoder.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                 fused=True)
    dice = finetune.dice_loss()
    batches = list(DataLoader(dataset, batch_size=settings.batch_size))
    model.train()

    def step(batch):
        loss = finetune.segmentation_loss(model(batch["image"]), batch["label"], dice)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    steps_s = timed_steps(step, batches, repeats=5)  # 3 steps: the median of 5 epochs of them
    start = time.perf_counter()
    files.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()},
                    work / f"ckpt_{setting}.pt")
    ckpt_s = time.perf_counter() - start
    every = settings.checkpoint_every
    out = work / f"finetune_{setting}"
    datasets.TILE_CACHE.clear()  # the run decodes its tiles in its first epoch, as in the workflow
    torch.manual_seed(0)
    finetune.finetune(task=task, modality="s2", encoder="random", setting=setting, seed=0,
                      train=train, settings=settings, out=out)
    epoch_s = statistics.mean(r["time_s"] for r in
                                map(json.loads, (out / "log.jsonl").read_text().splitlines()))
    return {"steps_per_epoch": len(batches), "steps_compute_s": steps_s, "epoch_s": epoch_s,
            "checkpoint_s": ckpt_s, "checkpoint_every": every,
            "ratio": (epoch_s + (ckpt_s / every if every else 0)) / steps_s, "target": 1.25}


# -- (1) and (5): the DAG ------------------------------------------------------------------------

def estimated_compute(config: dict, pre: dict, ft: dict[str, dict], ingest_cpu_s: float,
                      runs: int) -> float:
    """CPU of the main job's work, from this run's epochs (2 threads busy) and ingests."""
    variants = len(config["pretrain"]["variants"])
    pretrain_cpu = variants * config["pretrain"]["epochs"] * pre["epoch_s"] * THREADS
    per_run = statistics.mean(f["epoch_s"] for f in ft.values()) * config["finetune"]["epochs"]
    return pretrain_cpu + runs * per_run * THREADS + ingest_cpu_s


def save(results: dict) -> None:
    """Write the results so far (a long run interrupted keeps what it measured)."""
    with atomic_path(OUT) as tmp:
        tmp.write_text(json.dumps(results, indent=2, default=float) + "\n")


def measure_world(config: dict, work: Path, results: dict) -> None:
    """(2), (3), (4) on the offline default world, written to ``results`` as they come."""
    raw = synthesise(work / "raw", config["data"]["synthetic"])
    stores = {name: work / "data" / f"{name}.zarr" for name in ("nol", "dw_train")}
    results["ingest"] = ingest_ratio(raw, stores["nol"])
    ingest("dw_train", raw, stores["dw_train"])
    save(results)
    settings = Pretrain.parse(variant_settings(config["pretrain"], "midF"))
    ft_settings = Finetune.parse({**{k: v for k, v in config["finetune"].items()
                                     if k not in FINETUNE_MATRIX},
                                  "encoder": config["pretrain"]["encoder"]})
    results["loader"] = loader_ratio(stores["nol"], settings)
    save(results)
    results["pretrain_epoch"] = pretrain_overhead(stores["nol"], settings, work)
    save(results)
    results["finetune_epoch"] = {s: finetune_overhead(stores["dw_train"], ft_settings, s, work)
                                 for s in ("finetuned", "frozen")}
    save(results)


def main() -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--main-job", action="store_true", help="also run the default DAG")
    parser.add_argument("--skip-tiny", action="store_true", help="skip the tiny DAG run")
    parser.add_argument("--dag-only", action="store_true", help="keep (2)-(4) of the last "
                        "results file; measure only the start-up and the DAG runs")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    allocator.keep_freed_memory()  # as every cromss command runs
    config = load_config(ROOT / "config/config.yaml")
    results: dict = json.loads(OUT.read_text()) if args.dag_only else {}
    results["machine"] = {"processor": cpu_model(), "cpus": os.cpu_count(),
                          "threads": THREADS, "load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench_workflow_") as tmp:
        work = Path(tmp)
        if not args.dag_only:
            measure_world(config, work, results)
        jobs = planned_jobs(workflow_copy(work / "dag"))
        imports = {name: process_cpu(code) for name, code in IMPORTS.items()}
        runs = _runs_of_default(config)
        ingest_cpu = results["ingest"].get("cpu_s", results["ingest"]["ingest_s"])
        compute = estimated_compute(config, results["pretrain_epoch"], results["finetune_epoch"],
                                    ingest_cpu * 2, runs)
        results["startup"] = {"import_cpu_s": imports, "jobs": jobs, "finetune_runs": runs,
                              **startup_share(jobs, imports, compute)}
        save(results)
        if not args.skip_tiny:
            tiny = workflow_copy(work / "tiny")
            tiny_args = ("--configfile", "tests/configs/tiny.yaml", "--replace-workflow-config")
            results["tiny_dag"] = {**measured_dag(tiny, planned_jobs(tiny, *tiny_args), imports,
                                                  tiny_args), "target_wall_s": 90}
            save(results)
        if args.main_job:
            main_dir = workflow_copy(work / "main")
            results["main_job"] = {**measured_dag(main_dir, jobs, imports, ()),
                                   "target_wall_s": 600, "quality": quality(main_dir / "results")}
    report(results)
    save(results)
    print(f"wrote {OUT}")
    return results


def cpu_model() -> str:
    """The CPU's model name (kernels, and so the trained numbers' last bits, depend on it)."""
    cpuinfo = Path("/proc/cpuinfo")
    names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M) if cpuinfo.exists() else []
    return names[0] if names else platform.processor()


def _runs_of_default(config: dict) -> int:
    ft = config["finetune"]
    per_modality = {"s1": 0, "s2": 0}
    for weights in ft["weights"]:
        fusion = "" if weights == "random" else config["pretrain"]["variants"][weights]["fusion"]
        for modality in ft["modalities"]:
            if not fusion.startswith("single_") or fusion == f"single_{modality}":
                per_modality[modality] += 1
    main = len(ft["tasks"]) * sum(per_modality.values()) * len(ft["settings"]) * len(ft["seeds"])
    ablation = sum(1 for v in config["pretrain"]["variants"] if v not in ft["weights"])
    return main + ablation * len(ft["seeds"])


def report(results: dict) -> None:
    s, pre, ft = results["startup"], results["pretrain_epoch"], results["finetune_epoch"]
    i = s["import_cpu_s"]
    print(f"(1) start-up share (estimated main job): {s['share']:.3f} (target <= 0.10): "
          f"{s['torch_processes']} torch processes x {i['torch_s']:.2f} s + "
          f"{s['other_processes']} others x {i['light_s']:.2f} s = {s['startup_cpu_s']:.0f} s of "
          f"{s['startup_cpu_s'] + s['compute_cpu_s']:.0f} s CPU")
    print(f"(2) pretraining epoch / its steps: {pre['ratio']:.3f} ({pre['epoch_s']:.2f} s + "
          f"{pre['checkpoint_s']:.2f} s checkpoint / {pre['checkpoint_every']} over "
          f"{pre['steps_per_epoch']} steps {pre['steps_compute_s']:.2f} s; target <= 1.25)")
    for setting, f in ft.items():
        every = f["checkpoint_every"]
        share = (f"{f['checkpoint_s']:.2f} s checkpoint / {every}" if every else
                 "no periodic checkpoint")
        print(f"    fine-tuning ({setting}) epoch / its steps: {f['ratio']:.3f} "
              f"({f['epoch_s']:.2f} s + {share} over {f['steps_per_epoch']} steps "
              f"{f['steps_compute_s']:.2f} s)")
    lo, ing = results["loader"], results["ingest"]
    print(f"(3) loader: {lo['ours_patches_per_s']:.0f} vs {lo['reference_patches_per_s']:.0f} "
          f"patches/s per worker: {lo['ratio']:.1f}x (target >= 4); "
          f"{lo['ratio_same_reader']:.1f}x against the same loader reading through zarrs")
    print(f"(4) ingest: {ing['ingest_s']:.2f} s vs raw read {ing['raw_read_s']:.2f} s of "
          f"{ing['files']} GeoTIFFs: ratio {ing['ratio']:.2f} (target >= 0.5)")
    for name in ("tiny_dag", "main_job"):
        if name in results:
            d = results[name]
            print(f"(5) {name}: wall {d['wall_s']:.0f} s (target {d['target_wall_s']} s), "
                  f"CPU {d['cpu_s']:.0f} s; {sum(d['jobs'].values())} jobs; overhead (all CPU "
                  f"but the jobs' work) {d['startup_share']:.3f} of it")
    if "main_job" in results:
        q = results["main_job"]["quality"]
        one, both = q["mIoU_margin_beyond_one_std"], q["mIoU_margin_beyond_both_std"]
        print(f"(6) CromSS rows above random init beyond one std of the difference: "
              f"{sum(m > 0 for m in one.values())}/{len(one)} (smallest margin "
              f"{min(one.values()):.2f}); beyond both stds: {sum(m > 0 for m in both.values())}"
              f"/{len(both)} (smallest {min(both.values()):.2f})")
        for variant, p in q["precision"].items():
            print(f"    {variant}: selection precision S1 {p['selection_precision_s1']:.3f}, "
                  f"S2 {p['selection_precision_s2']:.3f}; label precision "
                  f"{p['label_precision']:.3f}")


if __name__ == "__main__":
    main()
