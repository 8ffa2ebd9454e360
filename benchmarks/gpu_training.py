"""Sections 1-3 of benchmarks/bench_gpu.py: pretraining steps by precision against their
ceiling, the loader feeding them, fine-tuning steps and the float32-vs-amp metrics."""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from gpu_common import (EPOCH, FUSIONS, ROOT, peak_gib, pretrain_batch, pretrain_settings,
                        reset_peak, run_cli, runs_on, synchronize, timed, to_device)
from cromss import models
from cromss.constants import TASKS
from cromss.settings import Pretrain
from cromss.training import finetune, pretrain
from cromss.training.datasets import PretrainDataset, pretrain_loader

# -- 1. pretraining steps --------------------------------------------------------------------------

PRETRAIN_MODES = {  # name: (autocast dtype, channels_last, torch.compile)
    "float32": (None, False, False),
    "float32_channels_last": (None, True, False),
    "float16_amp_channels_last": (torch.float16, True, False),  # what the trainer runs on CUDA
    "bfloat16": (torch.bfloat16, False, False),
    "bfloat16_channels_last": (torch.bfloat16, True, False),
    "bfloat16_channels_last_compile": (torch.bfloat16, True, True),
}


class PretrainStep:
    """The trainer's step (``pretrain.forward_loss``: forward under autocast, CromSS loss with
    selection and the loader's smoothed targets; GradScaler; fused Adam; one host sync for the
    finite-loss check) and its ceiling: the same nets' forward + backward + Adam with the sum of
    the logits' means as loss (no CromSS terms) on random inputs of the same shape."""

    def __init__(self, settings: dict[str, Any], batch: dict[str, torch.Tensor],
                 device: torch.device, mode: str):
        dtype, channels_last, compiled = PRETRAIN_MODES[mode]
        torch.manual_seed(0)
        model = models.build_model(settings).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.net = torch.compile(model) if compiled else model
        self.settings, self.dtype, self.device = Pretrain.parse(settings), dtype, device
        self.optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"],
                                          weight_decay=settings["weight_decay"],
                                          fused=True)
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16
                                           and device.type == "cuda")
        self.batch = to_device(batch, device, channels_last)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.noise = {m: torch.rand_like(self.batch[m]).contiguous(memory_format=fmt)
                      for m in ("s1", "s2")}
        self.nonfinite = 0

    def _update(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def cromss(self) -> None:
        total, _, _ = pretrain.forward_loss(self.net, self.batch, EPOCH, self.settings, self.dtype)
        if not bool(torch.isfinite(total)):  # the trainer's check; it stops the run
            self.nonfinite += 1
            self.optimizer.zero_grad(set_to_none=True)
            return
        self._update(total)

    def ceiling(self) -> None:
        autocast = (torch.autocast(self.device.type, dtype=self.dtype) if self.dtype
                    else contextlib.nullcontext())
        with autocast:
            logits = self.net(self.noise["s1"], self.noise["s2"])
        self._update(sum(lg.float().mean() for lg in logits if lg is not None))


def bench_pretrain(stores: dict[str, Path], size: dict[str, Any], device: torch.device,
                   modes: list[str]) -> list[dict[str, Any]]:
    rows = []
    for fusion in FUSIONS:
        settings = pretrain_settings(fusion, size)
        batch = pretrain_batch(stores["nol"], settings, size["locations"])
        for mode in modes:
            row = {"fusion": fusion, "mode": mode, "batch": size["batch"], "crop": size["crop"],
                   "encoder": size["encoder"]}
            try:
                reset_peak(device)
                started = time.perf_counter()
                step = PretrainStep(settings, batch, device, mode)
                # interleaved: ceiling, CromSS, ceiling, CromSS; the faster of each
                times = {"ceiling": [], "cromss": []}
                for _ in range(size["reps"]):
                    for kind in times:
                        times[kind].append(timed(getattr(step, kind), size["steps"],
                                                 size["warmup"], device))
                best = {kind: min(values) for kind, values in times.items()}
                row.update({
                    "samples_per_s": round(size["batch"] / best["cromss"], 2),
                    "ceiling_samples_per_s": round(size["batch"] / best["ceiling"], 2),
                    "ratio_to_ceiling": round(best["ceiling"] / best["cromss"], 3),
                    "step_ms": round(1000 * best["cromss"], 2),
                    "peak_gib": peak_gib(device),
                    "nonfinite_losses": step.nonfinite,
                    "defect": (f"{step.nonfinite} non-finite losses" if step.nonfinite
                               else None),
                    "seconds_with_setup": round(time.perf_counter() - started, 1)})
                del step
            except Exception as err:  # noqa: BLE001 - a failing mode is a finding, not a crash
                row["error"] = f"{type(err).__name__}: {err}"[:500]
            rows.append(row)
            print(f"pretrain {fusion:6s} {mode:32s} {row.get('samples_per_s', row.get('error'))}",
                  flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


# -- 2. the loader feeding the GPU -----------------------------------------------------------------

def bench_loader(stores: dict[str, Path], size: dict[str, Any], device: torch.device,
                 mode: str) -> dict[str, Any]:
    """Late fusion (the heavier loader: same items, two full nets) in ``mode``: the trainer's
    step fed by a DataLoader as the trainer builds it, with N workers, and the batch prepared on
    the device (targets, scaling, augmentation) as the trainer does; the GPU's busy share is the
    samples per second over those of the same step on a resident batch."""
    settings = pretrain_settings("late", size)
    batch_size = size["batch"]
    step = PretrainStep(settings, pretrain_batch(stores["nol"], settings, size["locations"]),
                        device, mode)
    _, channels_last, _ = PRETRAIN_MODES[mode]
    resident = batch_size / timed(step.cromss, size["steps"], size["warmup"], device)
    # the training step's own share of the loading: the stored batch made into the model batch
    # on the device (targets, scaling, flips, rotations), from pinned host memory as in training
    stored_set = PretrainDataset(stores["nol"], [i % size["locations"] for i in range(
        batch_size)], Pretrain.parse(settings), train=True)
    stored_set.set_epoch(EPOCH)
    stored = stored_set.__getitems__(list(range(batch_size)))
    if device.type == "cuda":
        stored = {key: value.pin_memory() for key, value in stored.items()}
    prepare_s = timed(lambda: stored_set.prepare(stored, device), size["steps"], size["warmup"],
                      device)
    print(f"prepare on {device.type}: {prepare_s * 1e3:.1f} ms per batch of {batch_size}",
          flush=True)
    rows = []
    for workers in size["workers"]:
        rounds = 3  # the first round of batches (one per worker) starts the workers: not timed
        per_round = max(workers, 1)
        indices = [i % size["locations"] for i in range(batch_size * per_round * rounds)]
        dataset = PretrainDataset(stores["nol"], indices, Pretrain.parse(settings), train=True)
        dataset.set_epoch(EPOCH)
        loader = pretrain_loader(dataset, None, batch_size, num_workers=workers,
                                 pin_memory=device.type == "cuda")  # as the trainer builds it
        started, count = None, 0
        for k, batch in enumerate(loader):
            step.batch = to_device(dataset.prepare(batch, device), device, channels_last)
            step.cromss()
            if k == per_round - 1:
                synchronize(device)
                started = time.perf_counter()
            elif k >= per_round:
                count += batch_size
        synchronize(device)
        rate = count / (time.perf_counter() - started)
        rows.append({"workers": workers, "samples_per_s": round(rate, 2),
                     "gpu_busy_share": round(min(rate / resident, 1.0), 3),
                     "items_per_worker_s": round(rate / per_round, 2)})
        print(f"loader workers={workers:2d} {rate:8.1f} samples/s, busy "
              f"{rows[-1]['gpu_busy_share']:.2f}", flush=True)
    # cores per GPU: the resident rate over the rate of one worker where the loader is the
    # bottleneck (busy share under 0.9); the most workers measured, for contention on the cores
    bound = [r for r in rows if r["workers"] and r["gpu_busy_share"] < 0.9] or \
        [r for r in rows if r["workers"]]
    basis = bound[-1] if bound else rows[-1]
    return {"fusion": "late", "mode": mode, "batch": batch_size, "crop": size["crop"],
            "world_px": size["world_px"], "resident_samples_per_s": round(resident, 2),
            "prepare_s_per_batch": round(prepare_s, 4),
            "rows": rows, "cores_per_gpu": math.ceil(resident / basis["items_per_worker_s"]),
            "cores_per_gpu_basis_workers": basis["workers"]}


# -- 3. fine-tuning --------------------------------------------------------------------------------

FINETUNE_MODES = {"float32": None, "float16_amp": torch.float16, "bfloat16": torch.bfloat16}
def bench_finetune_steps(size: dict[str, Any], device: torch.device) -> list[dict[str, Any]]:
    """A fine-tuning step (``finetune.training_loss``: the task's decoder on a ResNet encoder, CE +
    Dice; GradScaler for float16; Adam) at the task's paper crop, batch of the paper's config."""
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())["finetune"]
    rows = []
    for task, (_, classes, _, arch) in TASKS.items():
        crop = size["ft_crop"] or paper["crop"][task]
        for mode, dtype in FINETUNE_MODES.items():
            if not runs_on(dtype, device):
                continue
            row = {"task": task, "decoder": arch, "mode": mode, "crop": crop,
                   "batch": size["ft_batch"], "encoder": size["encoder"]}
            try:
                reset_peak(device)
                torch.manual_seed(0)
                model = finetune.build_downstream(task, size["encoder"], 13).to(device).train()
                optimizer = torch.optim.Adam(model.parameters(), lr=paper["lr"],
                                             fused=True)
                scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16
                                              and device.type == "cuda")
                dice = finetune.dice_loss()
                image = torch.rand(size["ft_batch"], 13, crop, crop, device=device)
                labels = torch.randint(0, len(classes), (size["ft_batch"], crop, crop),
                                       device=device)
                losses = []

                def step() -> None:
                    loss = finetune.training_loss(model, image, labels, dice, dtype)
                    losses.append(loss.detach())
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()

                seconds = min(timed(step, size["ft_steps"], size["warmup"], device)
                              for _ in range(size["reps"]))
                finite = bool(torch.isfinite(torch.stack(losses)).all())
                row.update(samples_per_s=round(size["ft_batch"] / seconds, 2),
                           step_ms=round(1000 * seconds, 2), peak_gib=peak_gib(device),
                           losses_finite=finite,
                           defect=None if finite else "non-finite loss")
            except Exception as err:  # noqa: BLE001
                row["error"] = f"{type(err).__name__}: {err}"[:500]
            rows.append(row)
            print(f"finetune {task:8s} {mode:12s} {row.get('samples_per_s', row.get('error'))}",
                  flush=True)
    return rows


