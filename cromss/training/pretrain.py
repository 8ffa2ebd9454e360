"""CromSS pretraining (method §6): the loop with checkpoints, exact resume, DDP, AMP and a log.

``pretrain(store, settings, out)`` trains one variant and writes ``out/model.pt`` (the whole model
and its settings; ``cromss export-encoder`` takes each modality's encoder out with its model card)
and ``out/log.jsonl`` (one object per epoch).
``out/checkpoint.pt`` is written every ``checkpoint_every`` epochs and on SIGTERM / SIGINT (then
mid-epoch); the same command resumes from it and, on CPU, ends with the weights an uninterrupted
run would have reached. It is removed once the outputs are written.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from cromss import logs, losses, models
from cromss.atomic import ensure_writable, sweep
from cromss.cli import CromssError
from cromss.constants import IGNORE_INDEX
from cromss.selection import SelectionWeights
from cromss.training import checkpoint, distributed
from cromss.training.checkpoint import write_log
from cromss.training.datasets import PretrainDataset

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
RESUMABLE_CHANGES = ("epochs", "num_workers", "checkpoint_every")
"""Settings that may differ between an interrupted run and the command that resumes it."""


def split_indices(num_samples: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of the locations into (train, validation); at least one of each."""
    if num_samples < 2:
        raise ValueError(f"pretraining needs at least 2 locations, the store has {num_samples}")
    order = np.random.default_rng(seed).permutation(num_samples)
    num_val = min(max(1, round(num_samples * val_fraction)), num_samples - 1)
    return sorted(order[num_val:].tolist()), sorted(order[:num_val].tolist())


def modalities(settings: dict[str, Any]) -> tuple[str, ...]:
    """The modalities a variant trains: one for single-modal fusions, both otherwise."""
    fusion = settings["fusion"]
    return (fusion.removeprefix("single_"),) if fusion.startswith("single_") else ("s1", "s2")


