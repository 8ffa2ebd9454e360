"""CromSS losses (method §3): weighted soft CE + soft Dice per modality, cross-modal consistency.

Logits are N x C x H x W, labels N x H x W (``IGNORE_INDEX`` = ignored), soft targets Z'
N x C x H x W, weights N x H x W. Ignored pixels weigh 0 in every term.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cromss.selection import SelectionWeights, cross_modal_selection, valid_mask
from cromss.settings import Selection
from cromss.smoothing import one_hot

DICE_EPS = 1e-7
"""Lower bound of the Dice denominator (smp's ``eps``)."""


def weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    """sum_x W(x) v(x) / sum_x W(x); 0 when every weight is 0."""
    total = weights.sum()
    return (weights * values).sum() / torch.where(total > 0, total, torch.ones_like(total))


def soft_cross_entropy(log_probs: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
    """sum_x W(x) (-sum_c T_c(x) log Q_c(x)) / sum_x W(x), from log Q = log_softmax(logits)."""
    return weighted_mean(-(targets * log_probs).sum(dim=1), weights)


def soft_dice_loss(probs: Tensor, targets: Tensor, weights: Tensor, valid: Tensor) -> Tensor:
    """mean_c (1 - D_c), D_c = 2 sum(W Q_c T_c) / max(sum(W (Q_c + T_c)), eps), from Q = softmax.

    A class whose target mass over the valid pixels of the batch is 0 contributes 0 (smp's Dice
    convention); the mean is still over all C classes.
    """
    weighted = weights.unsqueeze(1) * probs
    intersection = (weighted * targets).sum(dim=(0, 2, 3))
    # the targets' parts carry no gradient: contractions over batch and pixels
    cardinality = weighted.sum(dim=(0, 2, 3)) + torch.einsum("nhw,nchw->c", weights, targets)
    dice = 2 * intersection / cardinality.clamp_min(DICE_EPS)
    present = torch.einsum("nhw,nchw->c", valid, targets) > 0
    return ((1 - dice) * present).mean()


def consistency_loss(student_log_probs: Tensor, teacher_probs: Tensor, weights: Tensor) -> Tensor:
    """Lc(P || Q) = sum_x We(x) (-sum_c P_c log Q_c) / sum_x We(x); the teacher is detached."""
    return soft_cross_entropy(student_log_probs, teacher_probs.detach(), weights)


def segmentation_loss(log_probs: Tensor, targets: Tensor, weights: Tensor,
                      valid: Tensor) -> tuple[Tensor, Tensor]:
    """(CE, Dice) of one modality with its label-selection weights, from its log-probabilities."""
    return (soft_cross_entropy(log_probs, targets, weights),
            soft_dice_loss(log_probs.exp(), targets, weights, valid))


def selection_weights(probs_1: Tensor, probs_2: Tensor, labels: Tensor, epoch: float,
                      selection: Selection) -> SelectionWeights:
    """The step's selection masks from both modalities' probabilities (classes on axis 1);
    with selection off, every weight is 1 except on ignored pixels."""
    if not selection.enabled:
        valid = valid_mask(labels)
        return SelectionWeights(valid, valid, valid, valid, kept_proportion=1.0)
    return cross_modal_selection(probs_1.detach(), probs_2.detach(), labels, epoch,
                                 float(selection.ramp_epochs), float(selection.keep),
                                 probs_1.shape[1])


def cromss_loss(logits_1: Tensor | None, logits_2: Tensor | None, labels: Tensor,
                soft_targets: Tensor | None, epoch: float, selection: Selection | None,
                consistency_weight: float, weights: SelectionWeights | None = None
                ) -> tuple[Tensor, dict[str, Tensor]]:
    """L = sum_d [CE(d) + Dice(d)] + lambda [Lc(P2 || Q1) + Lc(P1 || Q2)].

    ``logits_1`` is S1, ``logits_2`` S2; with one of them None it is that modality's CE + Dice
    alone (no selection, no consistency). ``soft_targets`` None means the hard one-hot labels
    (smoothing off). ``weights`` may be passed in (from ``selection_weights``) to reuse and log
    them (``selection`` is then not needed). Returns the total and its detached parts: ``ce_d``,
    ``dice_d``, ``seg_d`` and, with both modalities, ``consistency_1`` (S1 learns from S2),
    ``consistency_2`` and ``kept_proportion``.
    """
    # The losses are computed in float32 even when the forward ran under autocast; each
    # modality's log_softmax is taken once and shared by CE, Dice, consistency and selection.
    log_probs = [None if logits is None else torch.log_softmax(logits.float(), dim=1)
                 for logits in (logits_1, logits_2)]
    present = [lp for lp in log_probs if lp is not None]
    if not present:
        raise ValueError("cromss_loss needs the logits of at least one modality")
    num_classes = present[0].shape[1]
    if any(lp.shape[1] != num_classes for lp in present):
        raise ValueError(f"logits must have {num_classes} classes")
    targets = soft_targets if soft_targets is not None else one_hot(labels, num_classes)
    valid = valid_mask(labels)
    if len(present) == 1:
        index = 1 if log_probs[0] is not None else 2
        ce, dice = segmentation_loss(present[0], targets, valid, valid)
        return ce + dice, {f"ce_{index}": ce.detach(), f"dice_{index}": dice.detach(),
                           f"seg_{index}": (ce + dice).detach()}
    log_probs_1, log_probs_2 = present
    teacher_1, teacher_2 = log_probs_1.detach().exp(), log_probs_2.detach().exp()
    if weights is None:
        if selection is None:
            raise ValueError("cromss_loss needs the selection settings or their weights")
        weights = selection_weights(teacher_1, teacher_2, labels, epoch, selection)
    ce_1, dice_1 = segmentation_loss(log_probs_1, targets, weights.label_1, valid)
    ce_2, dice_2 = segmentation_loss(log_probs_2, targets, weights.label_2, valid)
    consistency_1 = consistency_loss(log_probs_1, teacher_2, weights.entropy_2)
    consistency_2 = consistency_loss(log_probs_2, teacher_1, weights.entropy_1)
    total = ce_1 + dice_1 + ce_2 + dice_2 + consistency_weight * (consistency_1 + consistency_2)
    parts = {"ce_1": ce_1, "dice_1": dice_1, "seg_1": ce_1 + dice_1,
             "ce_2": ce_2, "dice_2": dice_2, "seg_2": ce_2 + dice_2,
             "consistency_1": consistency_1, "consistency_2": consistency_2}
    parts = {key: value.detach() for key, value in parts.items()}
    parts["kept_proportion"] = torch.tensor(weights.kept_proportion)
    return total, parts
