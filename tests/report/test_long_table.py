"""The long results table: one row per run and metric, and tables 1-4 computed from it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cromss.cli import main
from cromss.report import long_table, tables
from helpers.tables import PRETRAIN, REFERENCE_DFC, epoch, make_run


def write_runs(root: Path) -> list[Path]:
    paths = []
    for seed in (0, 1):
        for weights, miou in (("random", 30.0), ("midF", 41.5), ("midF-nosel", 39.25)):
            for modality in ("s1", "s2"):
                paths.append(make_run(root / f"{weights}/{modality}/seed{seed}/metrics.json",
                                      weights=weights, modality=modality, seed=seed,
                                      miou=miou + seed + 0.123456789, oa=70.0 - seed))
    return paths


def test_one_row_per_run_and_metric(tmp_path: Path) -> None:
    frame = long_table.long_table([tables.load_run(p) for p in write_runs(tmp_path)])
    assert list(frame.columns) == list(long_table.COLUMNS)
    assert len(frame) == 12 * 8  # 12 runs, 4 metrics x 2 conventions
    assert not frame.duplicated([*long_table.KEYS, "metric"]).any()
    row = frame[(frame.weights == "midF") & (frame.modality == "s2") & (frame.seed == 1)
                & (frame.metric == "mIoU_ref")]
    assert row["value"].item() == pytest.approx(41.5 + 1 + 0.123456789 + 5)
    assert set(frame[frame.modality == "s1"]["s2_bands"]) == {"13"}  # as the metrics file says


def test_tables_computed_from_the_long_table_equal_todays(tmp_path: Path) -> None:
    paths = write_runs(tmp_path / "runs")
    out = tmp_path / "results_long.csv"
    assert main(["report", "long-table", "--metrics", *map(str, paths), "--out", str(out)]) == 0
    runs = long_table.runs_from_long(long_table.read_long_table(out))
    direct = [tables.load_run(p) for p in paths]
    variants = tables.resolve_variants(PRETRAIN)
    reference = tables.load_reference(REFERENCE_DFC)
    pd.testing.assert_frame_equal(tables.transfer_table(runs, reference, "dfc2020", variants),
                                  tables.transfer_table(direct, reference, "dfc2020", variants))
    logs = {name: [epoch(0, 1.0, 2.0, 0.8)] for name in ("midF", "midF-nosel")}
    ablation = [r for r in runs if r["modality"] == "s2"]
    pd.testing.assert_frame_equal(
        tables.ablation_table(logs, variants, ablation),
        tables.ablation_table(logs, variants, [r for r in direct if r["modality"] == "s2"]))
    assert tables.metrics_summary(runs) == tables.metrics_summary(direct)


def test_a_run_given_twice_or_a_bad_file_is_refused(tmp_path: Path) -> None:
    path = make_run(tmp_path / "a/metrics.json")
    copy = make_run(tmp_path / "b/metrics.json")
    with pytest.raises(ValueError, match="twice"):
        long_table.long_table([tables.load_run(path), tables.load_run(copy)])
    bad = tmp_path / "bad.csv"
    bad.write_text("task,value\ndw,1\n")
    with pytest.raises(ValueError, match="bad.csv.*lacks"):
        long_table.read_long_table(bad)
