"""Downstream transfer (method §7) and evaluation (§8).

A pretrained encoder of one modality goes into a new, randomly initialised smp decoder (PSPNet for
DFC2020, DeepLabV3+ for SSL4EO-S12@DW, FPN for SSL4EO-S12@OSM). Settings ``frozen`` (encoder
parameters not updated) and ``finetuned`` (everything trained). BatchNorm in a frozen encoder:
``frozen_batchnorm: update`` (the reference) keeps it in training mode, so it normalises with batch
statistics and its running statistics keep updating; ``freeze`` puts it in eval mode (running
statistics fixed and used). Adam, cosine decay from ``lr`` to ``min_lr`` over ``cosine_epochs``
then constant; CE + Dice with ``constants.IGNORE_INDEX`` ignored.

Encoders come from this workflow's ``encoder_{s1,s2}.pt`` files, the released CromSS Lightning
checkpoints, a plain encoder state dict, or ``random``.

``out/checkpoint.pt`` is written every ``checkpoint_every`` epochs and on SIGTERM / SIGINT; the same
command resumes from it (a checkpoint of other settings, seed or encoder is refused) and, on CPU,
ends with the weights of an uninterrupted run. Non-finite losses or weights stop the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from cromss import __version__, logs, models
from cromss.atomic import atomic_path, ensure_writable, sweep
from cromss.cli import CromssError
from cromss.constants import IGNORE_INDEX, TASKS, input_normalisation
from cromss.training import checkpoint, distributed, metrics
from cromss.training.checkpoint import write_log
from cromss.training.datasets import SIZE_MULTIPLE, SegmentationDataset

log = logging.getLogger(__name__)

SETTINGS = ("frozen", "finetuned")
RELEASED_PREFIXES = ("net.encoder1.", "net.encoder.", "net.model1.encoder.", "net.model2.encoder.")
"""Encoder prefixes in the released CromSS Lightning checkpoints (midF S1 / S2 or single-modal,
lateF S1 / S2); the modality of each is told by its first convolution's band count."""
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_EVERY = 1
"""Default of ``checkpoint_every`` (epochs): a killed job loses at most one epoch."""
RESUMABLE_CHANGES = ("num_workers", "checkpoint_every")
"""Settings that may differ between an interrupted run and the command that resumes it."""


# -- encoders ------------------------------------------------------------------------------------

@dataclass
class EncoderSource:
    """An encoder to transfer: smp name, input bands, weights (None = random) and provenance."""

    name: str
    in_channels: int
    weights: str
    state_dict: dict[str, torch.Tensor] | None = None
    card: dict[str, Any] = field(default_factory=dict)


def infer_resnet(state_dict: dict[str, torch.Tensor]) -> str:
    """The ResNet depth of an encoder state dict, from its block layout."""
    blocks = {layer: len({k.split(".")[1] for k in state_dict if k.startswith(f"{layer}.")})
              for layer in ("layer1", "layer2", "layer3", "layer4")}
    bottleneck = any(k.startswith("layer1.0.conv3.") for k in state_dict)
    layouts = {(2, 2, 2, 2, False): "resnet18", (3, 4, 6, 3, False): "resnet34",
               (3, 4, 6, 3, True): "resnet50", (3, 4, 23, 3, True): "resnet101",
               (3, 8, 36, 3, True): "resnet152"}
    key = (*blocks.values(), bottleneck)
    if key not in layouts:
        raise ValueError(f"not a ResNet encoder state dict (blocks {tuple(blocks.values())})")
    return layouts[key]


def expected_bands(modality: str) -> tuple[int, ...]:
    return (2,) if modality == "s1" else (9, 13)


def input_bands(state_dict: dict[str, torch.Tensor], source: str) -> int:
    """Input channels of the first convolution (the first 4-D weight: ResNet's conv1 and others)."""
    first = next((v for k, v in state_dict.items() if k.endswith("weight") and v.dim() == 4), None)
    if first is None:
        raise ValueError(f"{source}: encoder state dict has no convolution weight")
    return int(first.shape[1])


