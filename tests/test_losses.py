"""CromSS losses (method §3): hand cases, equivalence with plain losses, gradient paths."""

from __future__ import annotations

import math

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

from cromss.constants import IGNORE_INDEX
from cromss.losses import (consistency_loss, cromss_loss, selection_weights, soft_cross_entropy,
                           soft_dice_loss, weighted_mean)
from cromss.selection import valid_mask
from cromss.settings import Selection
from cromss.smoothing import one_hot

SELECTION = Selection(enabled=True, ramp_epochs=5, keep=0.5)
SETTINGS = (SELECTION, 1.0)  # the selection and the consistency weight


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits_1 = torch.randn(2, 4, 6, 6, generator=generator, requires_grad=True)
    logits_2 = torch.randn(2, 4, 6, 6, generator=generator, requires_grad=True)
    labels = torch.randint(0, 4, (2, 6, 6), generator=generator)
    labels[0, :2] = IGNORE_INDEX
    soft = torch.softmax(torch.randn(2, 4, 6, 6, generator=generator), 1)
    return logits_1, logits_2, labels, soft


def own_loss(logits, teacher_logits, soft, label_weights, entropy_weights, valid):
    """One modality's CE + Dice + consistency, written from its logits."""
    log_probs = F.log_softmax(logits, 1)
    return (soft_cross_entropy(log_probs, soft, label_weights)
            + soft_dice_loss(log_probs.exp(), soft, label_weights, valid)
            + consistency_loss(log_probs, torch.softmax(teacher_logits.detach(), 1),
                               entropy_weights))


def test_weighted_mean_hand_case_and_all_zero_weights():
    values = torch.tensor([1.0, 3.0, 5.0])
    assert weighted_mean(values, torch.tensor([1.0, 0.5, 0.0])).item() == pytest.approx(2.5 / 1.5)
    assert weighted_mean(values, torch.zeros(3)).item() == 0.0


def test_soft_cross_entropy_of_uniform_prediction_is_log_c():
    logits = torch.zeros(1, 3, 2, 2)
    targets = torch.softmax(torch.randn(1, 3, 2, 2), 1)
    assert soft_cross_entropy(F.log_softmax(logits, 1), targets,
                              torch.ones(1, 2, 2)).item() == pytest.approx(
        math.log(3))


def test_soft_dice_hand_case():
    # Q = (1/2, 1/2) at both pixels, targets all class 0: D_0 = 2 * 1 / (1 + 2) = 2/3,
    # class 1 has no label mass and contributes 0; mean over 2 classes = (1/3 + 0) / 2.
    logits = torch.zeros(1, 2, 1, 2)
    targets = one_hot(torch.zeros(1, 1, 2, dtype=torch.long), 2)
    weights = torch.ones(1, 1, 2)
    assert soft_dice_loss(logits.softmax(1), targets, weights, weights).item() == pytest.approx(
        1 / 6)


def test_hard_targets_with_unit_weights_match_plain_ce_and_smp_dice():
    logits, _, labels, _ = batch()
    targets, valid = one_hot(labels, 4), valid_mask(labels)
    assert soft_cross_entropy(F.log_softmax(logits, 1), targets, valid).item() == pytest.approx(
        F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX).item(), rel=1e-5)
    dice = smp.losses.DiceLoss("multiclass", ignore_index=IGNORE_INDEX)(logits, labels)
    assert soft_dice_loss(logits.softmax(1), targets, valid, valid).item() == pytest.approx(
        dice.item(), rel=1e-5)


def test_without_selection_it_is_the_plain_multimodal_loss():
    logits_1, logits_2, labels, soft = batch()
    total, parts = cromss_loss(logits_1, logits_2, labels, soft, 0,
                               Selection(enabled=False, ramp_epochs=5, keep=0.5), 1.0)
    valid = valid_mask(labels)
    expected = (own_loss(logits_1, logits_2, soft, valid, valid, valid)
                + own_loss(logits_2, logits_1, soft, valid, valid, valid))
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert parts["kept_proportion"].item() == 1.0


def test_parts_add_up_to_the_total():
    logits_1, logits_2, labels, soft = batch()
    total, parts = cromss_loss(logits_1, logits_2, labels, soft, 2, SELECTION, 0.5)
    expected = (parts["seg_1"] + parts["seg_2"]
                + 0.5 * (parts["consistency_1"] + parts["consistency_2"]))
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)


def test_single_modal_is_ce_plus_dice_only():
    _, logits_2, labels, soft = batch()
    total, parts = cromss_loss(None, logits_2, labels, soft, 0, *SETTINGS)
    valid = valid_mask(labels)
    log_probs = F.log_softmax(logits_2, 1)
    expected = (soft_cross_entropy(log_probs, soft, valid)
                + soft_dice_loss(log_probs.exp(), soft, valid, valid))
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(parts) == {"ce_2", "dice_2", "seg_2"}
    with pytest.raises(ValueError, match="at least one"):
        cromss_loss(None, None, labels, soft, 0, *SETTINGS)


def test_ignored_pixels_weigh_nothing():
    logits_1, logits_2, labels, soft = batch()
    total, _ = cromss_loss(logits_1, logits_2, labels, soft, 1, *SETTINGS)
    ignored = (labels == IGNORE_INDEX).unsqueeze(1)
    changed = [torch.where(ignored, torch.randn_like(x) * 10, x)
               for x in (logits_1.detach(), logits_2.detach(), soft)]
    total_changed, _ = cromss_loss(*changed[:2], labels, changed[2], 1, *SETTINGS)
    assert total_changed.item() == pytest.approx(total.item(), rel=1e-6)


def test_teachers_are_detached():
    student = torch.randn(1, 3, 4, 4, requires_grad=True)
    teacher_logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = consistency_loss(F.log_softmax(student, 1), torch.softmax(teacher_logits, 1),
                            torch.ones(1, 4, 4))
    student_grad, teacher_grad = torch.autograd.grad(loss, (student, teacher_logits),
                                                     allow_unused=True)
    assert teacher_grad is None and bool(student_grad.abs().sum() > 0)


def test_each_modality_gets_only_its_own_gradient_paths():
    # The S1 terms (segmentation and Lc(P2 || Q1)) give no gradient to the S2 logits, and vice
    # versa; selection masks and teachers act as constants.
    logits_1, logits_2, labels, soft = batch(1)
    weights = selection_weights(logits_1.softmax(1), logits_2.softmax(1), labels, 3, SELECTION)
    total, _ = cromss_loss(logits_1, logits_2, labels, soft, 3, *SETTINGS)
    grad_1, grad_2 = torch.autograd.grad(total, (logits_1, logits_2))
    valid = valid_mask(labels)
    own_1 = own_loss(logits_1, logits_2, soft, weights.label_1, weights.entropy_2, valid)
    own_2 = own_loss(logits_2, logits_1, soft, weights.label_2, weights.entropy_1, valid)
    assert torch.allclose(grad_1, torch.autograd.grad(own_1, logits_1)[0], atol=1e-7)
    assert torch.allclose(grad_2, torch.autograd.grad(own_2, logits_2)[0], atol=1e-7)


def test_hard_labels_are_used_when_no_soft_targets_are_given():
    logits_1, logits_2, labels, _ = batch()
    with_none, _ = cromss_loss(logits_1, logits_2, labels, None, 0, *SETTINGS)
    with_hot, _ = cromss_loss(logits_1, logits_2, labels, one_hot(labels, 4), 0, *SETTINGS)
    assert with_none.item() == pytest.approx(with_hot.item())
