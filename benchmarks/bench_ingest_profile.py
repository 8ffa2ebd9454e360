"""Where ingest's CPU goes at the paper's geometry, and the floor of this design (issue 22, point 1).

On a synthetic world of ``--locations`` locations (264 px, 4 seasons, 13 S2 + 2 S1 bands, the
SSL4EO-S12 v1 layout written by `cromss data synth`), in this process, CPU-seconds per location:

- the plain read: every GeoTIFF opened and read once with rasterio (as ``bench_paper_scale.py``);
- ``ingest("nol")``, one partition, one reading process: the whole process, its main thread
  (reading, warping, checking, stacking) and the rest (the store writer and zarr's codec threads);
- the main thread's functions under cProfile (thread CPU time, its overhead included: shares);
- the store's codecs alone (as its metadata names them: the byte shuffle, zstd with its
  checksum, crc32c) over every chunk of the written store, and other chains for the trade-off
  (CPU and bytes): zstd level 3 without the shuffle (the stores before), the shuffle with zstd
  level 3, Blosc-LZ4 with its shuffle (no checksum that zarrs checks);
- the floor: the plain read + the warp + the store's codecs, against the budget of a 0.3
  throughput ratio;
- peak memory of ``cromss data ingest nol --workers 2`` (its main process with the writer, and
  its largest reading process) on the first third, two thirds and all of the world: bounded by
  the shard's batch, not the store's size.

Best of ``--repeats`` runs (the first run of the process warms its imports and is dropped).
Run: ``python benchmarks/bench_ingest_profile.py [--locations 48]`` (about 1 min here); writes
``benchmarks/results/bench_ingest_profile.{json,txt}`` (``--out`` for another path).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import subprocess
import tempfile
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
import numcodecs
from numcodecs import CRC32C, Blosc, Shuffle, Zstd

from bench_paper_scale import nol_files, plain_read_cpu
from gpu_common import PAPER, ROOT, cli_env, environment, synth_world, write_results

from cromss import allocator
from cromss.data.ingest import ingest

OUT = ROOT / "benchmarks" / "results" / "bench_ingest_profile.json"
TARGET_RATIO = 0.3
STORE = "the store's codecs"
OTHER_CHAINS = {  # name -> the codecs for an array of the given item size
    "zstd 3 (stores before)": lambda size: [Zstd(level=3, checksum=True), CRC32C()],
    "shuffle + zstd 3": lambda size: [*([Shuffle(size)] if size > 1 else []),
                                      Zstd(level=3, checksum=True), CRC32C()],
    "Blosc-LZ4 + shuffle": lambda size: [Blosc("lz4", 5, Blosc.SHUFFLE, typesize=size), CRC32C()],
}
FUNCTIONS = {  # the main thread's steps: (module file, function) -> what it is
    ("rasters.py", "read_raster"): "open, validate and read a GeoTIFF",
    ("rasters.py", "bilinear_axis_aligned"): "GDAL-exact bilinear warp (20 m, 60 m bands)",
    ("rasters.py", "nearest_axis_aligned"): "nearest warp (label maps)",
    ("rasters.py", "resample_onto"): "a resampling (pad, warp, round, cast)",
    ("ingest.py", "_checked"): "label codes checked",
    ("ingest.py", "_batch"): "samples stacked into a batch",
    ("store.py", "make_batch"): "the batch as an xarray Dataset",
    ("noldo.py", "read_nol_location"): "a whole location read (the calls above inside)",
}


def timed_ingest(raw: Path, out: Path, profile: cProfile.Profile | None = None
                 ) -> tuple[float, float]:
    """Process and main-thread CPU-seconds of one ``ingest("nol")``."""
    shutil.rmtree(out, ignore_errors=True)
    assert threading.current_thread() is threading.main_thread()
    process, main = time.process_time(), time.thread_time()
    if profile:
        profile.enable()
    ingest("nol", raw, out)
    if profile:
        profile.disable()
    return time.process_time() - process, time.thread_time() - main


def main_thread_steps(profile: cProfile.Profile, locations: int) -> dict[str, dict[str, Any]]:
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    steps = {}
    for (path, _, name), (_, calls, own, total, _) in stats.items():
        key = (Path(path).name, name)
        if key in FUNCTIONS and "cromss" in path:
            steps[name] = {"what": FUNCTIONS[key], "calls": calls,
                           "own_ms": 1000 * own / locations,
                           "with_callees_ms": 1000 * total / locations}
    return steps


def store_codecs(array: zarr.Array) -> list[Any]:
    """The bytes-to-bytes codecs inside ``array``'s shards as its metadata names them, from
    numcodecs' registry."""
    inner = array.metadata.to_dict()["codecs"][0]["configuration"]["codecs"]
    return [numcodecs.get_codec({"id": c["name"].removeprefix("numcodecs."),
                                 **c.get("configuration", {})})
            for c in inner if c["name"] != "bytes"]


