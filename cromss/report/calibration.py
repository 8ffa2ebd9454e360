"""Calibration of a pretrained model against the true map (synthetic data): the smoothing claim.

On the pretraining locations the model never trained on (its validation split, every season,
centre crop), each modality's prediction is binned by confidence (the top softmax probability,
:data:`BINS` equal bins). Per location and modality the file keeps the pixel count, the summed
confidence and the number of right pixels (prediction equal to the *true* label) of every bin:
additive counts, so the expected calibration error (ECE, percent) of any resample of locations
follows (:func:`ece_of_counts`), and a bootstrap over locations compares two variants on the same
locations (:mod:`cromss.report.bootstrap`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cromss.atomic import atomic_path
from cromss.constants import IGNORE_INDEX
from cromss.errors import CromssError

BINS = 15


def ece_of_counts(counts: np.ndarray) -> np.ndarray:
    """ECE in percent of per-bin ``[pixels..., confidence sums..., right pixels...]``, shape
    (..., 3 * BINS) -> (...): sum over bins of |right - confidence| over all pixels."""
    bins = counts.shape[-1] // 3
    if 3 * bins != counts.shape[-1]:
        raise ValueError(f"{counts.shape[-1]} counts are not three per bin")
    pixels, confidence, right = (counts[..., i * bins:(i + 1) * bins] for i in range(3))
    total = np.maximum(pixels.sum(-1), 1e-300)
    return 100.0 * np.abs(right - confidence).sum(-1) / total


def binned(probabilities: np.ndarray, truth: np.ndarray) -> list[float]:
    """Per-bin counts of one location (probabilities: classes first; truth: class map)."""
    valid = truth != IGNORE_INDEX
    confidence = probabilities.max(0)[valid]
    right = (probabilities.argmax(0) == truth)[valid]
    index = np.minimum((confidence * BINS).astype(np.int64), BINS - 1)
    return [*np.bincount(index, minlength=BINS).astype(float),
            *np.bincount(index, weights=confidence, minlength=BINS),
            *np.bincount(index, weights=right.astype(float), minlength=BINS)]


def calibration_counts(model_path: str | Path, store: str | Path) -> dict[str, Any]:
    """Binned counts of every held-out location and modality of one pretrained model."""
    import torch

    from cromss.data.store import open_arrays
    from cromss.training.datasets import SIZE_MULTIPLE, model_input
    from cromss.training.pretrain import split_indices
    from cromss.weights.trained import load_model

    model, settings = load_model(model_path)
    missing = [k for k in ("val_fraction", "seed", "s2_bands") if k not in settings]
    if missing:
        raise CromssError(f"{model_path}: the model's settings lack {', '.join(missing)}")
    group = open_arrays(store)
    if "truth" not in group:
        raise CromssError(f"{store}: no true labels (real data): calibration needs the true map")
    _, held_out = split_indices(group["label"].shape[0], float(settings["val_fraction"]),
                                int(settings["seed"]))
    size = min(group["label"].shape[-2:]) // SIZE_MULTIPLE * SIZE_MULTIPLE
    bands = {"s1": 2, "s2": int(settings["s2_bands"])}
    counts: dict[str, list[list[float]]] = {m: [] for m in model.modalities}
    model.eval()
    with torch.no_grad():
        for location in held_out:
            per_location: dict[str, list[float]] = {m: [0.0] * 3 * BINS for m in model.modalities}
            for season in range(group["label"].shape[1]):
                inputs = {m: torch.from_numpy(model_input(
                    np.asarray(group[m][location, season, :, :size, :size]), m, bands[m])[None])
                    for m in model.modalities}
                logits = dict(zip(("s1", "s2"), model(inputs.get("s1"), inputs.get("s2"))))
                truth = np.asarray(group["truth"][location, season, :size, :size])
                for m in model.modalities:
                    probabilities = torch.softmax(logits[m].float(), 1)[0].numpy()
                    per_location[m] = list(np.add(per_location[m], binned(probabilities, truth)))
            for m in model.modalities:
                counts[m].append(per_location[m])
    return {"locations": held_out, "bins": BINS, "seed": int(settings["seed"]),
            "counts": counts}


def write_calibration(models: dict[str, Path], store: str | Path, out: Path) -> dict[str, Any]:
    """Write :func:`calibration_counts` of every named pretrained model as one JSON object."""
    result = {name: calibration_counts(path, store) for name, path in models.items()}
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result))
    return result


def load_calibration(path: str | Path) -> dict[str, Any]:
    """Read a file of :func:`write_calibration`: variant -> held-out locations, binned counts."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CromssError(f"{path}: not a readable calibration file ({err})") from err
    bad = sorted(name for name, value in data.items()
                 if not isinstance(value, dict) or not {"locations", "counts"} <= set(value))
    if bad:
        raise CromssError(f"{path}: calibration of {', '.join(bad)} lacks locations or counts")
    return data
