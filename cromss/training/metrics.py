"""Segmentation metrics from a confusion matrix accumulated over a whole test set (method §8).

Rows of the confusion matrix are the true class, columns the predicted class. Pixels whose label is
``constants.IGNORE_INDEX`` are dropped before counting, the same index the training losses ignore.

Two conventions for a class whose score has a zero denominator (for IoU and F1: absent from both
prediction and ground truth; for the recall in AA: absent from the ground truth):
``strict`` counts it as 0, ``reference`` (the authors' implementation) counts it as 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cromss.constants import IGNORE_INDEX

CONVENTIONS = {"strict": 0.0, "reference": 1.0}


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Counts of (true, predicted) class pairs over the pixels whose target is not ignored."""
    pred = np.asarray(pred).ravel().astype(np.int64)
    target = np.asarray(target).ravel().astype(np.int64)
    if pred.shape != target.shape:
        raise ValueError(f"prediction has {pred.size} pixels, target {target.size}")
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    if target.size and (target.max() >= num_classes or target.min() < 0):
        raise ValueError(f"target holds class {int(target.max())} outside 0..{num_classes - 1}")
    if pred.size and (pred.max() >= num_classes or pred.min() < 0):
        raise ValueError(f"prediction holds class {int(pred.max())} outside 0..{num_classes - 1}")
    counts = np.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def tile_confusion_matrices(pred: np.ndarray, target: np.ndarray, num_classes: int
                            ) -> list[list[int]]:
    """One flattened (row-major) confusion matrix per tile of a batch (N, H, W): their sum is the
    batch's matrix, so a resample of tiles recomputes any score (mIoU is not a mean over tiles)."""
    return [confusion_matrix(p, t, num_classes).ravel().tolist() for p, t in zip(pred, target)]


def _ratio(numerator: np.ndarray, denominator: np.ndarray, empty_value: float) -> np.ndarray:
    out = np.full(numerator.shape, empty_value, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def scores(cm: np.ndarray, convention: str = "strict") -> dict[str, Any]:
    """OA, AA, mIoU, mF1 and per-class IoU / F1 in percent under one absent-class convention."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; known: {sorted(CONVENTIONS)}")
    empty = CONVENTIONS[convention]
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    true_count = cm.sum(axis=1)
    pred_count = cm.sum(axis=0)
    total = cm.sum()
    iou = _ratio(tp, true_count + pred_count - tp, empty)
    f1 = _ratio(2 * tp, true_count + pred_count, empty)
    recall = _ratio(tp, true_count, empty)
    return {
        "OA": 100.0 * float(tp.sum() / total) if total else 0.0,
        "AA": 100.0 * float(recall.mean()),
        "mIoU": 100.0 * float(iou.mean()),
        "mF1": 100.0 * float(f1.mean()),
        "IoU": [100.0 * float(v) for v in iou],
        "F1": [100.0 * float(v) for v in f1],
    }


def all_scores(cm: np.ndarray) -> dict[str, dict[str, Any]]:
    """Scores under both conventions, keyed ``strict`` and ``reference``."""
    return {name: scores(cm, name) for name in CONVENTIONS}
