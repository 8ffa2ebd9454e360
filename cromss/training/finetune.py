"""Downstream transfer (method §7) and evaluation (§8).

A pretrained encoder of one modality goes into a new, randomly initialised smp decoder (PSPNet for
DFC2020, DeepLabV3+ for SSL4EO-S12@DW, FPN for SSL4EO-S12@OSM). Settings ``frozen`` (encoder
parameters not updated) and ``finetuned`` (everything trained). BatchNorm in a frozen encoder:
``frozen_batchnorm: update`` (the reference) keeps it in training mode, so it normalises with batch
statistics and its running statistics keep updating; ``freeze`` puts it in eval mode (running
statistics fixed and used). Adam, cosine decay from ``lr`` to ``min_lr`` over ``cosine_epochs``
then constant; CE + Dice with ``constants.IGNORE_INDEX`` ignored. On CUDA the forward pass runs
under autocast (``amp``, ``amp_dtype``: float16 with a GradScaler by default, as the reference's
``precision='16-mixed'``); on the CPU in float32 unless ``amp_on_cpu``.

Encoders come from this workflow's ``encoder_{s1,s2}.pt`` files, the released CromSS Lightning
checkpoints, a plain encoder state dict, or ``random``.

``out/checkpoint.pt`` is written every ``checkpoint_every`` epochs and on SIGTERM / SIGINT; the same
command resumes from it (a checkpoint of other settings, seed or encoder is refused) and, on CPU,
ends with the weights of an uninterrupted run. Non-finite losses or weights stop the run.
"""

from __future__ import annotations

import hashlib
import json
import contextlib
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from cromss import __version__, logs
from cromss.atomic import atomic_path, ensure_writable, sweep
from cromss.constants import IGNORE_INDEX, TASKS, input_normalisation
from cromss.errors import CromssError
from cromss.models import build_downstream
from cromss.settings import Finetune, Scoring, as_dict
from cromss.training import checkpoint, distributed, metrics
from cromss.training.checkpoint import write_log
from cromss.training.datasets import SIZE_MULTIPLE, SegmentationDataset
from cromss.training.loop import StepHook, TrainingLoop
from cromss.weights import by_reference, files
from cromss.weights.cards import provenance
from cromss.weights.encoders import load_encoder_source, load_encoder_state
from cromss.weights.trained import load_downstream

if TYPE_CHECKING:
    from segmentation_models_pytorch.base import SegmentationModel

log = logging.getLogger(__name__)

SETTINGS = ("frozen", "finetuned")
RESUMABLE_CHANGES = ("num_workers", "checkpoint_every")
"""Settings that may differ between an interrupted run and the command that resumes it."""


def set_train_mode(model: SegmentationModel, setting: str, frozen_batchnorm: str) -> None:
    """Training mode; in a frozen encoder with ``freeze`` BatchNorm, the encoder stays in eval mode."""
    model.train()
    if setting == "frozen" and frozen_batchnorm == "freeze":
        model.encoder.eval()


def cosine_lr(epoch: int, lr: float, min_lr: float, cosine_epochs: int) -> float:
    """Cosine decay from ``lr`` at epoch 0 to ``min_lr`` at ``cosine_epochs``, constant after."""
    progress = min(epoch, cosine_epochs) / max(cosine_epochs, 1)
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, dice: nn.Module) -> torch.Tensor:
    """CE (mean over non-ignored pixels, 0 if none) + smp multiclass Dice, both ignoring IGNORE_INDEX."""
    valid = (labels != IGNORE_INDEX).sum().clamp_min(1)
    ce = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum") / valid
    return ce + dice(logits.float(), labels)