def bench_finetune_metrics(stores: dict[str, Path], work: Path, size: dict[str, Any],
                           device: torch.device) -> dict[str, Any]:
    """`cromss finetune --test` on the tiny DW store, float32 against ``amp: true``, over seeds:
    the precisions agree when their mean mIoUs differ by at most two standard errors of the
    difference (from the seeds' spread) plus 1 point (mIoU is in percent)."""
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())["finetune"]
    settings = {key: paper[key] for key in ("lr", "min_lr", "weight_decay", "frozen_batchnorm")}
    settings.update(epochs=size["ft_epochs"], cosine_epochs=size["ft_epochs"],
                    batch_size=max(2, size["ft_batch"] // 4),
                    crop={"dfc2020": 32, "dw": size["ft_metric_crop"], "osm": 32},
                    encoder=size["encoder"], checkpoint_every=0)
    runs: dict[str, list[float]] = {}
    model_path = None
    for amp in (False, True):
        key = "float16_amp" if amp else "float32"
        runs[key] = []
        for seed in size["ft_seeds"]:
            out = work / "finetune" / key / f"seed{seed}"
            run_cli("finetune", "run", "--task", "dw", "--modality", "s2", "--encoder", "random",
                    "--setting", "finetuned", "--seed", seed, "--train", stores["dw_train"],
                    "--settings", json.dumps({**settings, "amp": amp}), "--out", out,
                    "--test", stores["dw_test"])
            metrics = json.loads((out / "metrics.json").read_text())
            runs[key].append(metrics["strict"]["mIoU"])
            model_path = model_path or out / "model.pt"
    means = {k: float(np.mean(v)) for k, v in runs.items()}
    stds = {k: float(np.std(v, ddof=1)) for k, v in runs.items()}
    margin = 2 * math.sqrt(sum(s**2 / len(size["ft_seeds"]) for s in stds.values())) + 1.0
    difference = abs(means["float16_amp"] - means["float32"])
    return {"task": "dw", "modality": "s2", "encoder": size["encoder"],
            "epochs": size["ft_epochs"], "seeds": list(size["ft_seeds"]), "miou": runs,
            "mean_miou": means, "std_miou": stds, "difference": round(difference, 4),
            "margin": round(margin, 4), "agree": difference <= margin,
            "amp_effective": device.type == "cuda", "model": str(model_path)}