def codec_costs(store: Path, locations: int) -> dict[str, dict[str, float]]:
    """The store's codecs and the other chains over every pixel chunk of the store."""
    group = zarr.open_group(store, mode="r")
    chunks: list[tuple[np.ndarray, list[Any]]] = []
    for name in group.array_keys():
        array = group[name]
        if not isinstance(array, zarr.Array) or array.ndim < 3:
            continue
        own, inner = store_codecs(array), array.chunks
        for start in range(0, array.shape[0], inner[0]):  # a chunk's samples at a time
            data = array[start:start + inner[0]]
            for index in np.ndindex(*(s // c for s, c in zip(data.shape, inner, strict=True))):
                window = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, inner, strict=True))
                chunks.append((np.ascontiguousarray(data[window]), own))
    out: dict[str, dict[str, float]] = {"chunks": {
        "count": len(chunks), "decoded_mb": sum(c.nbytes for c, _ in chunks) / locations / 1e6,
        "arrays_mb": sum(group[name].nbytes for name in group.array_keys()
                         if group[name].ndim >= 3) / locations / 1e6}}
    for name in (STORE, *OTHER_CHAINS):
        pairs = [(chunk, own if name == STORE else OTHER_CHAINS[name](chunk.dtype.itemsize))
                 for chunk, own in chunks]  # codecs take arrays
        start = time.process_time()
        encoded = []
        for data, codecs in pairs:
            for codec in codecs:
                data = codec.encode(data)
            encoded.append(data)
        encode = time.process_time() - start
        start = time.process_time()
        for data, (_, codecs) in zip(encoded, pairs, strict=True):
            for codec in reversed(codecs):
                data = codec.decode(data)
        out[name] = {"encode_ms": 1000 * encode / locations,
                     "decode_ms": 1000 * (time.process_time() - start) / locations,
                     "mb": sum(map(len, encoded)) / locations / 1e6,
                     "codecs": sorted({type(c).__name__ for _, cs in pairs for c in cs})}
    return out


# The ingest runs as the `cromss` command alone (no torch imported); its own peak is VmHWM, as
# its ru_maxrss starts from this benchmark's peak, which a child inherits through exec on Linux.
# The reading processes are forked from the ingest.
PEAK = """
import resource, sys
sys.path.insert(0, sys.argv[3])
from memory import resident_bytes
from cromss.cli import main
status = main(["data", "ingest", "nol", "--raw", sys.argv[1], "--out", sys.argv[2], "--workers", "2"])
print(resident_bytes("VmHWM"), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
sys.exit(status)
"""


def first_locations(raw: Path, dest: Path, count: int) -> Path:
    """A view of ``raw`` with only the first ``count`` locations of the NoL id list (symlinks)."""
    nol = raw / "noldo" / "ssl4eo_s12_nol"
    rows = (nol / "dw_complete_ids.csv").read_text().splitlines()[:count]
    kept = {f"{int(row.split(',')[0]):07d}" for row in rows}
    for source in [*raw.iterdir(), *(raw / "noldo").iterdir(), *nol.iterdir()]:
        if source in (raw / "noldo", nol) or (source.parent == nol and source.name not in kept):
            continue
        link = dest / source.relative_to(raw)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source)
    (dest / nol.relative_to(raw) / "dw_complete_ids.csv").write_text("\n".join(rows) + "\n")
    return dest


