"""Shared parts of benchmarks/bench_gpu.py: sizes, timing, the `cromss` CLI in-process, the
synthetic data and the pretraining settings and batches."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's cromss, installed or not (the device has no install)

import torch  # noqa: E402
import yaml  # noqa: E402

from cromss import cli  # noqa: E402
from cromss.config import variant_settings  # noqa: E402
from cromss.logs import git_commit  # noqa: E402
from cromss.settings import Pretrain  # noqa: E402
from cromss.training.datasets import PretrainDataset  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "bench_gpu.json"
EPOCH = 40
"""The pretraining epoch the steps run at: halfway up the selection ramp (80 epochs)."""
FUSIONS = {"middle": "midF-13B", "late": "lateF-13B"}
"""The fusions measured, each as its variant of config/paper.yaml."""

PAPER = {"encoder": "resnet50", "decoder_channels": None, "batch": 128, "crop": 256,
         "world_px": 264, "locations": 32, "steps": 8, "warmup": 3, "reps": 2, "workers": (0, 2, 4, 8, 16),
         "ft_batch": 32, "ft_crop": None, "ft_steps": 6, "ft_tiles": 32, "ft_tile_px": 128,
         "ft_metric_crop": 128, "ft_epochs": 8, "ft_seeds": (0, 1, 2), "scene_px": 4096,
         "tile": 256, "overlap": 64, "predict_batches": (8, 32), "ddp_batch": 8, "ddp_crop": 128,
         "compile": True}
TINY = {"encoder": "resnet18", "decoder_channels": [32, 16, 16, 8, 8], "batch": 2, "crop": 32,
        "world_px": 48, "locations": 6, "steps": 1, "warmup": 1, "reps": 1, "workers": (0, 2),
        "ft_batch": 2, "ft_crop": 32, "ft_steps": 1, "ft_tiles": 4, "ft_tile_px": 48,
        "ft_metric_crop": 32, "ft_epochs": 1, "ft_seeds": (0, 1), "scene_px": 128,
        "tile": 64, "overlap": 16, "predict_batches": (8,), "ddp_batch": 2, "ddp_crop": 32,
        "compile": False}


# -- helpers ---------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    """Peak memory torch allocated on the GPU since the last reset (None on the CPU)."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


def timed(step: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``step`` after ``warmup`` calls (device work waited for)."""
    for _ in range(warmup):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - started) / steps


def run_cli(*argv: Any) -> str:
    """Run ``cromss ARGV`` in this process (the CLI's own code path); its standard output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli.main([str(a) for a in argv])
    if status != 0:
        raise RuntimeError(f"cromss {' '.join(map(str, argv))} exited with {status}")
    return out.getvalue()


def write_results(results: dict[str, Any], path: Path) -> None:
    """Write the JSON atomically (a run stopped mid-way keeps the last complete sections)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, allow_nan=True))
    os.replace(tmp, path)


def environment(device: torch.device, argv: list[str]) -> dict[str, Any]:
    """Device, versions and the exact command."""
    info = {"command": shlex.join([sys.executable, *argv]), "date": dt.datetime.now(
        dt.UTC).isoformat(timespec="seconds"), "device": str(device),
        "torch": torch.__version__, "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "machine": platform.platform()}
    info["git_commit"] = git_commit()  # "-dirty" when tracked files differ from the commit
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(device_name=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                    tf32_cudnn=torch.backends.cudnn.allow_tf32,
                    cudnn_benchmark=torch.backends.cudnn.benchmark)
    else:
        info["device_name"] = platform.processor() or "cpu"
    return info


def cli_env() -> dict[str, str]:
    """The environment of a `cromss` child process: this checkout first on the path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(ROOT), os.environ.get("PYTHONPATH")]))}


# -- data ------------------------------------------------------------------------------------------

def synth_world(raw: Path, locations: int, world_px: int, tile_px: int = 64,
                tiles: dict[str, int] | None = None) -> None:
    """`cromss data synth` into ``raw``: ``locations`` pretraining locations of ``world_px``, and
    ``tiles`` fine-tuning tiles per split (one each by default)."""
    tiles = tiles or dict.fromkeys(("dw_train", "dw_test", "osm_train", "osm_test",
                                    "dfc2020_train", "dfc2020_test"), 1)
    run_cli("data", "synth", "--settings", json.dumps({
        "seed": 0, "pretrain_locations": locations, "pretrain_size": world_px,
        "tile_size": tile_px, "dfc_size": 32, "tiles": tiles}), "--out", raw)


def make_data(work: Path, size: dict[str, Any]) -> dict[str, Path]:
    """A synthetic world at the pretraining geometry, written by `cromss data synth` and read into
    stores by `cromss data ingest` (the store layout of the day)."""
    tiles = size["ft_tiles"]
    raw, stores = work / "raw", {}
    synth_world(raw, size["locations"], size["world_px"], size["ft_tile_px"],
                {"dw_train": tiles, "dw_test": max(2, tiles // 2), "osm_train": 2, "osm_test": 2,
                 "dfc2020_train": 2, "dfc2020_test": 2})
    workers = max(1, min(8, (os.cpu_count() or 2) - 1))
    for name in ("nol", "dw_train", "dw_test"):
        stores[name] = work / f"{name}.zarr"
        run_cli("data", "ingest", name, "--raw", raw, "--out", stores[name],
                "--workers", workers)
    return stores


def pretrain_settings(fusion: str, size: dict[str, Any]) -> dict[str, Any]:
    """The paper's variant settings (config/paper.yaml) at this run's sizes."""
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())["pretrain"]
    settings = variant_settings(paper, FUSIONS[fusion])
    settings.update(encoder=size["encoder"], batch_size=size["batch"], crop=size["crop"])
    if size["decoder_channels"]:
        settings["decoder_channels"] = size["decoder_channels"]
    return settings


def to_device(batch: dict[str, torch.Tensor], device: torch.device,
              channels_last: bool) -> dict[str, torch.Tensor]:
    fmt = torch.channels_last if channels_last else torch.preserve_format
    return {k: v.to(device, non_blocking=True, memory_format=fmt if v.dim() == 4
                    else torch.preserve_format) for k, v in batch.items()}


def pretrain_batch(store: Path, settings: dict[str, Any], locations: int) -> dict[str, Any]:
    """One training batch of the PretrainDataset, prepared on the CPU (smoothed targets, scaling,
    augmentation)."""
    indices = [i % locations for i in range(settings["batch_size"])]
    dataset = PretrainDataset(store, indices, Pretrain.parse(settings), train=True)
    dataset.set_epoch(EPOCH)
    stored = dataset.__getitems__(list(range(len(indices))))
    return dataset.prepare(stored, torch.device("cpu"))



def runs_on(dtype: torch.dtype | None, device: torch.device) -> bool:
    """float16 autocast (with GradScaler) is the trainers' CUDA mode; on the CPU it is neither
    used nor fast, so only float32 and bfloat16 run there."""
    return device.type == "cuda" or dtype != torch.float16


