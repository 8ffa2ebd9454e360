"""Benchmark of the pretraining loader on CPU at the paper's geometry (issue 22, point 3).

The paper's lateF-13B settings (config/paper.yaml; smoothed targets on), 264 px maps of 4 seasons,
256 px crops, batches of 128, from a synthetic world ingested by `cromss data ingest`:

(a) the CPU side, one DataLoader worker as the trainer runs it (one thread, its own process):
    items per CPU-second reading and cropping batches (``PretrainDataset.__getitems__``, which
    decodes into the batch itself), the bytes of a stored batch, and the worker process's peak resident memory;
(b) the batched prepare step (``BatchPreparation``: targets, scaling, flips, rotation) on the
    CPU, one thread: CPU-seconds per item (on a GPU it runs there, off the loader's cores);
(c) the estimate per GPU at an assumed training rate (``GPU_RATES`` items/s): loader cores =
    rate / (a)'s items per CPU-second, and loader memory = the batches in flight (two per
    worker in shared memory, two pinned in the trainer) + cores x the worker's own peak (over
    its resident memory after the imports, which forked workers share with the trainer) or,
    the upper bound, + cores x the worker's whole peak.

Run: ``python benchmarks/bench_loader.py`` (``--tiny`` for a quick check); writes
``benchmarks/results/bench_loader.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from gpu_common import (EPOCH, PAPER, ROOT, TINY, environment, make_data, pretrain_settings,
                        write_results)
from memory import resident_bytes

from cromss.settings import Pretrain
from cromss.training.datasets import PretrainDataset

RESULTS = ROOT / "benchmarks" / "results" / "bench_loader.json"
GPU_RATES = (500, 1000)
"""Assumed pretraining items per second of one GPU (two ResNet-50 U-Nets)."""
PREFETCH = 2
"""Batches each worker keeps ready (the DataLoader's ``prefetch_factor``)."""


def loader_worker(store: Path, size: dict[str, Any], batches: int) -> dict[str, Any]:
    """(a) and (b) in this process, as one worker: read ``batches`` batches (straight into the
    batch, which the DataLoader passes on as it is), then prepare one on the CPU."""
    torch.set_num_threads(1)  # as in a DataLoader worker
    settings = Pretrain.parse(pretrain_settings("late", size))
    batch_size = size["batch"]
    indices = [i % size["locations"] for i in range(batch_size * (batches + 1))]
    dataset = PretrainDataset(store, indices, settings, train=True)
    dataset.set_epoch(EPOCH)
    baseline = resident_bytes()  # interpreter, torch, cromss: shared with a forking trainer
    batch = dataset.__getitems__(list(range(batch_size)))  # opens the store: untimed
    started = time.process_time()
    for k in range(1, batches + 1):
        del batch  # a worker hands each batch on (shared memory) and keeps no reference
        batch = dataset.__getitems__(list(range(k * batch_size, (k + 1) * batch_size)))
    read_s = time.process_time() - started
    stored_bytes = sum(value.nbytes for value in batch.values())
    peak_loading = resident_bytes("VmHWM")
    started = time.process_time()
    prepared = dataset.prepare(batch, torch.device("cpu"))
    prepare_s = time.process_time() - started
    return {"batches": batches, "batch": batch_size,
            "items_per_cpu_s": round(batches * batch_size / read_s, 1),
            "stored_batch_mb": round(stored_bytes / 1e6, 1),
            "stored_item_dtypes": {key: str(value.dtype).removeprefix("torch.")
                                   for key, value in batch.items()},
            "prepared_batch_mb": round(sum(v.nbytes for v in prepared.values()) / 1e6, 1),
            "worker_peak_rss_mb": round(peak_loading / 1e6, 1),
            "worker_own_peak_mb": round((peak_loading - baseline) / 1e6, 1),
            "prepare_cpu_s_per_item_1_thread": round(prepare_s / batch_size, 4)}


def estimate(worker: dict[str, Any]) -> list[dict[str, Any]]:
    """(c): loader cores and memory per GPU at each assumed rate."""
    rows = []
    for rate in GPU_RATES:
        cores = math.ceil(rate / worker["items_per_cpu_s"])
        in_flight = (PREFETCH * cores + 2) * worker["stored_batch_mb"]
        own = cores * worker["worker_own_peak_mb"] + in_flight
        whole = cores * worker["worker_peak_rss_mb"] + in_flight
        rows.append({"gpu_items_per_s": rate, "loader_cores_per_gpu": cores,
                     "loader_memory_per_gpu_gb": round(own / 1e3, 2),
                     "loader_memory_per_gpu_gb_upper": round(whole / 1e3, 2)})
    return rows


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (a check, no figures)")
    parser.add_argument("--batches", type=int, default=4, help="timed batches of the worker")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # the child: a store
    args = parser.parse_args(argv)
    size = TINY if args.tiny else PAPER
    if args.worker:
        print(json.dumps(loader_worker(args.worker, size, args.batches)))
        return
    with tempfile.TemporaryDirectory() as work:
        store = make_data(Path(work), size)["nol"]
        child = subprocess.run([sys.executable, __file__, "--worker", str(store), "--batches",
                                str(args.batches), *(["--tiny"] if args.tiny else [])],
                               capture_output=True, text=True, check=True)
    worker = json.loads(child.stdout.splitlines()[-1])
    results = {"environment": environment(torch.device("cpu"), sys.argv),
               "geometry": {"world_px": size["world_px"], "crop": size["crop"], "seasons": 4,
                            "variant": "lateF-13B", "smoothing": True},
               "worker": worker, "per_gpu": estimate(worker)}
    write_results(results, args.out)
    print(json.dumps(results["worker"], indent=1))
    for row in results["per_gpu"]:
        print(f"at {row['gpu_items_per_s']} items/s per GPU: {row['loader_cores_per_gpu']} "
              f"loader cores, {row['loader_memory_per_gpu_gb']} GB "
              f"(at most {row['loader_memory_per_gpu_gb_upper']} GB)")


if __name__ == "__main__":
    main(sys.argv[1:])
