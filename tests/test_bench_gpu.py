"""benchmarks/bench_gpu.py in its CPU tiny mode: every measurement present and sane, and the
DDP-vs-plain check compares the weights for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_gpu  # noqa: E402


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench_gpu")
    out = work / "bench_gpu.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--tiny",
                           "--device", "cpu", "--out", str(out), "--workdir", str(work / "w")],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ddp      equal True" in done.stdout  # the printed table
    return json.loads(out.read_text()), work / "w"


def test_environment_and_command_are_recorded(results):
    data, _ = results
    env = data["environment"]
    assert env["device"] == "cpu" and env["torch"] == torch.__version__
    assert "bench_gpu.py --tiny --device cpu" in env["command"]


def test_pretraining_steps_by_precision_against_their_ceiling(results):
    data, _ = results
    rows = data["pretrain"]
    modes = {(r["fusion"], r["mode"]) for r in rows}
    # float16 autocast is a CUDA mode; the CPU runs float32 and bfloat16, with channels_last
    assert modes == {(f, m) for f in ("middle", "late")
                     for m in ("float32", "float32_channels_last", "bfloat16",
                               "bfloat16_channels_last")}
    for row in rows:
        assert "error" not in row, row
        assert row["samples_per_s"] > 0 and row["ceiling_samples_per_s"] > 0
        assert row["ratio_to_ceiling"] == pytest.approx(
            row["samples_per_s"] / row["ceiling_samples_per_s"], rel=0.02)
        assert row["nonfinite_losses"] == 0 and row["defect"] is None
    assert "compile_skipped" in data


def test_loader_busy_share_and_cores_per_gpu(results):
    data, _ = results
    loader = data["loader"]
    assert [r["workers"] for r in loader["rows"]] == [0, 2]
    for row in loader["rows"]:
        assert row["samples_per_s"] > 0 and 0 < row["gpu_busy_share"] <= 1
    assert loader["cores_per_gpu"] >= 1 and loader["resident_samples_per_s"] > 0
    assert loader["prepare_s_per_batch"] > 0


def test_finetuning_steps_and_metrics(results):
    data, _ = results
    steps = data["finetune"]["steps"]
    assert {(r["task"], r["decoder"], r["mode"]) for r in steps} == {
        (t, d, m) for t, d in (("dfc2020", "PSPNet"), ("dw", "DeepLabV3Plus"), ("osm", "FPN"))
        for m in ("float32", "bfloat16")}
    assert all(r["samples_per_s"] > 0 and r["losses_finite"] for r in steps)
    metrics = data["finetune"]["metrics"]
    assert set(metrics["miou"]) == {"float32", "float16_amp"}
    assert all(len(v) == 2 and all(0 <= x <= 100 for x in v) for v in metrics["miou"].values())
    # on the CPU `amp: true` is float32: the same runs, the same metrics
    assert not metrics["amp_effective"] and metrics["difference"] == 0 and metrics["agree"]


def test_predict_throughput(results):
    data, work = results
    predict = data["predict"]
    assert predict["km2"] == pytest.approx((128 * 10 / 1000) ** 2, abs=0.01)
    (row,) = predict["rows"]
    assert row["km2_per_s"] == pytest.approx(predict["km2"] / row["seconds"], rel=0.05)
    assert row["tiles"] > 1 and (work / "map_b8.tif").is_file()


def test_ddp_run_equals_the_plain_run_and_the_check_sees_a_difference(results, tmp_path):
    data, work = results
    ddp = data["ddp"]
    assert "error" not in ddp, ddp.get("error")
    assert "--nproc_per_node=1 -m cromss pretrain" in ddp["command"]
    assert ddp["equal"] and ddp["ddp_vs_plain"]["identical"]
    assert ddp["ddp_vs_plain"]["tensors"] > 100
    # perturb one weight of one run: the comparison must see it
    payload = torch.load(work / "ddp" / "model.pt", weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][key] = payload["state_dict"][key].clone()
    payload["state_dict"][key].view(-1)[0] += 1e-6
    torch.save(payload, tmp_path / "perturbed.pt")
    changed = bench_gpu.compare_weights(tmp_path / "perturbed.pt", work / "plain" / "model.pt")
    assert changed["same_keys"] and not changed["identical"]
    assert changed["max_abs_diff"] == pytest.approx(1e-6, rel=0.1)


def test_loader_bench_measures_the_stored_batch_and_estimates_cores_and_memory(tmp_path):
    """benchmarks/bench_loader.py --tiny: the worker ships stored dtypes, smaller than the
    prepared batch, and the per-GPU estimate follows from the worker's figures."""
    out = tmp_path / "bench_loader.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_loader.py"),
                           "--tiny", "--batches", "2", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    worker = data["worker"]
    assert worker["stored_item_dtypes"]["s2"] == "uint16"
    assert worker["stored_item_dtypes"]["label"] == "uint8" and "soft" not in worker[
        "stored_item_dtypes"]
    assert 0 < worker["stored_batch_mb"] < worker["prepared_batch_mb"]
    assert worker["items_per_cpu_s"] > 0 and worker["prepare_cpu_s_per_item_1_thread"] > 0
    assert 0 <= worker["worker_own_peak_mb"] < worker["worker_peak_rss_mb"]
    for row in data["per_gpu"]:
        cores = row["loader_cores_per_gpu"]
        assert cores == -(-row["gpu_items_per_s"] // worker["items_per_cpu_s"])
        assert row["loader_memory_per_gpu_gb"] < row["loader_memory_per_gpu_gb_upper"]
