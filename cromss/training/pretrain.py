"""CromSS pretraining (method §6): the loop with checkpoints, exact resume, DDP, AMP and a log.

``pretrain(store, settings, out)`` trains one variant and writes ``out/model.pt`` (the whole model
and its settings; ``cromss weights export`` takes each modality's encoder out with its model card)
and ``out/log.jsonl`` (one object per epoch).
``out/checkpoint.pt`` is written every ``checkpoint_every`` epochs and on SIGTERM / SIGINT (then
mid-epoch); the same command resumes from it and, on CPU, ends with the weights an uninterrupted
run would have reached. It is removed once the outputs are written.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler

from cromss import logs, losses, models
from cromss.atomic import ensure_writable, sweep
from cromss.constants import IGNORE_INDEX
from cromss.errors import CromssError
from cromss.selection import SelectionWeights
from cromss.settings import Pretrain, as_dict
from cromss.training import checkpoint, distributed
from cromss.training.checkpoint import write_log
from cromss.training.datasets import PretrainDataset, pretrain_loader
from cromss.weights.cards import provenance
from cromss.weights.trained import save_model
from cromss.training.loop import CHECKPOINT, StepHook, TrainingLoop

log = logging.getLogger(__name__)

MODEL = "model.pt"
RESUMABLE_CHANGES = ("epochs", "num_workers", "checkpoint_every")
"""Settings that may differ between an interrupted run and the command that resumes it."""


def split_indices(num_samples: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of the locations into (train, validation); at least one of each."""
    if num_samples < 2:
        raise CromssError(f"pretraining needs at least 2 locations, the store has {num_samples}")
    order = np.random.default_rng(seed).permutation(num_samples)
    num_val = min(max(1, round(num_samples * val_fraction)), num_samples - 1)
    return sorted(order[num_val:].tolist()), sorted(order[:num_val].tolist())


