"""Cross-modal sample selection (method §4): hand-computed cases and properties."""

from __future__ import annotations

import math

import pytest
import torch

from cromss.constants import IGNORE_INDEX
from cromss.selection import (cross_modal_selection, enhance, entropy_confidence,
                              entropy_selection_mask, kept_proportion, label_confidence,
                              label_selection_mask, ramp, selection_precision)


def probs_of(*pixels: tuple[float, ...]) -> torch.Tensor:
    """1 x C x 1 x P probabilities from P pixel distributions."""
    return torch.tensor(pixels).T.reshape(1, len(pixels[0]), 1, len(pixels))


def loop_selection(conf: torch.Tensor, labels: torch.Tensor, rho: float, num_classes: int):
    """The reference's per-class loop with top-k, written out for comparison."""
    weights = torch.zeros_like(conf)
    for k in range(num_classes):
        members = labels == k
        kept = math.floor(int(members.sum()) * rho)
        if kept == 0:
            continue
        threshold = torch.topk(conf[members], kept).values[-1]
        weights[members] = 1.0 if threshold == 0 else (conf[members] / threshold).clamp(0, 1)
    return weights


def test_label_confidence_is_probability_of_label_and_zero_where_ignored():
    probs = probs_of((0.7, 0.2, 0.1), (0.1, 0.3, 0.6), (0.2, 0.2, 0.6))
    labels = torch.tensor([[[0, 2, IGNORE_INDEX]]])
    assert torch.allclose(label_confidence(probs, labels), torch.tensor([[[0.7, 0.6, 0.0]]]))


def test_entropy_confidence_hand_cases():
    probs = probs_of((0.25, 0.25, 0.25, 0.25), (1.0, 0.0, 0.0, 0.0), (0.5, 0.5, 0.0, 0.0))
    # 1 - H / log 4: uniform 0, one-hot 1, two equal classes 1 - log 2 / log 4 = 0.5
    assert torch.allclose(entropy_confidence(probs), torch.tensor([[[0.0, 1.0, 0.5]]]), atol=1e-6)


def test_entropy_confidence_nan_becomes_zero():
    probs = probs_of((float("nan"), 0.5))
    assert entropy_confidence(probs).item() == 0.0


def test_enhance_hand_case():
    first, second = enhance(torch.tensor([0.5, 1.0]), torch.tensor([0.2, 0.0]))
    assert torch.allclose(first, torch.tensor([0.3, 0.5]))
    assert torch.allclose(second, torch.tensor([0.15, 0.0]))


@pytest.mark.parametrize("epoch, expected", [(0, 0.997), (40, 0.857), (60, 0.634), (80, 0.5),
                                             (81, 0.5), (200, 0.5)])
def test_kept_proportion_with_paper_defaults(epoch, expected):
    assert round(kept_proportion(epoch, 80, 0.5), 3) == expected


def test_ramp_formula_and_errors():
    assert ramp(40, 80) == pytest.approx(math.exp(-1.25))
    assert ramp(120, 80) == 1.0
    with pytest.raises(ValueError, match="ramp_epochs"):
        ramp(1, 0)
    with pytest.raises(ValueError, match="keep"):
        kept_proportion(1, 80, 1.5)


def test_label_selection_hand_case():
    conf = torch.tensor([[[0.9, 0.6, 0.3, 0.1, 0.8, 0.0, 0.0, 0.7]]])
    labels = torch.tensor([[[0, 0, 0, 0, 1, 2, 2, IGNORE_INDEX]]])
    weights = label_selection_mask(conf, labels, 0.5, num_classes=3)
    # class 0: m = 2, t = 0.6; class 1: m = floor(0.5) = 0; class 2: m = 1, t = 0 -> weight 1
    expected = torch.tensor([[[1.0, 1.0, 0.5, 1 / 6, 0.0, 1.0, 1.0, 0.0]]])
    assert torch.allclose(weights, expected)


