"""Claims derived from the published tables and tested on hand-made runs."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cromss.cli import main
from cromss.report import claims, tables
from helpers import ROOT
from helpers.claims import simulated_tiles
from helpers.tables import PRETRAIN, REFERENCE_DFC, epoch, make_run, write_log

REFERENCE_DW = ROOT / "reference" / "paper_table2_dw.csv"
ABLATION = {"task": "dfc2020", "modality": "s2", "setting": "frozen"}


def by_statement(found: list[claims.Claim]) -> dict[str, claims.Claim]:
    return {c.statement: c for c in found}


def test_comparative_claims_are_read_off_the_published_numbers() -> None:
    dfc = by_statement(claims.paper_claims(tables.load_reference(REFERENCE_DFC)))
    headline = dfc["CromSS-midF > random on dfc2020 S2 13B frozen"]
    assert headline.direction == 1 and headline.paper_effect == pytest.approx(42.52 - 31.26)
    assert headline.arms == (("dfc2020", "S2", "CromSS-midF", "13", "frozen"),
                             ("dfc2020", "S2", "random", "13", "frozen"))
    s1 = dfc["CromSS-lateF > random on dfc2020 S1 frozen"]  # S1 CromSS rows: 13-band partners
    assert s1.arms[0] == ("dfc2020", "S1", "CromSS-lateF", "13", "frozen")
    assert s1.arms[1] == ("dfc2020", "S1", "random", "", "frozen")
    fusion = dfc["CromSS-midF < CromSS-lateF on dfc2020 S2 9B frozen"]
    # effects in the claimed direction; the paper's std of a contrast from its rows' stds
    assert fusion.direction == -1 and fusion.paper_effect == pytest.approx(41.69 - 40.31)
    assert fusion.paper_std == pytest.approx((0.40 ** 2 + 0.78 ** 2) ** 0.5, abs=1e-4)
    frozen = dfc["frozen CromSS-midF > fine-tuned random on dfc2020 S2 13B"]
    assert frozen.paper_effect == pytest.approx(42.52 - 33.63)
    dw = by_statement(claims.paper_claims(tables.load_reference(REFERENCE_DW)))
    gain = dw["gain of CromSS-midF over random: S2 > S1 on dw frozen"]
    assert gain.weights == (1, -1, -1, 1)
    assert gain.paper_effect == pytest.approx((60.56 - 46.21) - (39.63 - 29.85))
    # equal published values (S1 frozen midF and lateF, 39.63) make no claim
    assert not any("CromSS-lateF on dw S1 frozen" in s for s in dw)
    families = {c.family for c in dw.values()}
    assert families == {"pretraining beats random", "gain larger for S2 than S1",
                        "middle vs late fusion", "frozen CromSS vs fine-tuned random"}


def test_ablation_claims_pair_each_full_variant_with_one_component_off() -> None:
    variants = tables.resolve_variants(
        {**PRETRAIN, "variants": {**PRETRAIN["variants"],
                                  "midF-nosmooth": {"fusion": "middle",
                                                    "smoothing": {"enabled": False}},
                                  "lateF-none": {"fusion": "late", "selection": {"enabled": False},
                                                 "smoothing": {"enabled": False}}}})
    found = claims.ablation_claims(variants, ABLATION)
    assert sorted(c.statement for c in found) == [
        "selection raises mIoU: midF > midF-nosel on dfc2020 S2 frozen",
        "smoothing raises mIoU: midF > midF-nosmooth on dfc2020 S2 frozen"]
    assert all(c.direction == 1 and c.weights == (1, -1) for c in found)


def write_arm(root: Path, weights: str, quality: float, difficulty: np.ndarray,
              setting: str = "frozen", seeds: tuple[int, ...] = (0, 1)) -> list[Path]:
    rng = np.random.default_rng(zlib.crc32(f"{weights}/{setting}".encode()))
    return [make_run(root / f"{weights}/{setting}/seed{seed}/metrics.json", weights=weights,
                     setting=setting, seed=seed, class_names=("a", "b", "c"),
                     tiles=simulated_tiles(rng, difficulty, quality).tolist())
            for seed in seeds]


def test_a_clear_effect_holds_and_a_reversed_one_does_not(tmp_path: Path) -> None:
    difficulty = np.random.default_rng(0).normal(0, 1, 40)
    paths = (write_arm(tmp_path, "midF", 2.0, difficulty)
             + write_arm(tmp_path, "lateF", 2.0, difficulty)
             + write_arm(tmp_path, "random", 0.0, difficulty)
             + write_arm(tmp_path, "random", 2.5, difficulty, setting="finetuned")
             + write_arm(tmp_path, "midF-nosel", 2.0, difficulty))
    runs = [tables.load_run(p) for p in paths]
    variants = tables.resolve_variants(PRETRAIN)
    table, not_run = claims.claims_table(runs, [tables.load_reference(REFERENCE_DFC)], variants,
                                         {}, ABLATION, replicates=300)
    verdicts = dict(zip(table["claim"], table["verdict"]))
    assert verdicts["CromSS-midF > random on dfc2020 S2 13B frozen"] == "holds"
    assert verdicts["CromSS-lateF > random on dfc2020 S2 13B frozen"] == "holds"
    # the paper: frozen CromSS-midF beats fine-tuned random; here fine-tuned random is better
    assert verdicts["frozen CromSS-midF > fine-tuned random on dfc2020 S2 13B"] == "does not hold"
    against = table[table["claim"] == "frozen CromSS-midF > fine-tuned random on dfc2020 S2 13B"]
    assert against["effect"].item() < 0 and against["high"].item() < 0
    # two arms of the same quality (other pixels drawn): no decision either way
    assert verdicts["selection raises mIoU: midF > midF-nosel on dfc2020 S2 frozen"] == (
        "inconclusive")
    row = table[table["claim"] == "CromSS-midF > random on dfc2020 S2 13B frozen"].iloc[0]
    assert row["low"] < row["effect"] < row["high"] and row["low"] > 0
    assert (row["seeds"], row["units"], row["seeds_agreeing"]) == (2, 40, 2)
    assert row["paper_effect"] == pytest.approx(11.26)
    assert not_run > 0  # S1 and the 9-band rows were not run
    assert list(table.columns) == list(claims.COLUMNS)
    assert table[["effect", "low", "high", "verdict"]].notna().all().all()


def test_a_claim_of_a_negative_contrast_is_reported_in_its_direction() -> None:
    difficulty = np.random.default_rng(4).normal(0, 1, 30)
    rng = np.random.default_rng(5)
    arms = {("t", "S1", "CromSS-midF", "13", "frozen"): {0: simulated_tiles(rng, difficulty, 0.0)},
            ("t", "S1", "CromSS-lateF", "13", "frozen"): {0: simulated_tiles(rng, difficulty, 2.0)}}
    claim = claims.Claim("middle vs late fusion", "CromSS-midF < CromSS-lateF", "t",
                         tuple(arms), (1, -1), -1, 0.08, 0.1)
    row = claims.test_contrast(claim, arms, replicates=300)
    assert row is not None and row["verdict"] == "holds"
    assert 0 < row["low"] < row["effect"] < row["high"]
    assert row["arms"] == "+1 S1/CromSS-midF/13/frozen; -1 S1/CromSS-lateF/13/frozen"


def test_identical_arms_are_inconclusive(tmp_path: Path) -> None:
    difficulty = np.random.default_rng(1).normal(0, 1, 20)
    tiles = simulated_tiles(np.random.default_rng(2), difficulty, 1.0).tolist()
    paths = [make_run(tmp_path / f"{w}/seed{s}/metrics.json", weights=w, seed=s,
                      class_names=("a", "b", "c"), tiles=tiles)
             for w in ("midF", "random") for s in (0, 1)]
    table, _ = claims.claims_table([tables.load_run(p) for p in paths],
                                   [tables.load_reference(REFERENCE_DFC)],
                                   tables.resolve_variants(PRETRAIN), {}, None, replicates=200)
    row = table[table["claim"] == "CromSS-midF > random on dfc2020 S2 13B frozen"].iloc[0]
    assert (row["effect"], row["low"], row["high"]) == (0.0, 0.0, 0.0)
    assert row["verdict"] == "inconclusive"


def test_selection_precision_is_tested_on_the_epochs_after_the_ramp() -> None:
    variants = tables.resolve_variants(
        {**PRETRAIN, "selection": {"enabled": True, "ramp_epochs": 2}})
    precision = [0.60, 0.65, 0.80, 0.82, 0.78, 0.79, 0.81]
    log = [epoch(e, 1.0, 2.0, p) for e, p in enumerate(precision)]
    rows = claims.selection_rows({"midF": log, "midF-nosel": log}, variants, replicates=300)
    assert [r["claim"] for r in rows] == [
        "midF: S1 selection keeps right labels more often than the label rate",
        "midF: S2 selection keeps right labels more often than the label rate"]
    s1 = rows[0]
    assert s1["effect"] == pytest.approx(100 * (np.mean(precision[2:]) - 0.7))
    assert (s1["units"], s1["verdict"]) == (5, "holds")
    assert s1["arms"] == "midF log.jsonl, epochs 2-6"
    few = claims.selection_rows({"midF": log[:6]}, variants, replicates=100)
    assert few[0]["verdict"] == "inconclusive"  # four epochs: too few to decide


def test_metrics_without_tiles_are_refused(tmp_path: Path) -> None:
    run = tables.load_run(make_run(tmp_path / "metrics.json"))
    with pytest.raises(ValueError, match="metrics.json: no per-tile"):
        claims.run_arms([run], tables.resolve_variants(PRETRAIN))


def test_cli_writes_csv_markdown_and_html(tmp_path: Path) -> None:
    difficulty = np.random.default_rng(3).normal(0, 1, 10)
    paths = write_arm(tmp_path, "midF", 1.5, difficulty) + write_arm(tmp_path, "random", 0.0,
                                                                        difficulty)
    log = write_log(tmp_path / "pretrain/midF/log.jsonl",
                    [epoch(e, 1.0, 2.0, 0.8) for e in range(6)])
    out = tmp_path / "tables/claims.csv"
    args = ["report", "claims", "--metrics", *map(str, paths), "--reference", str(REFERENCE_DFC),
            "--pretrain-logs", str(log),
            "--variants", json.dumps({**PRETRAIN, "selection": {"enabled": True, "ramp_epochs": 2}}),
            "--ablation", json.dumps(ABLATION), "--out", str(out)]
    assert main(args) == 0
    table = pd.read_csv(out)
    assert set(table["family"]) == {"pretraining beats random", "selection precision"}
    assert set(table["verdict"]) <= {"holds", "does not hold", "inconclusive"}
    text = out.with_suffix(".md").read_text()
    assert text.startswith("# Claims, tested on this run")
    assert "pretraining beats random: 1 holds, 0 does not hold, 0 inconclusive (of 1)" in text
    html = out.with_suffix(".html").read_text()
    assert 'id="claims"' in html and "cromss-table" in html and "holds" in html
    first = out.read_text()
    assert main(args) == 0 and out.read_text() == first  # reproducible