def training_loss(model: nn.Module, image: torch.Tensor, labels: torch.Tensor, dice: nn.Module,
                  amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """A training step's forward pass (under autocast in ``amp_dtype``, None for float32) and its
    :func:`segmentation_loss` in float32."""
    autocast = (torch.autocast(image.device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    with autocast:
        logits = model(image)
    return segmentation_loss(logits, labels, dice)


def autocast_dtype(settings: Finetune, device: torch.device) -> torch.dtype | None:
    """The autocast type of the training forward pass: ``amp_dtype`` (float16 by default, the
    reference's ``precision='16-mixed'``) when ``amp`` is set and the run is on CUDA, or on the
    CPU with ``amp_on_cpu``; None (float32) otherwise."""
    if not settings.amp or (device.type != "cuda" and not settings.amp_on_cpu):
        return None
    return {"float16": torch.float16, "bfloat16": torch.bfloat16}[settings.amp_dtype]


def dice_loss() -> nn.Module:
    from segmentation_models_pytorch.losses import DiceLoss

    return DiceLoss("multiclass", ignore_index=IGNORE_INDEX)


# -- training ------------------------------------------------------------------------------------

class FinetuneLoop(TrainingLoop):
    """One fine-tuning run: the task's model around the encoder, Adam with the cosine schedule."""

    resumable_changes = RESUMABLE_CHANGES

    def __init__(self, *, model: nn.Module, dataset: SegmentationDataset, setting: str,
                 seed: int, settings: Finetune, run: dict[str, Any],
                 label: str, out: Path, ctx: distributed.Context):
        self.dataset, self.setting, self.seed = dataset, setting, seed
        self.settings, self.run_id, self.name = settings, run, label
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay,
                                          fused=True)  # one kernel, not a loop over tensors
        self.dice = dice_loss()
        self.precision = autocast_dtype(settings, ctx.device)
        # float16 gradients underflow without loss scaling; bfloat16 has float32's range
        self.scaler = torch.amp.GradScaler(ctx.device.type,
                                           enabled=self.precision == torch.float16)
        self.loss_sum = 0.0
        self.loader: DataLoader | None = None
        super().__init__(out=out, ctx=ctx, epochs=settings.epochs, batch_size=settings.batch_size,
                         checkpoint_every=settings.checkpoint_every,
                         sampler=distributed.ResumableSampler(dataset, ctx, seed), model=model,
                         stateful={"model": model, "optimizer": self.optimizer})

    def identity(self) -> dict[str, Any]:
        return self.run_id

    def saved_identity(self, state: dict[str, Any]) -> dict[str, Any]:
        return state.get("run", {})

    def extra_state(self) -> dict[str, Any]:
        return {"loss_sum": self.loss_sum, "run": self.run_id, "scaler": self.scaler.state_dict()}

    def restore_extra(self, state: dict[str, Any]) -> None:
        self.loss_sum = state["loss_sum"]
        self.scaler.load_state_dict(state.get("scaler", {}))

    def label(self) -> str:
        return self.name

    def begin_epoch(self) -> None:
        self.epoch_lr = cosine_lr(self.epoch, self.settings.lr, self.settings.min_lr,
                                  self.settings.cosine_epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = self.epoch_lr
        set_train_mode(self.model, self.setting, self.settings.frozen_batchnorm)

    def train_loader(self) -> DataLoader:
        """One loader for all epochs: its workers (and their :data:`TILE_CACHE`) stay alive; the
        sampler gives each index with its epoch, which seeds the item's crop and flips."""
        if self.loader is None:
            # the loader's own generator: creating its iterator must not draw from the global
            # RNG (dropout), or a resumed epoch would see other masks than an uninterrupted one
            workers = self.settings.num_workers
            self.loader = DataLoader(self.dataset, batch_size=self.batch_size,
                                     sampler=distributed.EpochIndices(self.sampler),
                                     num_workers=workers, persistent_workers=workers > 0,
                                     drop_last=(self.settings.drop_last
                                                or len(self.dataset) % self.batch_size == 1),
                                     generator=torch.Generator().manual_seed(self.seed))
        return self.loader

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        image, labels = batch["image"].to(self.ctx.device), batch["label"].to(self.ctx.device)
        return training_loss(self.model, image, labels, self.dice, self.precision), None

    def accumulate(self, loss: torch.Tensor, extra: Any, batch: dict[str, torch.Tensor]) -> None:
        self.loss_sum += float(loss.detach())

    def end_epoch(self, seconds: float) -> None:
        self.log.append({"epoch": self.epoch, "lr": self.epoch_lr,
                         "train_loss": self.loss_sum / max(self.step, 1),
                         "time_s": round(seconds, 3)})
        log.info(logs.epoch_line(self.log[-1], self.epochs, run=self.name))
        self.loss_sum = 0.0


def finetune(*, task: str, modality: str, encoder: str, setting: str, seed: int, train: Path,
             settings: Finetune, out: Path, weights_name: str | None = None,
             on_step: StepHook | None = None) -> None:
    """Train the task's model and write ``out/model.pt`` and ``out/log.jsonl``."""
    if setting not in SETTINGS:
        raise CromssError(f"setting must be one of {SETTINGS}, not {setting!r}")
    out = Path(out)
    ctx = distributed.Context(0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    source = load_encoder_source(encoder, modality, settings)
    crop = settings.crop.of(task)
    dataset = SegmentationDataset(train, modality=modality, s2_bands=source.in_channels
                                  if modality == "s2" else 13, crop=crop, seed=seed)
    expected = len(TASKS[task][1])
    if dataset.num_classes != expected:
        raise CromssError(f"{train}: {dataset.num_classes} classes, task {task} has {expected}")
    if settings.drop_last and len(dataset) < settings.batch_size:
        raise CromssError(f"{train}: {len(dataset)} training tiles, fewer than one batch of "
                          f"{settings.batch_size}: with finetune.drop_last no step would be taken; "
                          "lower finetune.batch_size")
    torch.manual_seed(seed)
    model = build_downstream(task, source.name, source.in_channels)
    if int(crop) % model.encoder.output_stride:
        raise CromssError(f"settings: crop {crop} of task {task} must be a multiple of "
                          f"{model.encoder.output_stride}, the {TASKS[task][3]} encoder's stride")
    if source.state_dict is not None:
        load_encoder_state(model.encoder, source.state_dict, encoder)
    if setting == "frozen":
        model.encoder.requires_grad_(False)
    model.to(ctx.device)
    run = run_identity(task=task, modality=modality, encoder=encoder, setting=setting, seed=seed,
                       settings=settings)
    # the label tells the runs of a group job's log apart
    loop = FinetuneLoop(model=model, dataset=dataset, setting=setting, seed=seed,
                        settings=settings, run=run, out=out, ctx=ctx,
                        label=f"{task}/{modality}/{setting}/seed{seed}")
    ensure_writable(out)
    sweep(loop.checkpoint_path)
    if loop.resume():
        log.info("resuming %s at epoch %s, batch %s", out, loop.epoch, loop.step)
    loop.run(on_step)
    checkpoint.require_finite(model.state_dict(), "the final weights", loop.checkpoint_path)
    card = {
        "task": task, "arch": TASKS[task][3], "encoder": source.name, "modality": modality,
        "in_channels": source.in_channels,
        "s2_bands": source.in_channels if modality == "s2" else None,
        "normalisation": input_normalisation(modality, source.in_channels),
        "classes": list(TASKS[task][1]), "num_classes": len(TASKS[task][1]),
        "weights": weights_name or source.weights, "encoder_file": encoder,
        "encoder_card": source.card, "setting": setting,
        "frozen_batchnorm": settings.frozen_batchnorm, "seed": seed, "settings": as_dict(settings),
        "cromss_version": __version__,
        "provenance": provenance(train),
    }
    # the encoder weights a run left unchanged (a frozen run's) are stored by reference
    state, reference = by_reference.split(model.state_dict(), source.state_dict, encoder)
    if reference is not None:
        card[by_reference.KEY] = reference
    files.save({"state_dict": state, "card": card}, out / "model.pt")
    write_log(loop.log, out / "log.jsonl")
    loop.checkpoint_path.unlink(missing_ok=True)


def run_identity(*, task: str, modality: str, encoder: str, setting: str, seed: int,
                 settings: Finetune) -> dict[str, Any]:
    """What a checkpoint must share with the command that resumes it: the settings, the run's
    arguments and the encoder file's SHA-256 (a re-pretrained encoder is another run; a moved
    file is the same)."""
    if encoder == "random":
        digest = "random"
    else:
        with open(encoder, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {**as_dict(settings), "task": task, "modality": modality, "encoder_sha256": digest,
            "setting": setting, "seed": seed}


# -- evaluation ----------------------------------------------------------------------------------

def pad_to_multiple(image: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> torch.Tensor:
    """Reflect-pad the last two axes up to a multiple of ``multiple``."""
    height, width = image.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    return F.pad(image, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else image


@torch.no_grad()
def predict(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Class map of whole tiles (N, bands, H, W), padded to the encoder's size multiple."""
    height, width = image.shape[-2:]
    return model(pad_to_multiple(image)).argmax(1)[:, :height, :width]


def evaluate(model_path: Path, test: Path, out: Path, batch_size: int = 4,
             scoring: Scoring | None = None) -> dict[str, Any]:
    """Confusion matrix over the test tiles ``scoring`` names (None: the protocol of the model's
    fine-tuning settings, every tile for a model without one) and the scores, written to ``out``
    as JSON with the protocol and the tiles scored (``test_tiles``)."""
    model, card = load_downstream(model_path)
    dataset = SegmentationDataset(test, modality=card["modality"], s2_bands=card["s2_bands"] or 13)
    if dataset.num_classes != card["num_classes"]:
        raise CromssError(f"{test}: {dataset.num_classes} classes, the model has "
                          f"{card['num_classes']}")
    trained_with = card.get("settings")
    if scoring is None and trained_with and "test" in trained_with:
        scoring = Finetune.parse(trained_with, f"{model_path} (card)").test
    protocol = scoring.tiles if scoring else "all"
    scored = scoring.scored(card["task"], len(dataset)) if scoring else len(dataset)
    if scored == 0:
        raise CromssError(f"{test}: {len(dataset)} test tiles, fewer than one reference batch of "
                          f"{scoring.batch_size.of(card['task']) if scoring else 0} "
                          f"(finetune.test.batch_size.{card['task']}): nothing would be scored; "
                          "use finetune.test.tiles: all")
    cm = np.zeros((card["num_classes"],) * 2, dtype=np.int64)
    tiles: list[list[int]] = []  # per-tile matrices, flattened: a bootstrap over tiles (claims)
    for batch in DataLoader(Subset(dataset, range(scored)), batch_size=batch_size):
        pred = predict(model, batch["image"])
        cm += metrics.confusion_matrix(pred.numpy(), batch["label"].numpy(), card["num_classes"])
        tiles += metrics.tile_confusion_matrices(pred.numpy(), batch["label"].numpy(),
                                                 card["num_classes"])
    result = {key: card[key] for key in ("task", "modality", "weights", "encoder", "s2_bands",
                                         "setting", "seed", "num_classes")}
    result.update({"class_names": card["classes"], "confusion_matrix": cm.tolist(),
                   "test_tiles": {"protocol": protocol, "scored": scored, "total": len(dataset),
                                  **({"batch_size": scoring.batch_size.of(card["task"])}
                                     if protocol == "reference" and scoring else {})},
                   **metrics.all_scores(cm)})
    result["tile_confusion_matrices"] = tiles
    checkpoint.require_finite(result, f"the metrics of {model_path} on {test}")
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=1, allow_nan=False))
    log.info(logs.progress_line(f"{model_path} on {test}: samples", scored, None,
                                {key: result["strict"][key] for key in ("mIoU", "OA", "mF1")}
                                | {"mIoU_ref": result["reference"]["mIoU"], "written": str(out)}))
    return result