def test_label_selection_all_ones_at_full_proportion():
    conf = torch.rand(2, 5, 6)
    labels = torch.randint(0, 4, (2, 5, 6))
    labels[0, 0] = IGNORE_INDEX
    weights = label_selection_mask(conf, labels, 1.0, num_classes=4)
    assert torch.equal(weights, (labels != IGNORE_INDEX).float())


@pytest.mark.parametrize("rho", [0.997, 0.857, 0.634, 0.5, 0.1])
def test_label_selection_properties_and_loop_equivalence(rho):
    generator = torch.Generator().manual_seed(int(rho * 1000))
    conf = torch.rand(3, 17, 19, generator=generator)
    labels = torch.randint(0, 5, (3, 17, 19), generator=generator)
    labels[torch.rand(3, 17, 19, generator=generator) < 0.1] = IGNORE_INDEX
    weights = label_selection_mask(conf, labels, rho, num_classes=6)
    assert torch.allclose(weights, loop_selection(conf, labels, rho, 6))
    assert bool(((weights >= 0) & (weights <= 1)).all())
    assert bool((weights[labels == IGNORE_INDEX] == 0).all())
    for k in range(5):
        members = labels == k
        # distinct confidences: exactly floor(n_k rho) pixels keep the full weight
        assert int((weights[members] == 1).sum()) == math.floor(int(members.sum()) * rho)


def test_label_selection_with_tied_and_zero_confidences_matches_the_loop():
    generator = torch.Generator().manual_seed(3)
    conf = torch.randint(0, 4, (2, 9, 11), generator=generator).float() / 4
    labels = torch.randint(0, 3, (2, 9, 11), generator=generator)
    labels[0, 0] = IGNORE_INDEX
    for rho in (0.3, 0.5, 0.9):
        assert torch.equal(label_selection_mask(conf, labels, rho, 3),
                           loop_selection(conf, labels, rho, 3))


@pytest.mark.parametrize("label", [3, 7, -1])
def test_label_selection_rejects_out_of_range_labels(label):
    with pytest.raises(ValueError, match="class indices"):
        label_selection_mask(torch.rand(1, 2, 2), torch.full((1, 2, 2), label), 0.5,
                             num_classes=3)


def test_entropy_selection_mask_follows_ramp_then_confidence():
    conf = torch.tensor([0.0, 0.5, 1.0])
    r = ramp(2, 5)
    assert torch.allclose(entropy_selection_mask(conf, 2, 5), (1 - r) + r * conf)
    assert torch.allclose(entropy_selection_mask(conf, 5, 5), conf)
    assert torch.equal(entropy_selection_mask(conf, 9, 5), conf)


def test_cross_modal_selection_weights_ignored_pixels_zero_and_in_unit_interval():
    probs_1 = torch.softmax(torch.randn(2, 9, 8, 8), 1)
    probs_2 = torch.softmax(torch.randn(2, 9, 8, 8), 1)
    labels = torch.randint(0, 9, (2, 8, 8))
    labels[:, :2] = IGNORE_INDEX
    weights = cross_modal_selection(probs_1, probs_2, labels, 3, 5, 0.5, 9)
    assert weights.kept_proportion == pytest.approx(kept_proportion(3, 5, 0.5))
    for mask in (weights.label_1, weights.label_2, weights.entropy_1, weights.entropy_2):
        assert bool((mask[:, :2] == 0).all())
        assert bool(((mask >= 0) & (mask <= 1)).all())


def test_selection_precision_hand_case():
    weights = torch.tensor([1.0, 0.5, 0.5, 0.0])
    labels = torch.tensor([1, 2, 3, 4])
    truth = torch.tensor([1, 0, 3, 0])
    assert selection_precision(weights, labels, truth) == pytest.approx(1.5 / 2.0)
    assert math.isnan(selection_precision(torch.zeros(4), labels, truth))
