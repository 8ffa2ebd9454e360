"""CromSS losses (method §3): weighted soft CE + soft Dice per modality, cross-modal consistency.

Logits are N x C x H x W, labels N x H x W (``IGNORE_INDEX`` = ignored), soft targets Z'
N x C x H x W, weights N x H x W. Ignored pixels weigh 0 in every term.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from cromss.selection import SelectionWeights, cross_modal_selection, valid_mask
from cromss.smoothing import one_hot

DICE_EPS = 1e-7
"""Lower bound of the Dice denominator (smp's ``eps``)."""


def weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    """sum_x W(x) v(x) / sum_x W(x); 0 when every weight is 0."""
    total = weights.sum()
    return (weights * values).sum() / torch.where(total > 0, total, torch.ones_like(total))


def soft_cross_entropy(logits: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
    """sum_x W(x) (-sum_c T_c(x) log Q_c(x)) / sum_x W(x), Q = softmax(logits)."""
    per_pixel = -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1)
    return weighted_mean(per_pixel, weights)


def soft_dice_loss(logits: Tensor, targets: Tensor, weights: Tensor, valid: Tensor) -> Tensor:
    """mean_c (1 - D_c), D_c = 2 sum(W Q_c T_c) / max(sum(W (Q_c + T_c)), eps).

    A class whose target mass over the valid pixels of the batch is 0 contributes 0 (smp's Dice
    convention); the mean is still over all C classes.
    """
    probs = torch.softmax(logits, dim=1)
    weight = weights.unsqueeze(1)
    dims = (0, 2, 3)
    intersection = (weight * probs * targets).sum(dim=dims)
    cardinality = (weight * (probs + targets)).sum(dim=dims)
    dice = 2 * intersection / cardinality.clamp_min(DICE_EPS)
    present = (targets * valid.unsqueeze(1)).sum(dim=dims) > 0
    return ((1 - dice) * present).mean()


def consistency_loss(student_logits: Tensor, teacher_probs: Tensor, weights: Tensor) -> Tensor:
    """Lc(P || Q) = sum_x We(x) (-sum_c P_c log Q_c) / sum_x We(x); the teacher is detached."""
    return soft_cross_entropy(student_logits, teacher_probs.detach(), weights)


def segmentation_loss(logits: Tensor, targets: Tensor, weights: Tensor,
                      valid: Tensor) -> tuple[Tensor, Tensor]:
    """(CE, Dice) of one modality with its label-selection weights."""
    return soft_cross_entropy(logits, targets, weights), soft_dice_loss(logits, targets, weights,
                                                                        valid)


def selection_weights(logits_1: Tensor, logits_2: Tensor, labels: Tensor, epoch: float,
                      settings: Mapping[str, Any]) -> SelectionWeights:
    """The step's selection masks from ``settings`` (config ``pretrain``); with selection off,
    every weight is 1 except on ignored pixels."""
    num_classes = int(settings.get("num_classes", logits_1.shape[1]))
    selection = settings.get("selection", {})
    if not selection.get("enabled", True):
        valid = valid_mask(labels)
        return SelectionWeights(valid, valid, valid, valid, kept_proportion=1.0)
    return cross_modal_selection(torch.softmax(logits_1.detach(), 1),
                                 torch.softmax(logits_2.detach(), 1), labels, epoch,
                                 float(selection.get("ramp_epochs", 80)),
                                 float(selection.get("keep", 0.5)), num_classes)


def cromss_loss(logits_1: Tensor | None, logits_2: Tensor | None, labels: Tensor,
                soft_targets: Tensor | None, epoch: float, settings: Mapping[str, Any],
                weights: SelectionWeights | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """L = sum_d [CE(d) + Dice(d)] + lambda [Lc(P2 || Q1) + Lc(P1 || Q2)].

    ``logits_1`` is S1, ``logits_2`` S2; with one of them None it is that modality's CE + Dice
    alone (no selection, no consistency). ``soft_targets`` None means the hard one-hot labels
    (smoothing off). ``weights`` may be passed in (from ``selection_weights``) to reuse and log
    them. Returns the total and its detached parts: ``ce_d``, ``dice_d``, ``seg_d`` and, with
    both modalities, ``consistency_1`` (S1 learns from S2), ``consistency_2`` and
    ``kept_proportion``.
    """
    # The losses are computed in float32 even when the forward ran under autocast.
    logits_1 = logits_1.float() if logits_1 is not None else None
    logits_2 = logits_2.float() if logits_2 is not None else None
    present = [logits for logits in (logits_1, logits_2) if logits is not None]
    if not present:
        raise ValueError("cromss_loss needs the logits of at least one modality")
    num_classes = int(settings.get("num_classes", present[0].shape[1]))
    if any(logits.shape[1] != num_classes for logits in present):
        raise ValueError(f"logits must have {num_classes} classes")
    targets = soft_targets if soft_targets is not None else one_hot(labels, num_classes)
    valid = valid_mask(labels)
    parts: dict[str, Tensor] = {}
    if logits_1 is None or logits_2 is None:
        logits, index = (logits_1, 1) if logits_1 is not None else (logits_2, 2)
        ce, dice = segmentation_loss(logits, targets, valid, valid)
        parts.update({f"ce_{index}": ce.detach(), f"dice_{index}": dice.detach(),
                      f"seg_{index}": (ce + dice).detach()})
        return ce + dice, parts
    if weights is None:
        weights = selection_weights(logits_1, logits_2, labels, epoch, settings)
    ce_1, dice_1 = segmentation_loss(logits_1, targets, weights.label_1, valid)
    ce_2, dice_2 = segmentation_loss(logits_2, targets, weights.label_2, valid)
    teacher_1 = torch.softmax(logits_1.detach(), dim=1)
    teacher_2 = torch.softmax(logits_2.detach(), dim=1)
    consistency_1 = consistency_loss(logits_1, teacher_2, weights.entropy_2)
    consistency_2 = consistency_loss(logits_2, teacher_1, weights.entropy_1)
    weight = float(settings.get("consistency_weight", 1.0))
    total = ce_1 + dice_1 + ce_2 + dice_2 + weight * (consistency_1 + consistency_2)
    parts = {"ce_1": ce_1, "dice_1": dice_1, "seg_1": ce_1 + dice_1,
             "ce_2": ce_2, "dice_2": dice_2, "seg_2": ce_2 + dice_2,
             "consistency_1": consistency_1, "consistency_2": consistency_2}
    parts = {key: value.detach() for key, value in parts.items()}
    parts["kept_proportion"] = torch.tensor(weights.kept_proportion)
    return total, parts
