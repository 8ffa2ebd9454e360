"""The training loop both trainers share: resume, epochs of batches, stop signals, finite checks and
checkpoints.

:class:`TrainingLoop` runs ``epochs`` epochs of optimiser steps over a
:class:`~cromss.training.distributed.ResumableSampler` and keeps the position (epoch, batches done
in it) a checkpoint needs to resume exactly. A non-finite loss stops the run before its step;
SIGTERM / SIGINT saves a checkpoint after the current step and stops; every ``checkpoint_every``
epochs (0: only on a signal) the finite weights are checkpointed. Pretraining
(:class:`cromss.training.pretrain.Trainer`) and fine-tuning
(:class:`cromss.training.finetune.FinetuneLoop`) fill in what differs: the data, the loss and
step, the epoch's record and what else the checkpoint holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from cromss import logs
from cromss.errors import CromssError
from cromss.training import checkpoint, distributed
from cromss.weights import files

CHECKPOINT = "checkpoint.pt"
StepHook = Callable[[int, int], None]
"""``on_step(epoch, batches_done)``, called after every optimiser step (progress, tests)."""


class TrainingLoop:
    """One run's position and skeleton; subclasses implement the hooks below ``-- hooks --``.

    ``stateful`` names the objects whose ``state_dict`` a checkpoint holds (model, optimiser, ...).
    """

    optimizer: torch.optim.Optimizer  # set by the subclass before ``super().__init__``
    scaler: torch.amp.GradScaler

    def __init__(self, *, out: Path, ctx: distributed.Context, epochs: int, batch_size: int,
                 checkpoint_every: int, sampler: distributed.ResumableSampler,
                 model: torch.nn.Module, stateful: dict[str, Any]):
        self.out, self.ctx, self.epochs, self.batch_size = out, ctx, epochs, batch_size
        self.checkpoint_every, self.sampler, self.model = checkpoint_every, sampler, model
        self.stateful = stateful
        self.epoch, self.step = 0, 0
        self.log: list[dict[str, Any]] = []
        self.seconds_before = 0.0  # time spent in the current epoch before a resume
        self.epoch_started = time.perf_counter()

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT

    # -- hooks ------------------------------------------------------------------------------
    def label(self) -> str:
        """The progress bar's name of the run."""
        raise NotImplementedError

    def begin_epoch(self) -> None:
        """Set up ``self.epoch`` (learning rate, train mode, the dataset's epoch)."""
        raise NotImplementedError

    def train_loader(self) -> DataLoader:
        """The epoch's batches, drawn through ``self.sampler``."""
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        """(loss, what :meth:`accumulate` needs besides it) of one batch."""
        raise NotImplementedError

    def backward(self, loss: torch.Tensor) -> None:
        """The optimiser step of a finite loss, through the subclass's ``optimizer`` and (mixed
        precision) ``scaler``."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def accumulate(self, loss: torch.Tensor, extra: Any, batch: dict[str, torch.Tensor]) -> None:
        """Add the step to the epoch's sums."""
        raise NotImplementedError

    def end_epoch(self, seconds: float) -> None:
        """Append the epoch's record to ``self.log`` and reset the sums."""
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must share with the run that resumes it."""
        raise NotImplementedError

    def saved_identity(self, state: dict[str, Any]) -> dict[str, Any]:
        """The :meth:`identity` a checkpoint was written with."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        """The rest of a checkpoint (the epoch's sums, the run's identity); may be collective."""
        raise NotImplementedError

    def restore_extra(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`extra_state` saved."""
        raise NotImplementedError

    def after_checkpoint(self) -> None:
        """Called on the main process after every checkpoint."""

    resumable_changes: tuple[str, ...] = ()
    """Settings that may differ between an interrupted run and the command that resumes it."""

    # -- state ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What a checkpoint holds."""
        return {**{name: obj.state_dict() for name, obj in self.stateful.items()},
                "epoch": self.epoch, "step": self.step, "log": self.log,
                "rng": checkpoint.rng_state(),
                "seconds": self.seconds_before + time.perf_counter() - self.epoch_started,
                **self.extra_state()}

    def restore(self, state: dict[str, Any], path: Path) -> None:
        """Continue from ``state`` (read from ``path``) if it is a checkpoint of this run."""
        checkpoint.check_same_run(self.saved_identity(state), self.identity(), path,
                                  self.resumable_changes)
        for name, obj in self.stateful.items():
            obj.load_state_dict(state[name])
        self.epoch, self.step, self.log = state["epoch"], state["step"], state["log"]
        self.restore_extra(state)
        # checkpoints of fine-tuning before this loop held no time
        self.seconds_before = state.get("seconds", 0.0) if self.step else 0.0
        checkpoint.set_rng_state(state["rng"])

    def resume(self) -> bool:
        """Restore the checkpoint in ``out`` if there is one; True if there was."""
        path = self.checkpoint_path
        found = path.is_file()
        if distributed.any_process(found, self.ctx) != distributed.all_processes(found, self.ctx):
            raise CromssError(f"{path}: seen by some training processes and not by others; the "
                              "output directory of a multi-node job must be on a file system "
                              "shared by all its nodes")
        if not found:
            return False
        self.restore(files.load(path, self.ctx.device), path)
        return True

    def save_checkpoint(self) -> None:
        state = self.state()
        if self.ctx.is_main:
            files.save(state, self.checkpoint_path)
            self.after_checkpoint()
        distributed.barrier(self.ctx)

    # -- the run ----------------------------------------------------------------------------
    def run(self, on_step: StepHook | None = None) -> None:
        """Train the remaining epochs (from where :meth:`resume` left the position)."""
        with checkpoint.catch_stop_signals() as stop:
            while self.epoch < self.epochs:
                self.epoch_started = time.perf_counter()
                self.train_epoch(stop, on_step)
                self.end_epoch(self.seconds_before + time.perf_counter() - self.epoch_started)
                self.epoch, self.step, self.seconds_before = self.epoch + 1, 0, 0.0
                every = self.checkpoint_every
                if every > 0 and self.epoch % every == 0 and self.epoch < self.epochs:
                    checkpoint.require_finite(self.model.state_dict(),
                                              f"the weights after epoch {self.epoch - 1}",
                                              self.checkpoint_path)
                    self.save_checkpoint()

    def train_epoch(self, stop: checkpoint.StopRequest, on_step: StepHook | None) -> None:
        """The epoch's remaining batches."""
        self.begin_epoch()
        self.sampler.set_epoch(self.epoch)
        self.sampler.skip(self.step, self.batch_size)
        loader = self.train_loader()
        bar = logs.Progress(f"{self.label()} epoch {self.epoch + 1}/{self.epochs}",
                            self.step + len(loader), "batches", enabled=self.ctx.is_main,
                            initial=self.step)
        for batch in loader:
            loss, extra = self.forward(batch)
            if distributed.any_process(not bool(torch.isfinite(loss)), self.ctx):
                raise CromssError(
                    f"loss is {float(loss.detach())} at epoch {self.epoch}, batch {self.step}: "
                    f"stopping; the last good checkpoint (if any) is kept at "
                    f"{self.checkpoint_path}")
            self.backward(loss)
            self.step += 1
            self.accumulate(loss, extra, batch)
            bar.update()
            bar.note(loss=float(loss.detach()))
            if on_step is not None:
                on_step(self.epoch, self.step)
            if distributed.any_process(bool(stop), self.ctx):
                self.save_checkpoint()
                raise CromssError(f"interrupted by signal {stop.signal} at epoch {self.epoch}, "
                                  f"batch {self.step}; checkpoint saved to "
                                  f"{self.checkpoint_path}: rerun the same command to resume")
        bar.close()