def released_encoder(state_dict: dict[str, torch.Tensor], modality: str,
                     source: str) -> dict[str, torch.Tensor]:
    """The encoder of ``modality`` in a released CromSS Lightning state dict."""
    found = {}
    for prefix in RELEASED_PREFIXES:
        sub = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if sub and "conv1.weight" in sub:
            found[prefix] = sub
    matching = [p for p, sub in found.items() if input_bands(sub, source) in expected_bands(modality)]
    if len(matching) != 1:
        seen = {p: input_bands(sub, source) for p, sub in found.items()}
        raise ValueError(f"{source}: no unique {modality} encoder ({expected_bands(modality)} bands)"
                         f" among the prefixes {seen or RELEASED_PREFIXES}")
    return found[matching[0]]


def load_encoder_source(spec: str, modality: str, settings: dict[str, Any]) -> EncoderSource:
    """Resolve ``--encoder``: ``random`` or a file (ours, released Lightning, or a plain state dict)."""
    if spec == "random":
        if "encoder" not in settings:
            raise ValueError("--encoder random needs the encoder name in the settings ('encoder')")
        bands = 2 if modality == "s1" else int(settings.get("s2_bands", 13))
        return EncoderSource(settings["encoder"], bands, "random")
    payload = checkpoint.load(spec)
    state = payload.get("state_dict", payload)
    card = payload.get("card") if isinstance(payload.get("card"), dict) else {}
    if card:
        if card.get("modality") != modality:
            raise ValueError(f"{spec}: a {card.get('modality')} encoder, not {modality}")
        weights, name = str(card.get("variant", Path(spec).stem)), card["encoder"]
    elif any(k.startswith("net.") for k in state):
        state, weights = released_encoder(state, modality, spec), "released"
        name = infer_resnet(state)
    else:
        if all(k.startswith("encoder.") for k in state):
            state = {k.removeprefix("encoder."): v for k, v in state.items()}
        weights, name = Path(spec).stem, infer_resnet(state)
    bands = input_bands(state, spec)
    if bands not in expected_bands(modality):
        raise ValueError(f"{spec}: encoder takes {bands} bands; {modality} needs "
                         f"{' or '.join(map(str, expected_bands(modality)))}")
    return EncoderSource(name, bands, weights, state, card)


# -- models --------------------------------------------------------------------------------------

def build_downstream(task: str, encoder: str, in_channels: int) -> nn.Module:
    """The task's smp decoder around a randomly initialised encoder (no hub download)."""
    import segmentation_models_pytorch as smp

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {sorted(TASKS)}")
    _, classes, _, arch = TASKS[task]
    return smp.create_model(arch, encoder_name=encoder, encoder_weights=None,
                            in_channels=in_channels, classes=len(classes))


def set_train_mode(model: nn.Module, setting: str, frozen_batchnorm: str) -> None:
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


def dice_loss() -> nn.Module:
    from segmentation_models_pytorch.losses import DiceLoss

    return DiceLoss("multiclass", ignore_index=IGNORE_INDEX)


# -- training ------------------------------------------------------------------------------------

