"""Benchmark of the store layout: sharded (one file per shard of samples) against unsharded (one
file per chunk), both written by `cromss data ingest` from the same synthetic world.

Reports, for each store, files and directories per 1,000 locations, bytes per location, the
validating open (`store.open_arrays`, cached per process, so run once in a fresh process each)
and the per-sample read time of a random item (one sample, one season: S2, S1, label and the
nodata flags, as the pretraining loader reads it) through `zarrs` (the loaders' reader,
`store.open_array`) and through zarr-python's own pipeline. CPU seconds, so load distorts them
less than wall time. Run on a store pair you made:
``python benchmarks/bench_store.py --sharded A.zarr --unsharded B.zarr [--reads 300]``
(B: ingest with the code before sharding, or see tests/test_partitioned_ingest.py); writes
``benchmarks/results/bench_store.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ITEM_ARRAYS = ("s2", "s1", "label", "s1_nodata", "s2_nodata")


def count(path: Path) -> tuple[int, int, int]:
    files = dirs = size = 0
    for _, folders, names in os.walk(path):
        dirs += len(folders)
        files += len(names)
        size += sum(os.path.getsize(os.path.join(_, n)) for n in names)
    return files, dirs, size


def read_seconds(path: Path, pipeline: str, reads: int, seed: int = 0) -> float:
    """CPU seconds per random item read through ``pipeline`` (zarrs or zarr-python)."""
    import zarr

    from cromss.data.store import READ_PIPELINE, open_arrays

    group = open_arrays(path, validate=False)
    config = READ_PIPELINE if pipeline == "zarrs" else {}
    with zarr.config.set(config):
        arrays = [group[name] for name in ITEM_ARRAYS]
    n, t = arrays[0].shape[:2]
    rng = np.random.default_rng(seed)
    items = [(int(i), int(s)) for i, s in zip(rng.integers(n, size=reads), rng.integers(t, size=reads))]
    for array in arrays:  # warm the file-system cache and the event loop alike for both
        array[items[0]]
    start = time.process_time()
    for item in items:
        for array in arrays:
            array[item]
    return (time.process_time() - start) / reads


def open_seconds(path: Path) -> float:
    code = ("import time, sys; from cromss.data.store import open_arrays; "
            "t = time.process_time(); open_arrays(sys.argv[1]); print(time.process_time() - t)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], check=True,
                         capture_output=True, text=True).stdout
    return float(out)


def measure(path: Path, reads: int) -> dict[str, float]:
    import zarr

    group = zarr.open_group(str(path), mode="r")
    locations = group["label"].shape[0]
    files, dirs, size = count(path)
    return {
        "locations": locations,
        "shards": list(group["s2"].shards or []) or None,
        "files_per_1000_locations": round(files / locations * 1000),
        "dirs_per_1000_locations": round(dirs / locations * 1000),
        "bytes_per_location": round(size / locations),
        "open_validated_cpu_ms": round(1000 * open_seconds(path), 1),
        "read_zarrs_cpu_ms_per_item": round(1000 * read_seconds(path, "zarrs", reads), 3),
        "read_zarr_python_cpu_ms_per_item": round(1000 * read_seconds(path, "python", reads), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sharded", type=Path, required=True)
    parser.add_argument("--unsharded", type=Path, required=True)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "bench_store.json")
    args = parser.parse_args()
    result = {"machine": f"{platform.node()} ({os.cpu_count()} CPUs, shared and loaded)",
              "sharded": measure(args.sharded, args.reads),
              "unsharded": measure(args.unsharded, args.reads)}
    print(json.dumps(result, indent=1))
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
