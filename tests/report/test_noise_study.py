"""The label-noise study's table and figure from hand-made pretraining logs and metrics files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cromss.cli import main
from cromss.errors import CromssError
from cromss.report import noise_study
from cromss.report.bootstrap import miou_of_counts
from helpers.claims import simulated_tiles
from helpers.tables import epoch, make_run, write_log


def write_arm(root: Path, level: float, variant: str, precisions: list[float], kept: list[float],
              quality: float, seeds: tuple[int, ...] = (0, 1), modality: str = "s2") -> list[str]:
    """A log (one epoch per precision) and one metrics file per seed; ``--arm`` arguments."""
    records = [epoch(n, k, 1.0, p) for n, (k, p) in enumerate(zip(kept, precisions))]
    log = write_log(root / f"noise{level}" / variant / "log.jsonl", records)
    rng = np.random.default_rng(int(10 * level))
    metrics = [make_run(root / f"noise{level}" / variant / f"seed{s}.json", task="dw", seed=s,
                        modality=modality, weights=variant, tiles=simulated_tiles(rng, rng.normal(0, 1, 12),
                                                               quality).tolist())
               for s in seeds]
    return [str(level), variant, str(log), *map(str, metrics)]


def test_a_row_per_level_and_variant_with_intervals_around_the_estimates(tmp_path: Path) -> None:
    arms = [noise_study.parse_arm(write_arm(tmp_path, level, variant, [0.8, 0.9, 0.85, 0.95],
                                            [1.0, 0.75, 0.5, 0.5], quality, modality="s1"))
            for level, quality in ((0.1, 2.0), (0.5, 0.0)) for variant in ("midF", "other")]
    table = noise_study.noise_table(arms, "s1")
    assert list(table[["variant", "level"]].itertuples(index=False, name=None)) == [
        ("midF", 0.1), ("midF", 0.5), ("other", 0.1), ("other", 0.5)]
    row = table.iloc[0]
    # the epochs after the ramp (kept 0.5): 0.85 and 0.95, S1
    assert row["epochs"] == 2 and row["selection_precision"] == pytest.approx(90.0)
    assert row["selection_low"] <= 90.0 <= row["selection_high"]
    assert row["selection_high"] - row["selection_low"] > 0
    assert row["label_precision"] == pytest.approx(70.0)
    assert row["seeds"] == 2 and row["tiles"] == 12 and row["ci_level"] == 0.95
    assert row["miou_low"] < row["miou"] < row["miou_high"]
    # less noise, better transfer in these simulated runs
    assert table.iloc[0]["miou"] > table.iloc[1]["miou"]
    # mIoU: the mean over seeds of the mIoU of the summed tiles
    runs = [json.loads(Path(p).read_text()) for p in arms[0].metrics]
    expected = np.mean([miou_of_counts(np.asarray(r["tile_confusion_matrices"]).sum(0))
                        for r in runs])
    assert row["miou"] == pytest.approx(expected)


def test_a_log_without_selection_precision_kept_every_labelled_pixel(tmp_path: Path) -> None:
    args = write_arm(tmp_path, 0.3, "nosel", [0.8, 0.8], [1.0, 1.0], 1.0, seeds=(0,))
    records = [json.loads(line) for line in Path(args[2]).read_text().splitlines()]
    write_log(Path(args[2]), [r | {"selection_precision_s2": None} for r in records])
    row = noise_study.noise_table([noise_study.parse_arm(args)], "s2").iloc[0]
    assert row["selection_precision"] == pytest.approx(row["label_precision"]) == pytest.approx(70)
    assert row["epochs"] == 2 and row["seeds"] == 1


def test_wrong_arms_are_errors_naming_the_problem(tmp_path: Path) -> None:
    args = write_arm(tmp_path, 0.1, "midF", [0.8], [0.5], 1.0, seeds=(0,))
    with pytest.raises(CromssError, match="LEVEL VARIANT LOG METRICS"):
        noise_study.parse_arm(args[:3])
    with pytest.raises(CromssError, match="'low' is not a number"):
        noise_study.parse_arm(["low", *args[1:]])
    with pytest.raises(CromssError, match="same noise level and variant"):
        noise_study.noise_table([noise_study.parse_arm(args)] * 2, "s2")
    with pytest.raises(CromssError, match="a s2 run, the study is on s1"):
        noise_study.noise_table([noise_study.parse_arm(args)], "s1")


def test_the_cli_writes_the_table_and_its_figure(tmp_path: Path) -> None:
    argv = ["report", "noise-study", "--modality", "s2", "--out", str(tmp_path / "study.csv")]
    for level in (0.1, 0.3):
        argv += ["--arm", *write_arm(tmp_path, level, "midF", [0.8, 0.9], [0.5, 0.5], 1.0)]
    assert main(argv) == 0
    table = pd.read_csv(tmp_path / "study.csv")
    assert list(table.columns) == list(noise_study.COLUMNS) and len(table) == 2
    assert np.isfinite(table.drop(columns="variant").to_numpy(dtype=float)).all()
    png = tmp_path / "study.png"
    assert main(["report", "figure", "noise-study", "--table", str(tmp_path / "study.csv"),
                 "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
