"""The optional label-noise study (`snakemake noise_study`): its plan, its checks, and its run on
the tiny config."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.workflow import TINY, copy_workflow, planned_jobs, snakemake, with_config

NOSEL = {"fusion": "middle", "s2_bands": 13, "selection": {"enabled": False},
         "smoothing": {"enabled": False}}


def tiny_study(workdir: Path) -> tuple[str, ...]:
    """Snakemake arguments of the tiny config with two noise levels and one variant, without
    selection (the cheapest plan that reaches every rule; the table's arithmetic for a selecting
    variant is tested in tests/report/test_noise_study.py)."""
    def change(config: dict) -> None:
        config["pretrain"]["variants"]["midF-nosel"] = NOSEL
        config["noise_study"] = {"levels": [0.1, 0.5], "variants": ["midF-nosel"]}

    study = with_config(workdir, "noise.yaml", TINY, change)
    return ("--configfile", str(study), "--replace-workflow-config")


def test_the_study_plans_a_world_store_and_runs_per_level_and_not_in_the_default_target(
        tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path)
    jobs = planned_jobs(workdir, "noise_study")
    # config.yaml: levels 0.1, 0.3, 0.5; midF and midF-nosel; dw/s2/frozen on the main world's
    # dw stores (2 seeds in each transfer job)
    assert jobs == {"synthetic_world": 1, "store": 2, "noise_world": 3, "noise_nol_store": 3,
                    "noise_pretrain": 6, "noise_transfer": 6, "noise_study_table": 1,
                    "noise_study_figure": 1, "noise_study": 1}
    assert not {name for name in planned_jobs(workdir) if name.startswith("noise")}


def test_unknown_study_variants_stop_the_study_naming_them(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path)
    args = ("--configfile", str(TINY), "--replace-workflow-config")
    result = snakemake(workdir, "-n", *args, "noise_study", check=False)
    assert result.returncode != 0
    assert "noise_study.variants: midF-nosel not in pretrain.variants" in (result.stdout
                                                                           + result.stderr)
    assert planned_jobs(workdir, *args)  # the main DAG of the same config still plans


@pytest.mark.slow
def test_the_study_runs_on_the_tiny_config(finished_tiny_run: Path, tmp_path: Path) -> None:
    tiny_run = shutil.copytree(finished_tiny_run, tmp_path / "run", symlinks=True)
    args = tiny_study(tmp_path)
    jobs = planned_jobs(tiny_run, *args, "noise_study")
    assert "store" not in jobs and "synthetic_world" not in jobs  # the tiny run's dw stores
    assert jobs["noise_pretrain"] == 2 and jobs["noise_transfer"] == 2
    snakemake(tiny_run, "--cores", "2", *args, "noise_study")
    table = pd.read_csv(tiny_run / "results/noise_study/noise_study.csv")
    assert sorted(zip(table["level"], table["variant"])) == [(0.1, "midF-nosel"),
                                                             (0.5, "midF-nosel")]
    numbers = table.drop(columns="variant").to_numpy(dtype=float)
    assert np.isfinite(numbers).all()
    for name in ("selection", "miou"):
        value = table["selection_precision" if name == "selection" else "miou"]
        assert (table[f"{name}_low"] <= value + 1e-9).all()
        assert (value <= table[f"{name}_high"] + 1e-9).all()
    assert (table["seeds"] == 1).all() and (table["tiles"] >= 1).all()
    # the noisier world's labels are less often right
    label = table.set_index(["variant", "level"])["label_precision"]
    assert label["midF-nosel", 0.1] > label["midF-nosel", 0.5]
    # without selection every labelled pixel is kept
    assert np.allclose(table["selection_precision"], table["label_precision"], atol=1e-3)
    assert (tiny_run / "results/figures/noise_study.png").stat().st_size > 10_000
    assert planned_jobs(tiny_run, *args, "noise_study") == {}
    snakemake(tiny_run, "--report", str(tmp_path / "report.html"), *args, "noise_study")
    page = (tmp_path / "report.html").read_text()
    assert "Label noise" in page and "noise_study.png" in page