def variant_loss(logits_s1: torch.Tensor | None, logits_s2: torch.Tensor | None,
                 labels: torch.Tensor, soft: torch.Tensor, epoch: int, settings: Pretrain
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The CromSS loss of a single- or multi-modal variant, its parts, and the label selection
    weights Wl per modality (all valid pixels for a single-modal variant)."""
    weights = None
    if logits_s1 is not None and logits_s2 is not None:
        weights = losses.selection_weights(torch.softmax(logits_s1.detach().float(), 1),
                                           torch.softmax(logits_s2.detach().float(), 1),
                                           labels, epoch, settings.selection)
    total, parts = losses.cromss_loss(logits_s1, logits_s2, labels, soft, epoch,
                                      settings.selection, settings.consistency_weight, weights)
    if weights is not None:
        return total, parts, {"s1": weights.label_1, "s2": weights.label_2}
    valid = (labels != IGNORE_INDEX).float()
    return total, parts, {"s1" if logits_s1 is not None else "s2": valid}


def forward_loss(net: torch.nn.Module, batch: dict[str, torch.Tensor], epoch: int,
                 settings: Pretrain, amp_dtype: torch.dtype | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A training step's forward pass (under autocast in ``amp_dtype``, None for float32) and
    its :func:`variant_loss` in float32, from a batch made by ``PretrainDataset.prepare``."""
    autocast = (torch.autocast(batch["label"].device.type, dtype=amp_dtype)
                if amp_dtype is not None else contextlib.nullcontext())
    with autocast:
        logits = net(batch["s1"], batch["s2"])
    logits = {m: lg.float() for m, lg in zip(("s1", "s2"), logits) if lg is not None}
    return variant_loss(logits.get("s1"), logits.get("s2"), batch["label"], batch["soft"],
                        epoch, settings)


def validation_loss(logits_s1: torch.Tensor | None, logits_s2: torch.Tensor | None,
                    labels: torch.Tensor, consistency_weight: float) -> torch.Tensor:
    """The monitored validation loss as the reference computes it (``_calculate_loss(train=False)``
    of its ``pl_pretrain_mm_sscom.py``): the hard noisy labels, no smoothing, and every selection
    and consistency weight 1 (only ignored pixels weigh 0), so it does not move with the ramp."""
    valid = (labels != IGNORE_INDEX).float()
    ones = SelectionWeights(valid, valid, valid, valid, kept_proportion=1.0)
    total, _ = losses.cromss_loss(logits_s1, logits_s2, labels, None, 0, None,
                                  consistency_weight, ones)
    return total


class EpochTotals:
    """Sums over one epoch's batches (loss, parts, label and selection precision counts)."""

    KEYS = ("batches", "loss", "label_right", "label_total",
            "selected_right_s1", "selected_s1", "selected_right_s2", "selected_s2")

    def __init__(self, values: dict[str, float] | None = None):
        self.values: dict[str, float] = dict(values or {})

    def add(self, key: str, value: float | torch.Tensor) -> None:
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


class Trainer(TrainingLoop):
    """One pretraining run: model, optimiser, data and the state a checkpoint captures."""

    resumable_changes = RESUMABLE_CHANGES

    def __init__(self, store: Path, settings: Pretrain, out: Path, ctx: distributed.Context):
        self.store, self.settings = store, settings
        self.seed = settings.seed
        self.modalities = settings.modalities
        self.amp = settings.amp and ctx.device.type == "cuda"
        train_idx, val_idx = split_indices(_num_samples(store), settings.val_fraction, self.seed)
        self.train_set = PretrainDataset(store, train_idx, settings, train=True)
        self.val_set = PretrainDataset(store, val_idx, settings, train=False,
                                       augment=settings.val_augment)
        sampler = distributed.ResumableSampler(self.train_set, ctx, self.seed)
        self.val_sampler = distributed.ResumableSampler(self.val_set, ctx, self.seed,
                                                        shuffle=False)
        if settings.val_drop_last and self.val_sampler.num_samples < settings.val_batch_size:
            raise CromssError(
                f"pretraining {settings.name or ''}: {len(val_idx)} validation locations give "
                f"{self.val_sampler.num_samples} per process, fewer than val_batch_size "
                f"{settings.val_batch_size}: with val_drop_last nothing would be validated; raise "
                "val_fraction or lower val_batch_size")
        torch.manual_seed(self.seed)
        model = models.build_model(as_dict(settings)).to(ctx.device)
        if ctx.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.net = DistributedDataParallel(model) if ctx.distributed else model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr,
                                          weight_decay=settings.weight_decay,
                                          fused=True)  # one kernel, not a loop over tensors
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=settings.plateau_factor, patience=settings.plateau_patience)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.totals = EpochTotals()
        super().__init__(out=out, ctx=ctx, epochs=settings.epochs, batch_size=settings.batch_size,
                         checkpoint_every=settings.checkpoint_every,
                         sampler=sampler, model=model,
                         stateful={"model": model, "optimizer": self.optimizer,
                                   "scheduler": self.scheduler, "scaler": self.scaler})

    # -- state ------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        return {**as_dict(self.settings), "processes": self.ctx.world_size}

    def saved_identity(self, state: dict[str, Any]) -> dict[str, Any]:
        return {**state["settings"], "processes": state["world_size"]}

    def extra_state(self) -> dict[str, Any]:
        """The epoch's sums over all processes (a collective call), settings and world size."""
        return {"totals": self.totals.reduced(self.ctx), "settings": as_dict(self.settings),
                "world_size": self.ctx.world_size}

    def restore_extra(self, state: dict[str, Any]) -> None:
        # the saved sums cover all processes: one process carries them on, the others start
        # from zeros under the same keys (the all-reduce of the sums needs the same keys
        # everywhere, also when no batch of the epoch is left to add them)
        totals = state["totals"]
        self.totals = EpochTotals(totals if self.ctx.is_main else dict.fromkeys(totals, 0.0))

    def after_checkpoint(self) -> None:
        write_log(self.log, self.out / "log.jsonl")

    # -- steps ------------------------------------------------------------------------------
    def _to_device(self, batch: dict[str, torch.Tensor], dataset: PretrainDataset
                   ) -> dict[str, torch.Tensor]:
        """The model batch, made on the device by the dataset's :class:`BatchPreparation`."""
        prepared = dataset.prepare(batch, self.ctx.device)
        if self.ctx.device.type != "cuda":
            return prepared
        return {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                for k, v in prepared.items()}

    def loss(self, batch: dict[str, torch.Tensor], epoch: int
             ) -> tuple[torch.Tensor, dict[str, Any], dict[str, torch.Tensor]]:
        """Forward pass and the variant's loss; also the label selection weights per modality."""
        return forward_loss(self.net, batch, epoch, self.settings,
                            torch.float16 if self.amp else None)

    def label(self) -> str:
        return self.settings.name or "pretrain"

    def begin_epoch(self) -> None:
        self.net.train()
        self.train_set.set_epoch(self.epoch)

    def train_loader(self) -> DataLoader:
        return self._loader(self.train_set, self.sampler)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        batch = self._to_device(batch, self.train_set)
        total, parts, weights = self.loss(batch, self.epoch)
        return total, (parts, weights, batch)

    def accumulate(self, loss: torch.Tensor, extra: Any, batch: dict[str, torch.Tensor]) -> None:
        parts, weights, batch = extra  # the batch on the device
        self.totals.add("batches", 1)
        self.totals.add("loss", loss.detach())
        for key, value in parts.items():
            self.totals.add(f"part_{key}", float(value))
        if "truth" in batch:
            add_precision(self.totals, batch, weights)

    def end_epoch(self, seconds: float) -> None:
        train = self.totals.reduced(self.ctx)
        val_loss = self.validate()
        checkpoint.require_finite(val_loss, f"the validation loss of epoch {self.epoch}",
                                  self.checkpoint_path)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step(val_loss)
        self.log.append(epoch_record(self.epoch, lr, train, val_loss, self.train_set.has_truth,
                                     seconds))
        if self.ctx.is_main:
            log.info(logs.epoch_line(self.log[-1], self.epochs))
        self.totals = EpochTotals()

    @torch.no_grad()
    def validate(self) -> float:
        self.net.eval()
        self.val_set.set_epoch(self.epoch)
        loss_sum, count = 0.0, 0
        loader = self._loader(self.val_set, self.val_sampler, self.settings.val_batch_size,
                              self.settings.val_drop_last)
        for batch in loader:
            batch = self._to_device(batch, self.val_set)
            with torch.autocast(self.ctx.device.type, enabled=self.amp):
                logits = self.net(batch["s1"], batch["s2"])
            logits_s1, logits_s2 = (None if lg is None else lg.float() for lg in logits)
            total = validation_loss(logits_s1, logits_s2, batch["label"],
                                    self.settings.consistency_weight)
            loss_sum += float(total) * len(batch["label"])
            count += len(batch["label"])
        summed = distributed.all_reduce_sum(torch.tensor([loss_sum, count], dtype=torch.float64),
                                            self.ctx)
        return float(summed[0] / summed[1])

    def _loader(self, dataset: PretrainDataset, sampler: Sampler, batch_size: int | None = None,
                drop_last: bool = False) -> DataLoader:
        return pretrain_loader(dataset, sampler, batch_size or self.settings.batch_size,
                               drop_last=drop_last, num_workers=self.settings.num_workers,
                               pin_memory=self.ctx.device.type == "cuda")

    def write_outputs(self) -> None:
        checkpoint.require_finite(self.model.state_dict(), "the final weights",
                                  self.checkpoint_path)
        if self.ctx.is_main:
            save_model(self.out / MODEL, cast(models.CromssModel, self.model),
                       as_dict(self.settings),
                       provenance(self.store))
            write_log(self.log, self.out / "log.jsonl")
            self.checkpoint_path.unlink(missing_ok=True)
        distributed.barrier(self.ctx)


def _num_samples(store: Path) -> int:
    from cromss.data.store import open_arrays

    if not Path(store).is_dir():
        raise FileNotFoundError(f"{store}: no such Zarr store")
    return int(open_arrays(store)["label"].shape[0])


def pretrain(store: str | os.PathLike, settings: Pretrain, out: str | os.PathLike,
             *, on_step: StepHook | None = None) -> None:
    """Train one variant (resuming from ``out/checkpoint.pt`` if there is one) and write its outputs.

    ``on_step(epoch, batches_done)`` is called after every optimiser step (progress hooks, tests).
    """
    out = Path(out)
    ctx = distributed.setup()
    try:
        ensure_writable(out)
        if ctx.is_main:  # one sweeper: the others would race it for the same files
            sweep(out / CHECKPOINT)
        distributed.barrier(ctx)
        if ctx.is_main:
            log.info("pretraining %s in %d process(es) on %s", out, ctx.world_size, ctx.device)
        trainer = Trainer(Path(store), settings, out, ctx)
        if trainer.resume() and ctx.is_main:
            log.info("resuming %s at epoch %s, batch %s", out, trainer.epoch, trainer.step)
        trainer.run(on_step)
        trainer.write_outputs()
    finally:
        distributed.teardown(ctx)


