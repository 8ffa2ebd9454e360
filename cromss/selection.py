"""Cross-modal sample selection (method §4): per-pixel weights from both modalities' confidences.

Every function works on detached probabilities of shape N x C x H x W and noisy labels of shape
N x H x W (``IGNORE_INDEX`` = ignored); confidences and weights are N x H x W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from cromss.constants import IGNORE_INDEX


def valid_mask(labels: Tensor) -> Tensor:
    """1.0 where the label is a class, 0.0 where it is ignored."""
    return (labels != IGNORE_INDEX).to(torch.float32)


def label_confidence(probs: Tensor, labels: Tensor) -> Tensor:
    """cl(x) = P_{y(x)}(x), the probability of the noisy label; 0 where the label is ignored."""
    valid = labels != IGNORE_INDEX
    index = torch.where(valid, labels, 0).long().unsqueeze(1)
    confidence = probs.gather(1, index).squeeze(1)
    return torch.where(valid, confidence, torch.zeros_like(confidence))


def entropy_confidence(probs: Tensor) -> Tensor:
    """ce(x) = 1 - H(P(x)) / log C, clamped to [0, 1], NaN -> 0 (0 log 0 counts as 0)."""
    entropy = -torch.special.xlogy(probs, probs).sum(dim=1)
    confidence = 1.0 - entropy / math.log(probs.shape[1])
    return confidence.clamp(0.0, 1.0).nan_to_num(0.0)


def enhance(conf_1: Tensor, conf_2: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-modal entangling: c^(d) = (c(d) + c(1) c(2)) / 2 for both modalities."""
    agreement = conf_1 * conf_2
    return (conf_1 + agreement) / 2, (conf_2 + agreement) / 2


def ramp(epoch: float, ramp_epochs: float) -> float:
    """r(e) = exp(-5 (1 - min(e, E) / E)^2), rising from exp(-5) at epoch 0 to 1 at epoch E."""
    if ramp_epochs <= 0:
        raise ValueError(f"ramp_epochs must be positive, not {ramp_epochs}")
    progress = min(epoch, ramp_epochs) / ramp_epochs
    return math.exp(-5.0 * (1.0 - progress) ** 2)


def kept_proportion(epoch: float, ramp_epochs: float, keep: float) -> float:
    """rho(e) = 1 - r(e) (1 - p): 0.997 at epoch 0 down to p from epoch E on."""
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"keep must lie in [0, 1], not {keep}")
    return 1.0 - ramp(epoch, ramp_epochs) * (1.0 - keep)


CONFIDENCE_BITS = 31
"""A non-negative float32's bit pattern, read as an integer, orders like its value: the sort key
of a pixel is its class above these bits and its reversed confidence bits below them."""


def class_thresholds(conf: Tensor, labels: Tensor, proportion: float,
                     num_classes: int) -> tuple[Tensor, Tensor]:
    """Per class k: (m_k = floor(n_k rho), t_k = the m_k-th largest confidence; 0 where m_k = 0).

    One integer sort by (class, confidence descending), ignored pixels last, lays every class's
    confidences out in descending order side by side; no loop over classes, no float sort.
    """
    flat_conf = conf.reshape(-1)
    flat_labels = labels.reshape(-1).long()
    valid = flat_labels != IGNORE_INDEX
    classes = torch.where(valid, flat_labels, num_classes)
    if bool((valid & ((flat_labels < 0) | (flat_labels >= num_classes))).any()):
        raise ValueError(f"labels must be class indices below {num_classes} or {IGNORE_INDEX}")
    counts = torch.bincount(classes, minlength=num_classes + 1)[:num_classes]
    kept = torch.floor(counts.to(torch.float64) * proportion).long()
    if not bool((kept > 0).any()):
        return kept, flat_conf.new_zeros(num_classes)
    magnitude = torch.where(flat_conf > 0, flat_conf, 0.0).float().view(torch.int32).long()
    keys = (classes << CONFIDENCE_BITS) + ((1 << CONFIDENCE_BITS) - 1 - magnitude)
    order = torch.sort(keys).indices
    starts = torch.cumsum(counts, 0) - counts
    position = torch.where(kept > 0, starts + kept - 1, 0)
    thresholds = torch.where(kept > 0, flat_conf[order[position]], 0.0)
    return kept, thresholds


def label_selection_mask(conf: Tensor, labels: Tensor, proportion: float,
                         num_classes: int) -> Tensor:
    """Wl, class-balanced: clip(c / t_k, 0, 1); 1 where t_k = 0; 0 where m_k = 0 or ignored."""
    if not 0.0 <= proportion <= 1.0:
        raise ValueError(f"proportion must lie in [0, 1], not {proportion}")
    kept, thresholds = class_thresholds(conf, labels, proportion, num_classes)
    valid = labels != IGNORE_INDEX
    index = torch.where(valid, labels, 0).long()
    threshold = thresholds[index]
    safe = torch.where(threshold > 0, threshold, torch.ones_like(threshold))
    weights = torch.where(threshold > 0, (conf / safe).clamp(0.0, 1.0), torch.ones_like(conf))
    keep = valid & (kept[index] > 0)
    return torch.where(keep, weights, torch.zeros_like(weights))


def entropy_selection_mask(conf: Tensor, epoch: float, ramp_epochs: float) -> Tensor:
    """We = (1 - r(e)) + r(e) c^e while e <= E, and c^e after."""
    if epoch > ramp_epochs:
        return conf.clone()
    r = ramp(epoch, ramp_epochs)
    return (1.0 - r) + r * conf


@dataclass(frozen=True)
class SelectionWeights:
    """The four selection masks of one step (N x H x W, ignored pixels 0) and rho(e)."""

    label_1: Tensor
    label_2: Tensor
    entropy_1: Tensor
    entropy_2: Tensor
    kept_proportion: float


def cross_modal_selection(probs_1: Tensor, probs_2: Tensor, labels: Tensor, epoch: float,
                          ramp_epochs: float, keep: float, num_classes: int) -> SelectionWeights:
    """Steps 1-6 of method §4 from the two modalities' detached probabilities."""
    probs_1, probs_2 = probs_1.detach(), probs_2.detach()
    label_1, label_2 = enhance(label_confidence(probs_1, labels), label_confidence(probs_2, labels))
    entropy_1, entropy_2 = enhance(entropy_confidence(probs_1), entropy_confidence(probs_2))
    rho = kept_proportion(epoch, ramp_epochs, keep)
    valid = valid_mask(labels)
    return SelectionWeights(
        label_1=label_selection_mask(label_1, labels, rho, num_classes),
        label_2=label_selection_mask(label_2, labels, rho, num_classes),
        entropy_1=entropy_selection_mask(entropy_1, epoch, ramp_epochs) * valid,
        entropy_2=entropy_selection_mask(entropy_2, epoch, ramp_epochs) * valid,
        kept_proportion=rho,
    )


def selection_precision(weights: Tensor, labels: Tensor, truth: Tensor) -> float:
    """Weighted share of selected pixels whose noisy label equals the true label (NaN if none)."""
    correct = ((labels == truth) & (labels != IGNORE_INDEX)).to(weights.dtype)
    total = float(weights.sum())
    return float((weights * correct).sum()) / total if total > 0 else math.nan
