"""The GPU path measured (issue 26): pretraining and fine-tuning steps by precision, the loader
feeding a GPU, `cromss predict` throughput, and one DDP run under torchrun.

On the device (see benchmarks/README.md, "The GPU path"):
    python3 benchmarks/bench_gpu.py
Here, on the CPU at tiny sizes (tests/test_bench_gpu.py runs it):
    python benchmarks/bench_gpu.py --tiny --device cpu

Everything goes through the library's public functions and the `cromss` CLI (data synth / ingest,
scene, finetune, predict, pretrain), so the figures follow the code. Results are written after
each section to ``--out`` (JSON), so a run stopped by its time limit keeps what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

from gpu_common import (PAPER, RESULTS, ROOT, TINY, cli_env, environment, make_data,
                        peak_gib, pretrain_settings, reset_peak, run_cli, runs_on,
                        write_results)
from gpu_training import (PRETRAIN_MODES, bench_finetune_metrics,
                          bench_finetune_steps, bench_loader, bench_pretrain)

# -- 4. maps ---------------------------------------------------------------------------------------

class Scene:
    """`cromss scene` in a child process, started first: a 4096 px scene takes minutes of one
    core, which the GPU sections leave idle."""

    def __init__(self, work: Path, side: int):
        self.path, self.side = work / "scene", side
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cromss", "data", "scene", "--settings",
             json.dumps({"size": side, "seed": 0}), "--out", str(self.path)],
            env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.seconds = 0.0
        self.stderr = ""

        def watch() -> None:
            self.stderr = self.process.communicate()[1]
            self.seconds = time.perf_counter() - started

        self.watcher = threading.Thread(target=watch, daemon=True)
        self.watcher.start()

    def wait(self) -> float:
        """Wait for the scene; the seconds it took."""
        self.watcher.join()
        if self.process.returncode != 0:
            raise RuntimeError(f"cromss scene failed: {self.stderr[-2000:]}")
        return self.seconds


def bench_predict(model: Path, scene: Scene, work: Path, size: dict[str, Any],
                  device: torch.device) -> dict[str, Any]:
    """`cromss predict` of a synthetic scene (`cromss scene`) with the fine-tuned DW model."""
    waited = time.perf_counter()
    scene_seconds = scene.wait()
    waited = time.perf_counter() - waited
    side = scene.side
    km2 = (side * 10 / 1000) ** 2
    rows = []
    for batch in size["predict_batches"]:
        reset_peak(device)
        started = time.perf_counter()
        summary = json.loads(run_cli(
            "map", "predict", "--model", model, "--scene", scene.path / "S2", "--out",
            work / f"map_b{batch}.tif", "--tile", size["tile"], "--overlap", size["overlap"],
            "--batch-size", batch, "--device", str(device)))
        seconds = time.perf_counter() - started
        rows.append({"batch_size": batch, "seconds": round(seconds, 2),
                     "km2_per_s": round(km2 / seconds, 2),
                     "megapixels_per_s": round(side * side / 1e6 / seconds, 3),
                     "tiles": summary["tiles"], "peak_gpu_gib": peak_gib(device),
                     "max_rss_mib": round(
                         resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)})
        print(f"predict batch={batch:3d} {rows[-1]['km2_per_s']} km2/s", flush=True)
    cpu = ROOT / "benchmarks" / "results" / "bench_predict.json"
    reference = None
    if cpu.is_file():
        tiled = [r for r in json.loads(cpu.read_text())["results"] if r["mode"] == "tiled"]
        if tiled:
            best = max(tiled, key=lambda r: r["megapixels_per_second"])
            reference = {"file": "benchmarks/results/bench_predict.json",
                         "megapixels_per_s": best["megapixels_per_second"],
                         "km2_per_s": round(best["megapixels_per_second"] * 100, 3),
                         "note": "CPU, 2 threads, DeepLabV3+ resnet18"}
    return {"scene_px": side, "km2": round(km2, 2), "encoder": size["encoder"],
            "decoder": "DeepLabV3Plus", "tile": size["tile"], "overlap": size["overlap"],
            "scene_seconds": round(scene_seconds, 1), "scene_wait_seconds": round(waited, 1),
            "rows": rows, "cpu_reference": reference}


# -- 5. DDP under torchrun -------------------------------------------------------------------------

def launcher() -> list[str]:
    """The workflow's launcher (workflow/rules/common.smk ``launcher``) with one process."""
    torchrun = shutil.which("torchrun") or shutil.which("torchrun", path=str(
        Path(sys.executable).parent))
    base = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    return [*base, "--standalone", "--nproc_per_node=1", "-m", "cromss"]