def peak_memory(raw: Path, scratch: Path, locations: int) -> list[dict[str, float]]:
    """Peak resident memory (MB) of the ingest's processes at three sizes of the world."""
    peaks = []
    for count in sorted({max(1, locations // 3), max(1, 2 * locations // 3), locations}):
        view = first_locations(raw, scratch / f"first_{count}", count)
        done = subprocess.run([sys.executable, "-c", PEAK, view, scratch / f"first_{count}.zarr",
                               Path(__file__).parent], env={**cli_env(), "OMP_NUM_THREADS": "1"},
                              capture_output=True, text=True, check=True)
        main, reader = map(int, done.stdout.split()[-2:])
        peaks.append({"locations": count, "main_process_mb": main / 2**20,
                      "reading_process_mb": reader / 2**20})
    return peaks


def run(locations: int, repeats: int, scratch: Path) -> dict[str, Any]:
    raw, out = scratch / "raw", scratch / "nol.zarr"
    synth_world(raw, locations, PAPER["world_px"])
    files = nol_files(raw)
    read = min(plain_read_cpu(files) for _ in range(repeats))
    timed_ingest(raw, out)  # warm-up: imports, first allocations
    runs = [timed_ingest(raw, out) for _ in range(repeats)]
    process, main = min(runs)
    profile = cProfile.Profile(time.thread_time)
    timed_ingest(raw, out, profile)
    steps = main_thread_steps(profile, locations)
    codecs = codec_costs(out, locations)
    peaks = peak_memory(raw, scratch, locations)
    per = {"plain_read_ms": 1000 * read / locations, "ingest_ms": 1000 * process / locations,
           "main_thread_ms": 1000 * main / locations,
           "writer_and_codec_threads_ms": 1000 * (process - main) / locations}
    codec = codecs[STORE]["encode_ms"]
    warp = steps.get("bilinear_axis_aligned", {}).get("with_callees_ms", float("nan"))
    floor = per["plain_read_ms"] + warp + codec
    return {
        "benchmark": "bench_ingest_profile", "locations": locations, "repeats": repeats,
        "geotiffs_read": len(files), "per_location": per,
        "throughput_ratio": read / process, "target_ratio": TARGET_RATIO,
        "budget_ms": per["plain_read_ms"] / TARGET_RATIO,
        "floor_ms": floor, "floor_ratio": per["plain_read_ms"] / floor,
        "without_codecs_ratio_estimate": per["plain_read_ms"] / (per["ingest_ms"] - codec),
        "main_thread_steps_under_cprofile": steps, "codecs": codecs, "peak_memory": peaks,
    }


def report(r: dict[str, Any]) -> str:
    per = r["per_location"]
    lines = [
        f"ingest at paper geometry, {r['locations']} locations ({r['geotiffs_read']} GeoTIFFs), "
        f"best of {r['repeats']}, ms of CPU per location",
        f"  plain rasterio read       {per['plain_read_ms']:7.1f}",
        f"  ingest, whole process     {per['ingest_ms']:7.1f}  throughput ratio "
        f"{r['throughput_ratio']:.3f} (target {r['target_ratio']}: at most "
        f"{r['budget_ms']:.1f} ms)",
        f"    main thread             {per['main_thread_ms']:7.1f}",
        f"    writer + codec threads  {per['writer_and_codec_threads_ms']:7.1f}",
        "main thread under cProfile (its overhead included), ms per location: own / with callees"]
    for name, step in sorted(r["main_thread_steps_under_cprofile"].items(),
                             key=lambda kv: -kv[1]["with_callees_ms"]):
        lines.append(f"  {name:24s} {step['own_ms']:6.1f} / {step['with_callees_ms']:6.1f}  "
                     f"{step['what']}")
    codecs = r["codecs"]
    lines.append(f"codecs over the store's chunks ({codecs['chunks']['decoded_mb']:.2f} MB per "
                 "location decoded), ms of CPU and MB per location:")
    for name in (STORE, *OTHER_CHAINS):
        c = codecs[name]
        lines.append(f"  {name:24s} encode {c['encode_ms']:5.1f}, decode {c['decode_ms']:5.1f}, "
                     f"{c['mb']:.2f} MB  ({', '.join(c['codecs'])})")
    lines += [
        f"floor of this design (plain read + GDAL-exact warp + the store's codecs): "
        f"{r['floor_ms']:.1f} ms, ratio at best {r['floor_ratio']:.3f}",
        f"the ingest without codecs (an estimate: the process less their encoding): ratio "
        f"{r['without_codecs_ratio_estimate']:.3f}",
        "peak resident memory of `cromss data ingest nol --workers 2` (shards of 16 samples):"]
    lines += [f"  {p['locations']:4d} locations: main process (reading, writer) "
              f"{p['main_process_mb']:6.0f} MB, largest reading process "
              f"{p['reading_process_mb']:6.0f} MB" for p in r["peak_memory"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--locations", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT, help="the JSON (the .txt beside it)")
    args = parser.parse_args()
    allocator.keep_freed_memory()  # as every cromss command runs
    with tempfile.TemporaryDirectory(prefix="bench_ingest_profile_") as tmp:
        results = {**run(args.locations, args.repeats, Path(tmp)),
                   "environment": environment(torch.device("cpu"), sys.argv)}
    text = report(results)
    write_results(results, args.out)
    args.out.with_suffix(".txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