def finetune(*, task: str, modality: str, encoder: str, setting: str, seed: int, train: Path,
             settings: dict[str, Any], out: Path, weights_name: str | None = None) -> None:
    """Train the task's model and write ``out/model.pt`` and ``out/log.jsonl``."""
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, not {setting!r}")
    frozen_bn = settings.get("frozen_batchnorm", "update")
    if frozen_bn not in ("update", "freeze"):
        raise ValueError(f"frozen_batchnorm must be update or freeze, not {frozen_bn!r}")
    out = Path(out)
    ctx = distributed.Context(0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    source = load_encoder_source(encoder, modality, settings)
    crop = settings["crop"][task] if isinstance(settings["crop"], dict) else settings["crop"]
    dataset = SegmentationDataset(train, modality=modality, s2_bands=source.in_channels
                                  if modality == "s2" else 13, crop=int(crop),
                                  flip_p=settings.get("flip_p", 0.5),
                                  rotate_p=settings.get("rotate_p", 0.2), seed=seed)
    expected = len(TASKS[task][1])
    if dataset.num_classes != expected:
        raise ValueError(f"{train}: {dataset.num_classes} classes, task {task} has {expected}")
    torch.manual_seed(seed)
    model = build_downstream(task, source.name, source.in_channels)
    if int(crop) % model.encoder.output_stride:
        raise ValueError(f"settings: crop {crop} of task {task} must be a multiple of "
                         f"{model.encoder.output_stride}, the {TASKS[task][3]} encoder's stride")
    if source.state_dict is not None:
        models.load_encoder_state(model.encoder, source.state_dict, encoder)
    if setting == "frozen":
        model.encoder.requires_grad_(False)
    model.to(ctx.device)
    params = [p for p in model.parameters() if p.requires_grad]
    lr, min_lr = float(settings["lr"]), float(settings.get("min_lr", 0.0))
    cosine_epochs = int(settings.get("cosine_epochs", settings["epochs"]))
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=settings.get("weight_decay", 0.0),
                                 fused=True)  # one kernel, not a Python loop over tensors
    sampler = distributed.ResumableSampler(dataset, ctx, seed)
    batch_size = int(settings["batch_size"])
    dice = dice_loss()
    epoch, step, records, loss_sum = 0, 0, [], 0.0
    ckpt = out / CHECKPOINT
    ensure_writable(out)
    sweep(ckpt)
    run = run_identity(task=task, modality=modality, encoder=encoder, setting=setting, seed=seed,
                       settings=settings)
    if ckpt.is_file():
        state = checkpoint.load(ckpt)
        checkpoint.check_same_run(state.get("run", {}), run, ckpt, RESUMABLE_CHANGES)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        epoch, step, records, loss_sum = (state["epoch"], state["step"], state["log"],
                                          state["loss_sum"])
        checkpoint.set_rng_state(state["rng"])
        log.info("resuming %s at epoch %s, batch %s", out, epoch, step)

    def save_state() -> None:
        checkpoint.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "epoch": epoch, "step": step, "log": records, "loss_sum": loss_sum,
                         "rng": checkpoint.rng_state(), "run": run}, ckpt)

    with checkpoint.catch_stop_signals() as stop:
        while epoch < settings["epochs"]:
            started = time.perf_counter()
            epoch_lr = cosine_lr(epoch, lr, min_lr, cosine_epochs)
            for group in optimizer.param_groups:
                group["lr"] = epoch_lr
            set_train_mode(model, setting, frozen_bn)
            dataset.set_epoch(epoch)
            sampler.set_epoch(epoch)
            sampler.start = step * batch_size
            # the loader's own generator: creating its iterator must not draw from the global RNG
            # (dropout), or a resumed epoch would see other masks than an uninterrupted one
            loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                num_workers=int(settings.get("num_workers", 0)),
                                drop_last=len(dataset) % batch_size == 1,
                                generator=torch.Generator().manual_seed(seed + epoch))
            for batch in tqdm(loader, desc=f"{task}/{modality}/{setting} epoch {epoch}",
                              disable=None, leave=False, dynamic_ncols=True):
                image, labels = batch["image"].to(ctx.device), batch["label"].to(ctx.device)
                loss = segmentation_loss(model(image), labels, dice)
                if not torch.isfinite(loss):
                    raise CromssError(f"loss is {float(loss)} at epoch {epoch}, batch {step}: "
                                      f"stopping; the last good checkpoint (if any) is kept at "
                                      f"{ckpt}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step, loss_sum = step + 1, loss_sum + float(loss.detach())
                if stop:
                    save_state()
                    raise CromssError(f"interrupted by signal {stop.signal}; checkpoint saved to "
                                      f"{ckpt}: rerun the same command to resume")
            records.append({"epoch": epoch, "lr": epoch_lr, "train_loss": loss_sum / max(step, 1),
                            "time_s": round(time.perf_counter() - started, 3)})
            log.info(logs.epoch_line(records[-1], settings["epochs"]))
            epoch, step, loss_sum = epoch + 1, 0, 0.0
            every = int(settings.get("checkpoint_every", CHECKPOINT_EVERY))
            if every > 0 and epoch % every == 0 and epoch < settings["epochs"]:
                checkpoint.require_finite(model.state_dict(),
                                          f"the weights after epoch {epoch - 1}", ckpt)
                save_state()
    checkpoint.require_finite(model.state_dict(), "the final weights", ckpt)
    card = {
        "task": task, "arch": TASKS[task][3], "encoder": source.name, "modality": modality,
        "in_channels": source.in_channels,
        "s2_bands": source.in_channels if modality == "s2" else None,
        "normalisation": input_normalisation(modality, source.in_channels),
        "classes": list(TASKS[task][1]), "num_classes": len(TASKS[task][1]),
        "weights": weights_name or source.weights, "encoder_file": encoder,
        "encoder_card": source.card, "setting": setting, "frozen_batchnorm": frozen_bn,
        "seed": seed, "settings": settings, "cromss_version": __version__,
        "provenance": models.provenance(train),
    }
    checkpoint.save({"state_dict": model.state_dict(), "card": card}, out / "model.pt")
    write_log(records, out / "log.jsonl")
    ckpt.unlink(missing_ok=True)


def run_identity(*, task: str, modality: str, encoder: str, setting: str, seed: int,
                 settings: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint must share with the command that resumes it: the settings, the run's
    arguments and the encoder file's SHA-256 (a re-pretrained encoder is another run; a moved
    file is the same)."""
    if encoder == "random":
        digest = "random"
    else:
        with open(encoder, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {**settings, "task": task, "modality": modality, "encoder_sha256": digest,
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


def load_downstream(model_path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, card) of a file written by ``cromss finetune``."""
    payload = checkpoint.load(model_path)
    if "card" not in payload or "task" not in payload["card"]:
        raise ValueError(f"{model_path}: not a model written by `cromss finetune` (no card)")
    card = payload["card"]
    model = build_downstream(card["task"], card["encoder"], card["in_channels"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"{model_path}: weights do not match the card's model: {err}") from err
    return model.eval(), card


def evaluate(model_path: Path, test: Path, out: Path, batch_size: int = 4) -> dict[str, Any]:
    """Confusion matrix over the whole test store and the scores, written to ``out`` as JSON."""
    model, card = load_downstream(model_path)
    dataset = SegmentationDataset(test, modality=card["modality"], s2_bands=card["s2_bands"] or 13)
    if dataset.num_classes != card["num_classes"]:
        raise ValueError(f"{test}: {dataset.num_classes} classes, the model has "
                         f"{card['num_classes']}")
    cm = np.zeros((card["num_classes"],) * 2, dtype=np.int64)
    for batch in DataLoader(dataset, batch_size=batch_size):
        pred = predict(model, batch["image"])
        cm += metrics.confusion_matrix(pred.numpy(), batch["label"].numpy(), card["num_classes"])
    result = {key: card[key] for key in ("task", "modality", "weights", "encoder", "s2_bands",
                                         "setting", "seed", "num_classes")}
    result.update({"class_names": card["classes"], "confusion_matrix": cm.tolist(),
                   **metrics.all_scores(cm)})
    checkpoint.require_finite(result, f"the metrics of {model_path} on {test}")
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=1, allow_nan=False))
    log.info(logs.progress_line(f"{model_path} on {test}: samples", len(dataset), None,
                                {key: result["strict"][key] for key in ("mIoU", "OA", "mF1")}
                                | {"mIoU_ref": result["reference"]["mIoU"], "written": str(out)}))
    return result