def state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The weights of a ``model.pt`` written by ``cromss pretrain``."""
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def compare_weights(a: Path, b: Path) -> dict[str, Any]:
    """Whether two ``model.pt`` hold the same tensors: the keys, and the largest difference."""
    first, second = state_dict(a), state_dict(b)
    if set(first) != set(second):
        return {"same_keys": False, "max_abs_diff": None, "identical": False}
    diff = max((float((first[k].double() - second[k].double()).abs().max())
                for k in first if first[k].numel()), default=0.0)
    return {"same_keys": True, "max_abs_diff": diff, "identical": diff == 0.0,
            "tensors": len(first)}


def bench_ddp(stores: dict[str, Path], work: Path, size: dict[str, Any],
              device: torch.device) -> dict[str, Any]:
    """One epoch of `cromss pretrain` (a few steps) under torchrun with one process (NCCL on a
    GPU, gloo on the CPU) and the same run without it; on a GPU the plain run twice, since
    cuDNN's kernels may not be bit-reproducible: the DDP weights must then differ from the plain
    run's by no more than the two plain runs differ."""
    settings = pretrain_settings("middle", size)
    settings.update(batch_size=size["ddp_batch"], crop=size["ddp_crop"], epochs=1,
                    val_fraction=0.25, val_batch_size=1, num_workers=0,
                    name="ddp-check")
    args = ["pretrain", "run", "--store", str(stores["nol"]), "--settings", json.dumps(settings),
            "--threads", "1"]  # the same CPU reductions in both runs
    env = {**cli_env(), "OMP_NUM_THREADS": "1"}
    if device.type == "cuda":
        env["NCCL_DEBUG"] = "INFO"
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""
    started = time.perf_counter()
    ddp = subprocess.run([*launcher(), *args, "--out", str(work / "ddp")], env=env,
                         capture_output=True, text=True, timeout=900)
    ddp_seconds = time.perf_counter() - started
    if ddp.returncode != 0:
        return {"error": f"torchrun exited with {ddp.returncode}: {ddp.stderr[-2000:]}"}
    repeats = ("plain", "plain_repeat") if device.type == "cuda" else ("plain",)
    threads = torch.get_num_threads()
    try:
        for name in repeats:
            run_cli(*args, "--out", work / name)
    finally:
        torch.set_num_threads(threads)
    log = [json.loads(line) for line in (work / "ddp" / "log.jsonl").read_text().splitlines()]
    result = {"command": shlex.join([*launcher(), *args, "--out", "DIR"]),
              "seconds": round(ddp_seconds, 1), "train_loss": log[-1]["train_loss"],
              "nccl_seen": "NCCL INFO" in ddp.stderr if device.type == "cuda" else None,
              "ddp_vs_plain": compare_weights(work / "ddp" / "model.pt",
                                              work / "plain" / "model.pt")}
    floor = 0.0
    if "plain_repeat" in repeats:
        result["plain_vs_plain"] = compare_weights(work / "plain" / "model.pt",
                                                   work / "plain_repeat" / "model.pt")
        floor = result["plain_vs_plain"]["max_abs_diff"] or 0.0
    verdict = result["ddp_vs_plain"]
    result["equal"] = bool(verdict["same_keys"] and verdict["max_abs_diff"] <= floor)
    return result


# -- the run ---------------------------------------------------------------------------------------

SECTIONS = ("pretrain", "loader", "finetune", "predict", "ddp", "compile")
COMPILE_SECONDS = 180
"""What torch.compile of the two fusions' steps is allowed to take (compilation included)."""