def variant_loss(logits_s1: torch.Tensor | None, logits_s2: torch.Tensor | None,
                 labels: torch.Tensor, soft: torch.Tensor, epoch: int, settings: dict[str, Any]
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The CromSS loss of a single- or multi-modal variant, its parts, and the label selection
    weights Wl per modality (all valid pixels for a single-modal variant)."""
    weights = None
    if logits_s1 is not None and logits_s2 is not None:
        weights = losses.selection_weights(torch.softmax(logits_s1.detach().float(), 1),
                                           torch.softmax(logits_s2.detach().float(), 1),
                                           labels, epoch, settings)
    total, parts = losses.cromss_loss(logits_s1, logits_s2, labels, soft, epoch, settings, weights)
    if weights is not None:
        return total, parts, {"s1": weights.label_1, "s2": weights.label_2}
    valid = (labels != IGNORE_INDEX).float()
    return total, parts, {"s1" if logits_s1 is not None else "s2": valid}


def validation_loss(logits_s1: torch.Tensor | None, logits_s2: torch.Tensor | None,
                    labels: torch.Tensor, settings: dict[str, Any]) -> torch.Tensor:
    """The monitored validation loss as the reference computes it (``_calculate_loss(train=False)``
    of its ``pl_pretrain_mm_sscom.py``): the hard noisy labels, no smoothing, and every selection
    and consistency weight 1 (only ignored pixels weigh 0), so it does not move with the ramp."""
    valid = (labels != IGNORE_INDEX).float()
    ones = SelectionWeights(valid, valid, valid, valid, kept_proportion=1.0)
    total, _ = losses.cromss_loss(logits_s1, logits_s2, labels, None, 0, settings, ones)
    return total


class EpochTotals:
    """Sums over one epoch's batches (loss, parts, label and selection precision counts)."""

    KEYS = ("batches", "loss", "label_right", "label_total",
            "selected_right_s1", "selected_s1", "selected_right_s2", "selected_s2")

    def __init__(self, values: dict[str, float] | None = None):
        self.values: dict[str, float] = dict(values or {})

    def add(self, key: str, value: float) -> None:
        self.values[key] = self.values.get(key, 0.0) + float(value)

    def reduced(self, ctx: distributed.Context) -> dict[str, float]:
        keys = sorted(set(self.values) | set(self.KEYS))
        summed = distributed.all_reduce_sum(
            torch.tensor([self.values.get(k, 0.0) for k in keys], dtype=torch.float64), ctx)
        return dict(zip(keys, summed.tolist()))


def _share(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def epoch_record(epoch: int, lr: float, train: dict[str, float], val_loss: float,
                 has_truth: bool, seconds: float) -> dict[str, Any]:
    """One line of log.jsonl from the reduced sums of an epoch."""
    batches = max(train["batches"], 1.0)
    record: dict[str, Any] = {"epoch": epoch, "lr": lr, "train_loss": train["loss"] / batches,
                              "val_loss": val_loss}
    for key, value in sorted(train.items()):
        if key.startswith("part_"):
            record[key.removeprefix("part_")] = value / batches
    if has_truth:
        record["label_precision"] = _share(train["label_right"], train["label_total"])
        for m in ("s1", "s2"):
            record[f"selection_precision_{m}"] = _share(train[f"selected_right_{m}"],
                                                        train[f"selected_{m}"])
    record.setdefault("kept_proportion", 1.0)
    record["time_s"] = round(seconds, 3)
    return record


def add_precision(totals: EpochTotals, batch: dict[str, torch.Tensor],
                  weights: dict[str, torch.Tensor]) -> None:
    """Count right noisy labels overall and among the selected pixels (weighted by Wl)."""
    labels, truth = batch["label"], batch["truth"]
    valid = labels != IGNORE_INDEX
    right = (labels == truth) & valid
    totals.add("label_right", right.sum())
    totals.add("label_total", valid.sum())
    for m, w in weights.items():
        totals.add(f"selected_right_{m}", (w * right).sum())
        totals.add(f"selected_{m}", (w * valid).sum())


class Trainer:
    """One pretraining run: model, optimiser, data and the state a checkpoint captures."""

    def __init__(self, store: Path, settings: dict[str, Any], out: Path,
                 ctx: distributed.Context):
        self.store, self.settings, self.out, self.ctx = store, settings, out, ctx
        self.seed = int(settings.get("seed", 42))
        self.modalities = modalities(settings)
        self.amp = bool(settings.get("amp", True)) and ctx.device.type == "cuda"
        train_idx, val_idx = split_indices(_num_samples(store), settings.get("val_fraction", 0.05),
                                           self.seed)
        self.train_set = PretrainDataset(store, train_idx, settings, train=True)
        self.val_set = PretrainDataset(store, val_idx, settings, train=False)
        self.sampler = distributed.ResumableSampler(self.train_set, ctx, self.seed)
        self.val_sampler = distributed.ResumableSampler(self.val_set, ctx, self.seed,
                                                        shuffle=False)
        torch.manual_seed(self.seed)
        model = models.build_model(settings).to(ctx.device)
        if ctx.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.net = DistributedDataParallel(model) if ctx.distributed else model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"],
                                          weight_decay=settings.get("weight_decay", 0.0),
                                          fused=True)  # one kernel, not a loop over tensors
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=settings.get("plateau_factor", 0.5),
            patience=settings.get("plateau_patience", 30))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.epoch, self.step, self.totals, self.log = 0, 0, EpochTotals(), []
        self.seconds_before = 0.0  # time spent in the current epoch before a resume
        self.epoch_started = time.perf_counter()

    # -- state ------------------------------------------------------------------------------
    def state(self, totals: dict[str, float]) -> dict[str, Any]:
        """What a checkpoint holds; ``totals`` are the epoch's sums over all processes."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "epoch": self.epoch, "step": self.step, "totals": totals,
                "log": self.log, "rng": checkpoint.rng_state(), "settings": self.settings,
                "seconds": self.seconds_before + time.perf_counter() - self.epoch_started,
                "world_size": self.ctx.world_size}

    def restore(self, state: dict[str, Any], path: Path) -> None:
        checkpoint.check_same_run({**state["settings"], "processes": state["world_size"]},
                                  {**self.settings, "processes": self.ctx.world_size}, path,
                                  RESUMABLE_CHANGES)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = state["epoch"], state["step"]
        # the saved sums cover all processes: one process carries them on
        self.totals = EpochTotals(state["totals"] if self.ctx.is_main else None)
        self.log = state["log"]
        self.seconds_before = state["seconds"] if self.step else 0.0
        checkpoint.set_rng_state(state["rng"])

    def save_checkpoint(self) -> None:
        totals = self.totals.reduced(self.ctx)
        if self.ctx.is_main:
            checkpoint.save(self.state(totals), self.out / CHECKPOINT)
            write_log(self.log, self.out / "log.jsonl")
        distributed.barrier(self.ctx)

    # -- steps ------------------------------------------------------------------------------
    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        channels_last = self.ctx.device.type == "cuda"
        return {k: v.to(self.ctx.device, non_blocking=True,
                        memory_format=torch.channels_last if channels_last and v.dim() == 4
                        else torch.preserve_format)
                for k, v in batch.items()}

    def loss(self, batch: dict[str, torch.Tensor], epoch: int
             ) -> tuple[torch.Tensor, dict[str, Any], dict[str, torch.Tensor]]:
        """Forward pass and the variant's loss; also the label selection weights per modality."""
        with torch.autocast(self.ctx.device.type, enabled=self.amp):
            logits = self.net(batch["s1"], batch["s2"])
        logits = {m: lg.float() for m, lg in zip(("s1", "s2"), logits) if lg is not None}
        return variant_loss(logits.get("s1"), logits.get("s2"), batch["label"], batch["soft"],
                            epoch, self.settings)

    def train_epoch(self, stop: checkpoint.StopRequest,
                    on_step: Callable[[int, int], None] | None) -> None:
        self.net.train()
        self.train_set.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch)
        self.sampler.start = self.step * self.settings["batch_size"]
        loader = self._loader(self.train_set, self.sampler)
        bar = tqdm(loader, desc=f"{self.settings.get('name', 'pretrain')} epoch {self.epoch}",
                   disable=None if self.ctx.is_main else True, leave=False,
                   dynamic_ncols=True)
        for batch in bar:
            batch = self._to_device(batch)
            total, parts, weights = self.loss(batch, self.epoch)
            if distributed.any_process(not bool(torch.isfinite(total)), self.ctx):
                raise CromssError(
                    f"loss is {float(total.detach())} at epoch {self.epoch}, batch {self.step}: stopping; "
                    f"the last good checkpoint (if any) is kept at {self.out / CHECKPOINT}")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            self._accumulate(total, parts, weights, batch)
            bar.set_postfix(loss=f"{float(total.detach()):.4f}")
            if on_step is not None:
                on_step(self.epoch, self.step)
            if distributed.any_process(bool(stop), self.ctx):
                self.save_checkpoint()
                raise CromssError(f"interrupted by signal {stop.signal} at epoch {self.epoch}, "
                                  f"batch {self.step}; checkpoint saved to "
                                  f"{self.out / CHECKPOINT}: rerun the same command to resume")

    def _accumulate(self, total: torch.Tensor, parts: dict[str, Any],
                    weights: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> None:
        self.totals.add("batches", 1)
        self.totals.add("loss", total.detach())
        for key, value in parts.items():
            self.totals.add(f"part_{key}", float(value))
        if "truth" in batch:
            add_precision(self.totals, batch, weights)

    @torch.no_grad()
    def validate(self) -> float:
        self.net.eval()
        loss_sum, count = 0.0, 0
        for batch in self._loader(self.val_set, self.val_sampler):
            batch = self._to_device(batch)
            with torch.autocast(self.ctx.device.type, enabled=self.amp):
                logits = self.net(batch["s1"], batch["s2"])
            logits_s1, logits_s2 = (None if lg is None else lg.float() for lg in logits)
            total = validation_loss(logits_s1, logits_s2, batch["label"], self.settings)
            loss_sum += float(total) * len(batch["label"])
            count += len(batch["label"])
        summed = distributed.all_reduce_sum(torch.tensor([loss_sum, count], dtype=torch.float64),
                                            self.ctx)
        return float(summed[0] / summed[1])

    def _loader(self, dataset: PretrainDataset, sampler) -> DataLoader:
        workers = int(self.settings.get("num_workers", 0))
        return DataLoader(dataset, batch_size=self.settings["batch_size"], sampler=sampler,
                          num_workers=workers, pin_memory=self.ctx.device.type == "cuda",
                          persistent_workers=False)

    # -- the run ----------------------------------------------------------------------------
    def run(self, on_step: Callable[[int, int], None] | None = None) -> None:
        every = int(self.settings.get("checkpoint_every", 1))
        with checkpoint.catch_stop_signals() as stop:
            while self.epoch < self.settings["epochs"]:
                self.epoch_started = time.perf_counter()
                self.train_epoch(stop, on_step)
                train = self.totals.reduced(self.ctx)
                val_loss = self.validate()
                checkpoint.require_finite(val_loss, f"the validation loss of epoch {self.epoch}",
                                          self.out / CHECKPOINT)
                lr = self.optimizer.param_groups[0]["lr"]
                self.scheduler.step(val_loss)
                self.log.append(epoch_record(self.epoch, lr, train, val_loss,
                                             self.train_set.has_truth,
                                             self.seconds_before + time.perf_counter()
                                             - self.epoch_started))
                if self.ctx.is_main:
                    log.info(logs.epoch_line(self.log[-1], self.settings["epochs"]))
                self.epoch, self.step, self.totals = self.epoch + 1, 0, EpochTotals()
                self.seconds_before = 0.0
                if every > 0 and self.epoch % every == 0 and self.epoch < self.settings["epochs"]:
                    self.save_checkpoint()

    def write_outputs(self) -> None:
        checkpoint.require_finite(self.model.state_dict(), "the final weights",
                                  self.out / CHECKPOINT)
        if self.ctx.is_main:
            models.save_model(self.out / MODEL, self.model, self.settings,
                              models.provenance(self.store))
            write_log(self.log, self.out / "log.jsonl")
            (self.out / CHECKPOINT).unlink(missing_ok=True)
        distributed.barrier(self.ctx)


def _num_samples(store: Path) -> int:
    from cromss.data.store import open_arrays

    if not Path(store).is_dir():
        raise FileNotFoundError(f"{store}: no such Zarr store")
    return int(open_arrays(store)["label"].shape[0])


def pretrain(store: str | os.PathLike, settings: dict[str, Any], out: str | os.PathLike,
             *, on_step: Callable[[int, int], None] | None = None) -> None:
    """Train one variant (resuming from ``out/checkpoint.pt`` if there is one) and write its outputs.

    ``on_step(epoch, batches_done)`` is called after every optimiser step (progress hooks, tests).
    """
    out = Path(out)
    ctx = distributed.setup()
    try:
        ensure_writable(out)
        sweep(out / CHECKPOINT)
        if ctx.is_main:
            log.info("pretraining %s in %d process(es) on %s", out, ctx.world_size, ctx.device)
        trainer = Trainer(Path(store), settings, out, ctx)
        if (out / CHECKPOINT).is_file():
            trainer.restore(checkpoint.load(out / CHECKPOINT, ctx.device), out / CHECKPOINT)
            if ctx.is_main:
                log.info("resuming %s at epoch %s, batch %s", out, trainer.epoch, trainer.step)
        trainer.run(on_step)
        trainer.write_outputs()
    finally:
        distributed.teardown(ctx)


