"""Calibration of pretrained models against the true map, and the smoothing claim it tests."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cromss import models
from cromss.cli import main
from cromss.report import calibration, claims, tables
from cromss.training.pretrain import split_indices
from cromss.weights import trained
from helpers.stores import write_store
from helpers.tables import PRETRAIN as TABLE_PRETRAIN

BINS = calibration.BINS
MODEL = {"name": "midF", "fusion": "middle", "encoder": "resnet18", "s2_bands": 9,
         "decoder_channels": [16, 16, 8, 8, 8], "epochs": 1, "val_fraction": 0.5, "seed": 3}


def test_ece_by_hand() -> None:
    counts = np.zeros(3 * BINS)
    counts[[BINS - 1, 2 * BINS - 1, 3 * BINS - 1]] = [10, 9.5, 6]  # conf 0.95, accuracy 0.6
    counts[[7, BINS + 7, 2 * BINS + 7]] = [10, 5.0, 5]  # conf 0.5, accuracy 0.5
    assert calibration.ece_of_counts(counts) == pytest.approx(100 * 3.5 / 20)
    with pytest.raises(ValueError, match="three per bin"):
        calibration.ece_of_counts(np.zeros(10))


def test_binned_counts_every_valid_pixel_by_confidence() -> None:
    truth = np.array([[0, 1], [2, 255]])
    probabilities = np.zeros((3, 2, 2))
    probabilities[0] = 1.0  # certain of class 0 everywhere: one of three valid pixels right
    counts = np.asarray(calibration.binned(probabilities, truth))
    assert counts[:BINS].sum() == 3 and counts[BINS - 1] == 3
    assert counts[2 * BINS - 1] == 3.0 and counts[3 * BINS - 1] == 1.0
    assert calibration.ece_of_counts(counts) == pytest.approx(100 * 2 / 3)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibration")
    torch.manual_seed(0)
    path = trained.save_model(root / "model.pt", models.build_model(MODEL), MODEL)
    return path, write_store(root / "nol.zarr", samples=4, seasons=2, size=40)


def test_counts_of_the_held_out_locations_per_modality(pretrained, tmp_path) -> None:
    model_path, store = pretrained
    out = tmp_path / "calibration.json"
    assert main(["report", "calibration", "--model", f"midF={model_path}",
                 f"nosmooth={model_path}", "--store", str(store), "--out", str(out)]) == 0
    data = calibration.load_calibration(out)
    assert set(data) == {"midF", "nosmooth"}
    midf = data["midF"]
    assert midf["locations"] == split_indices(4, 0.5, 3)[1] and len(midf["locations"]) == 2
    assert set(midf["counts"]) == {"s1", "s2"}
    for per_location in midf["counts"].values():
        counts = np.asarray(per_location)
        assert counts.shape == (2, 3 * BINS)
        # 2 seasons x the 32 x 32 centre crop (the true map has no ignored pixel)
        assert counts[:, :BINS].sum(1).tolist() == [2 * 32 * 32] * 2
        assert (calibration.ece_of_counts(counts) >= 0).all()
    assert data["nosmooth"] == midf  # the same model: the same counts


def test_real_data_without_truth_is_refused(pretrained, tmp_path) -> None:
    model_path, _ = pretrained
    store = write_store(tmp_path / "real.zarr", samples=2, seasons=1, size=32, truth=False)
    with pytest.raises(ValueError, match="no true labels"):
        calibration.calibration_counts(model_path, store)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"midF": {"counts": {}}}))
    with pytest.raises(ValueError, match="midF lacks"):
        calibration.load_calibration(bad)


def counts_of(rng: np.random.Generator, confidence: float, accuracy: float,
              locations: int = 12) -> list[list[float]]:
    """Per-location counts of pixels all in one bin, at a given confidence and accuracy."""
    rows = []
    for _ in range(locations):
        row = np.zeros(3 * BINS)
        right = rng.binomial(500, accuracy)
        index = min(int(confidence * BINS), BINS - 1)
        row[[index, BINS + index, 2 * BINS + index]] = [500, 500 * confidence, right]
        rows.append(row.tolist())
    return rows


def test_smoothing_claim_holds_when_the_smoothed_model_is_better_calibrated() -> None:
    variants = tables.resolve_variants({**TABLE_PRETRAIN, "variants": {
        "midF": {"fusion": "middle"},
        "midF-nosmooth": {"fusion": "middle", "smoothing": {"enabled": False}}}})
    rng = np.random.default_rng(0)
    calibrations = {
        "midF": {"locations": list(range(12)), "counts": {"s2": counts_of(rng, 0.75, 0.72)}},
        "midF-nosmooth": {"locations": list(range(12)),
                          "counts": {"s2": counts_of(rng, 0.97, 0.72)}}}
    rows = claims.calibration_rows(calibrations, variants, replicates=300)
    assert len(rows) == 1
    row = rows[0]
    assert row["claim"] == "smoothing lowers the calibration error of S2: ECE midF-nosmooth > midF"
    assert row["effect"] == pytest.approx(22, abs=2) and row["verdict"] == "holds"
    assert row["units"] == 12 and row["metric"] == "ECE (%)"
    calibrations["midF"]["locations"] = list(range(1, 13))
    with pytest.raises(ValueError, match="other held-out locations"):
        claims.calibration_rows(calibrations, variants)
