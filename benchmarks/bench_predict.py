"""Benchmark of `cromss map predict`: throughput and peak memory of tiled map inference.

For square S2 L1C scenes (one 13-band uint16 GeoTIFF at 10 m) of 1024, 2048 and 4096 px, a
DW fine-tuned model's architecture (DeepLabV3+ on a resnet18 encoder, 13 bands, 9 classes) maps
the scene with the default tiling (256 px tiles, 64 px overlap, batch 8) into the COG class map
and confidence. Each case runs in its own process, so its peak resident memory (``VmHWM``; not
``ru_maxrss``, which a child inherits from this process through exec on Linux) is its own: the
tiled run should stay flat as the scene grows 16-fold in area. For comparison the naive way
(read the whole scene, one forward pass over it) is run where it fits (``--naive-max``).
Throughput is scene megapixels per second of wall time, including reading and writing.

Run: ``python benchmarks/bench_predict.py [--device cuda] [--sizes 1024 2048 4096]``; writes
``benchmarks/results/bench_predict[_<device>].json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from memory import resident_bytes

THREADS = 2
OUT = Path(__file__).parent / "results"


def write_scene(path: Path, size: int) -> None:
    """A random-but-blocky 13-band L1C scene, written in strips (never whole in memory)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(size)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=13,
                       dtype="uint16", crs="EPSG:32632", tiled=True, blockxsize=256,
                       blockysize=256, transform=from_origin(500_000, 5_500_000, 10, 10)) as dst:
        for top in range(0, size, 256):
            coarse = rng.integers(300, 4000, (13, 32, size // 8))
            strip = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)
            strip = strip + rng.integers(0, 200, strip.shape)
            dst.write(strip.astype(np.uint16), window=Window(0, top, size, 256))


def write_model(path: Path) -> None:
    import torch

    from cromss.constants import DW_CLASSES, input_normalisation
    from cromss.models import build_downstream
    from cromss.weights import files

    torch.manual_seed(0)
    model = build_downstream("dw", "resnet18", 13)
    card = {"task": "dw", "encoder": "resnet18", "modality": "s2", "in_channels": 13,
            "s2_bands": 13, "normalisation": input_normalisation("s2", 13),
            "classes": list(DW_CLASSES), "num_classes": 9}
    files.save({"state_dict": model.state_dict(), "card": card}, path)


def run_case(mode: str, model: Path, scene: Path, out: Path, device: str) -> dict:
    """One case in this process: ``tiled`` (cromss map predict) or ``naive`` (whole-scene forward)."""
    import torch

    torch.set_num_threads(THREADS)
    started = time.perf_counter()
    if mode == "tiled":
        from cromss.predict.mapping import predict_map

        summary = predict_map(model, [scene], out, device=device)
        tiles = summary["tiles"]
    else:
        import rasterio

        from cromss.predict.predictor import load_predictor

        predictor = load_predictor(model, device)
        with rasterio.open(scene) as src:
            raw = src.read().astype(np.float32)
        prepared = predictor.prepare("s2", raw)
        del raw
        labels = predictor([{"s2": prepared}])[0].argmax(0).astype(np.uint8)
        tiles = 1
        del labels
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    rss_mib = resident_bytes("VmHWM") / 2**20
    result = {"mode": mode, "tiles": tiles, "seconds": round(seconds, 2),
              "peak_rss_mib": round(rss_mib, 1)}
    if device.startswith("cuda"):
        result["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--naive-max", type=int, default=2048,
                        help="largest scene side the naive whole-scene forward is tried on")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--case", nargs=4, metavar=("MODE", "MODEL", "SCENE", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        mode, model, scene, out = args.case
        print(json.dumps(run_case(mode, Path(model), Path(scene), Path(out), args.device)))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_model(tmp / "model.pt")
        for size in args.sizes:
            write_scene(tmp / f"scene{size}.tif", size)
            modes = ["tiled"] + (["naive"] if size <= args.naive_max else [])
            for mode in modes:
                cmd = [sys.executable, __file__, "--device", args.device, "--case", mode,
                       str(tmp / "model.pt"), str(tmp / f"scene{size}.tif"),
                       str(tmp / f"map{size}_{mode}.tif")]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    result = {"mode": mode, "error": done.stderr.strip().splitlines()[-1]}
                else:
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    result["megapixels_per_second"] = round(size * size / 1e6
                                                            / result["seconds"], 3)
                result.update(size_px=size, megapixels=round(size * size / 1e6, 2))
                print(json.dumps(result), flush=True)
                results.append(result)
                save(results, args.device)  # after every case: a long run keeps what it measured
            (tmp / f"scene{size}.tif").unlink()


def save(results: list[dict], device: str) -> None:
    suffix = "" if device == "cpu" else f"_{device.split(':')[0]}"
    OUT.mkdir(exist_ok=True)
    report = {"benchmark": "bench_predict", "device": device, "threads": THREADS,
              "model": "DeepLabV3+ resnet18, 13 bands, 9 classes",
              "tiling": {"tile": 256, "overlap": 64, "batch_size": 8},
              "machine": platform.platform(), "processor": platform.processor(),
              "results": results}
    (OUT / f"bench_predict{suffix}.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
