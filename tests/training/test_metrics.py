"""Metrics from a confusion matrix, both absent-class conventions, one ignore index for loss and metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cromss.constants import IGNORE_INDEX
from cromss.training import finetune, metrics


def test_confusion_matrix_counts_pairs_and_drops_ignored_pixels():
    target = np.array([0, 0, 1, 1, 2, IGNORE_INDEX])
    pred = np.array([0, 1, 1, 1, 0, 2])
    cm = metrics.confusion_matrix(pred, target, 4)
    expected = np.zeros((4, 4), dtype=int)
    expected[0, 0] = expected[0, 1] = expected[2, 0] = 1
    expected[1, 1] = 2
    np.testing.assert_array_equal(cm, expected)


def test_scores_by_hand_with_an_absent_class():
    # classes 0..3; class 3 is absent from prediction and truth
    cm = np.array([[1, 1, 0, 0],
                   [0, 2, 0, 0],
                   [1, 0, 0, 0],
                   [0, 0, 0, 0]])
    strict = metrics.scores(cm, "strict")
    reference = metrics.scores(cm, "reference")
    assert strict["OA"] == pytest.approx(100 * 3 / 5)
    iou = [1 / 3, 2 / 3, 0.0]  # class 0: TP 1, FP 1, FN 1; class 1: 2 / 3; class 2: 0 / 1
    f1 = [2 / 4, 4 / 5, 0.0]
    np.testing.assert_allclose(strict["IoU"], [100 * v for v in iou + [0.0]])
    np.testing.assert_allclose(reference["IoU"], [100 * v for v in iou + [1.0]])
    np.testing.assert_allclose(reference["F1"], [100 * v for v in f1 + [1.0]])
    assert strict["mIoU"] == pytest.approx(100 * sum(iou) / 4)
    assert reference["mIoU"] == pytest.approx(100 * (sum(iou) + 1) / 4)
    assert strict["mF1"] == pytest.approx(100 * sum(f1) / 4)
    recall = [0.5, 1.0, 0.0]
    assert strict["AA"] == pytest.approx(100 * sum(recall) / 4)
    assert reference["AA"] == pytest.approx(100 * (sum(recall) + 1) / 4)
    assert set(metrics.all_scores(cm)) == {"strict", "reference"}


def test_perfect_prediction_scores_100_and_bad_input_raises():
    target = np.array([[0, 1], [2, 2]])
    cm = metrics.confusion_matrix(target, target, 3)
    assert metrics.scores(cm)["mIoU"] == pytest.approx(100)
    with pytest.raises(ValueError, match="outside"):
        metrics.confusion_matrix(np.array([5]), np.array([0]), 3)
    with pytest.raises(ValueError, match="pixels"):
        metrics.confusion_matrix(np.array([0, 1]), np.array([0]), 3)
    with pytest.raises(ValueError, match="convention"):
        metrics.scores(cm, "lenient")


def test_loss_and_metric_ignore_the_same_pixels():
    """Changing the prediction on pixels labelled IGNORE_INDEX changes neither loss nor metric,
    while the same change on a labelled pixel changes both."""
    torch.manual_seed(0)
    labels = torch.randint(0, 4, (1, 6, 6))
    labels[0, :2] = IGNORE_INDEX
    logits = torch.randn(1, 4, 6, 6)
    dice = finetune.dice_loss()

    def loss_and_cm(values: torch.Tensor) -> tuple[float, np.ndarray]:
        cm = metrics.confusion_matrix(values.argmax(1).numpy(), labels.numpy(), 4)
        return float(finetune.segmentation_loss(values, labels, dice)), cm

    base_loss, base_cm = loss_and_cm(logits)
    changed = logits.clone()
    changed[0, :, :2] = torch.randn(4, 2, 6) * 10
    loss, cm = loss_and_cm(changed)
    assert loss == pytest.approx(base_loss, abs=1e-6)
    np.testing.assert_array_equal(cm, base_cm)
    changed[0, :, 3] = torch.randn(4, 6) * 10
    loss, cm = loss_and_cm(changed)
    assert loss != pytest.approx(base_loss, abs=1e-6)
    assert base_cm.sum() == cm.sum() == 24


def test_all_ignored_batch_gives_a_finite_loss():
    labels = torch.full((1, 4, 4), IGNORE_INDEX)
    loss = finetune.segmentation_loss(torch.randn(1, 3, 4, 4), labels, finetune.dice_loss())
    assert torch.isfinite(loss)


def test_tile_confusion_matrices_sum_to_the_batch_matrix():
    rng = np.random.default_rng(0)
    pred, target = rng.integers(0, 3, (4, 5, 5)), rng.integers(0, 3, (4, 5, 5))
    target[1, 0] = IGNORE_INDEX
    tiles = metrics.tile_confusion_matrices(pred, target, 3)
    assert len(tiles) == 4 and all(len(t) == 9 for t in tiles)
    assert np.sum(tiles, 0).reshape(3, 3).tolist() == metrics.confusion_matrix(
        pred, target, 3).tolist()
    assert sum(tiles[1]) == 25 - 5