def table(results: dict[str, Any]) -> str:
    """The figures as a short text table."""
    lines = [f"{results['environment']['device_name']} | torch {results['environment']['torch']}"]
    for row in results.get("pretrain", []) + results.get("compile", []):
        lines.append(f"pretrain {row['fusion']:6s} {row['mode']:32s} "
                     + (f"{row['samples_per_s']:9.1f} samples/s  ceiling "
                        f"{row['ceiling_samples_per_s']:9.1f}  ratio {row['ratio_to_ceiling']:.2f}"
                        f"  peak {row['peak_gib']} GiB"
                        f"{'  DEFECT ' + row['defect'] if row['defect'] else ''}"
                        if "samples_per_s" in row else f"ERROR {row.get('error')}"))
    if "loader" in results:
        loader = results["loader"]
        for row in loader["rows"]:
            lines.append(f"loader   workers {row['workers']:2d}  {row['samples_per_s']:9.1f} "
                         f"samples/s  GPU busy {row['gpu_busy_share']:.2f}")
        lines.append(f"loader   cores per GPU {loader['cores_per_gpu']} (resident "
                     f"{loader['resident_samples_per_s']} samples/s)")
    for row in results.get("finetune", {}).get("steps", []):
        lines.append(f"finetune {row['task']:8s} {row['mode']:12s} crop {row['crop']:3d} "
                     + (f"{row['samples_per_s']:9.1f} samples/s" if "samples_per_s" in row
                        else f"ERROR {row.get('error')}"))
    if "metrics" in results.get("finetune", {}):
        m = results["finetune"]["metrics"]
        lines.append(f"finetune mIoU float32 {m['mean_miou']['float32']:.3f} amp "
                     f"{m['mean_miou']['float16_amp']:.3f}: agree {m['agree']}")
    for row in results.get("predict", {}).get("rows", []):
        lines.append(f"predict  batch {row['batch_size']:3d} {row['km2_per_s']:9.2f} km2/s  peak "
                     f"{row['peak_gpu_gib']} GiB")
    if "ddp" in results:
        ddp = results["ddp"]
        lines.append(f"ddp      equal {ddp.get('equal')}  "
                     f"{ddp.get('ddp_vs_plain', ddp.get('error'))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (CPU test)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    parser.add_argument("--workdir", type=Path, help="keep the data here (default: a temp dir)")
    parser.add_argument("--time-limit", type=float, help="seconds the run may take: the "
                        f"compile section is skipped with less than {COMPILE_SECONDS} s left")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    size = TINY if args.tiny else PAPER
    if args.tiny:  # tiny tensors: a second thread only waits for a busy core
        torch.set_num_threads(1)
    sections = args.sections.split(",")
    if unknown := set(sections) - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}")
    results: dict[str, Any] = {"benchmark": "bench_gpu", "tiny": args.tiny,
                               "environment": environment(device, [__file__, *argv]),
                               "sizes": {k: list(v) if isinstance(v, tuple) else v
                                         for k, v in size.items()}}
    if device.type == "cuda":
        torch.cuda.set_device(device)
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="bench_gpu_")))
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        scene = Scene(work, size["scene_px"]) if "predict" in sections else None
        stack.callback(lambda: scene and scene.process.poll() is None and scene.process.kill())
        stores = make_data(work, size)
        results["data_seconds"] = round(time.perf_counter() - started, 1)
        write_results(results, args.out)
        eager = [m for m, (dtype, _, compiled) in PRETRAIN_MODES.items()
                 if not compiled and runs_on(dtype, device)]
        if "pretrain" in sections:
            results["pretrain"] = bench_pretrain(stores, size, device, eager)
            write_results(results, args.out)
        if "loader" in sections:
            mode = "bfloat16_channels_last" if device.type == "cuda" else "float32"
            results["loader"] = bench_loader(stores, size, device, mode)
            write_results(results, args.out)
        if "finetune" in sections or "predict" in sections:
            results["finetune"] = {"steps": bench_finetune_steps(size, device)
                                   if "finetune" in sections else [],
                                   "metrics": bench_finetune_metrics(stores, work, size, device)}
            write_results(results, args.out)
        if "predict" in sections:
            results["predict"] = bench_predict(Path(results["finetune"]["metrics"]["model"]),
                                               scene, work, size, device)
            write_results(results, args.out)
        if "ddp" in sections:
            results["ddp"] = bench_ddp(stores, work, size, device)
            write_results(results, args.out)
        if "compile" in sections:  # last: its compilation may take minutes
            left = (args.time_limit - (time.perf_counter() - started) if args.time_limit
                    else float("inf"))
            if left < COMPILE_SECONDS:
                results["compile_skipped"] = f"{left:.0f} s left of --time-limit"
            elif size["compile"] and hasattr(torch, "compile"):
                compiled = [m for m, (_, _, c) in PRETRAIN_MODES.items() if c]
                results["compile"] = bench_pretrain(stores, size, device, compiled)
            else:
                results["compile_skipped"] = "--tiny: torch.compile is measured on the device only"
            write_results(results, args.out)
        results["total_seconds"] = round(time.perf_counter() - started, 1)
        write_results(results, args.out)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
