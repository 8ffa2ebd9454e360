"""The Snakemake workflow: config validation, the DAG of each config, reruns after a config change,
and one end-to-end run of the whole DAG on a tiny config."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import ROOT
from helpers.workflow import (TINY, TINY_ARGS, copy_workflow, planned_jobs, run_command, snakemake,
                              with_config)


@pytest.fixture
def workflow_copy(tmp_path: Path) -> Path:
    return copy_workflow(tmp_path)


def test_lint_is_clean(workflow_copy):
    result = snakemake(workflow_copy, "--lint")
    assert "Congratulations" in result.stdout + result.stderr


def test_pretraining_jobs_are_sized_per_process_and_loader_worker(workflow_copy):
    """A core per training process (at least 2) and per DataLoader worker of each; memory per
    process and per worker; the processes' torch threads are what the workers leave."""
    def sized(config: dict) -> None:
        config.setdefault("resources", {}).update(gpus_per_training_job=2,
                                                  memory_mb_per_training_process=5000,
                                                  memory_mb_per_loader_worker=1500)
        config["pretrain"]["num_workers"] = 3

    path = with_config(workflow_copy, "sized.yaml", ROOT / "config/config.yaml", sized)
    out = snakemake(workflow_copy, "-n", "-p", "--cores", "64", "--configfile", str(path)).stdout
    job = out.split("rule pretrain:", 1)[1].split("Shell command", 1)[0]
    assert re.search(r"threads: 8\n", job) and "mem_mb=19000," in job  # 2 x (5000 + 3 x 1500)
    assert "--nproc_per_node=2" in out and " --threads 1 " in out


def test_a_wrong_key_stops_the_run_naming_the_key(workflow_copy):
    bad = with_config(workflow_copy, "bad.yaml", ROOT / "config/config.yaml",
                      lambda c: c["pretrain"].update(epochz=3))
    result = snakemake(workflow_copy, "-n", "--configfile", str(bad), check=False)
    assert result.returncode != 0
    assert "'epochz' was unexpected" in result.stdout + result.stderr


def test_a_wrong_type_stops_the_run_naming_the_key(workflow_copy):
    bad = with_config(workflow_copy, "bad.yaml", ROOT / "config/config.yaml",
                      lambda c: c["finetune"].update(lr="fast"))
    result = snakemake(workflow_copy, "-n", "--configfile", str(bad), check=False)
    assert result.returncode != 0
    assert "['finetune']['lr']" in result.stdout + result.stderr


def test_offline_default_dag(workflow_copy):
    jobs = planned_jobs(workflow_copy)
    # one job per task x modality x weights (3 x 2 x 3), each training both settings x 2 seeds and
    # evaluating them; the two ablation-only encoders on dw/s2/frozen, 2 seeds each
    assert jobs["transfer_runs"] == 3 * 2 * 3 and jobs["ablation_transfer_runs"] == 2
    assert "evaluate" not in jobs and "encoder" not in jobs  # in the jobs that train
    assert jobs["pretrain"] == 4
    assert jobs["store"] == 7 and jobs["synthetic_world"] == 1
    assert jobs["transfer_table"] == 3 and jobs["ablation_table"] == 1
    assert jobs["claims_table"] == jobs["long_table"] == jobs["calibration"] == 1
    assert jobs["synthetic_scene"] == jobs["scene_map"] == jobs["map_figure"] == 1


def test_paper_config_builds_the_full_dag(workflow_copy):
    jobs = planned_jobs(workflow_copy, "--configfile", "config/paper.yaml",
                        "--replace-workflow-config")
    # two-modality variants, and the single-modal ones with their one encoder
    assert jobs["pretrain"] + jobs["pretrain_s1"] + jobs["pretrain_s2"] == 11
    assert jobs["real_download"] == 3 and "synthetic_world" not in jobs
    # 5 weights per modality (s1-only has no S2 encoder, s2-only none for S1) x 3 tasks x 2
    assert jobs["transfer_runs"] == 3 * 2 * 5
    # ablation (dfc2020/s2/frozen): the S2-capable variants not already among the weights:
    # s2-only-13B, s2-only-9B, multimodal-nosel-13B, midF-13B-nosmooth, midF-13B-spatial,
    # midF-13B-temporal
    assert jobs["ablation_transfer_runs"] == 6


def test_a_group_job_makes_every_run_of_its_group(workflow_copy):
    out = snakemake(workflow_copy, "-n", "-p", "results/finetune/dw/s2/midF/frozen/seed1/"
                    "metrics.json").stdout
    command = next(line for line in out.splitlines() if "cromss finetune group" in line)
    assert "--setting frozen finetuned --seed 0 1" in command
    assert "results/finetune/dw/s2/midF/{setting}/seed{seed}" in command
    assert re.search(r"cromss pretrain run .*--export-encoders", out)


@pytest.mark.slow
@pytest.mark.xdist_group("tiny_run")  # one worker runs the tiny workflow once for all three
def test_whole_dag_on_a_tiny_config(tiny_run, tiny_report):
    for number in (1, 2, 3, 4):
        table = tiny_run / f"results/tables/table{number}.csv"
        assert table.is_file() and len(table.read_text().splitlines()) >= 2
    assert (tiny_run / "results/figures/samples.png").stat().st_size > 10_000
    assert (tiny_run / "results/maps/synthetic/best-dw.tif").is_file()
    assert (tiny_run / "results/maps/synthetic/best-dw.qml").is_file()  # class names for QGIS
    assert (tiny_run / "results/maps/synthetic/best-dw.png").stat().st_size > 10_000
    assert planned_jobs(tiny_run, *TINY_ARGS) == {}
    # of the runs' models only the best dw run's copy is kept (finetune.keep_models: false); the
    # predictions figures were made from them before they went
    finetune = tiny_run / "results/finetune"
    assert [p.relative_to(finetune) for p in finetune.rglob("model.pt")] == [
        Path("dw/best/model.pt")]
    assert not list(finetune.rglob(".complete"))  # nor their hard links
    choice = json.loads((finetune / "dw/best/choice.json").read_text())
    card = torch.load(finetune / "dw/best/model.pt", weights_only=True)["card"]
    assert choice["run"] == "results/finetune/dw/{modality}/{weights}/{setting}/seed{seed}".format(
        **card)
    assert choice["value"] == max(json.loads((tiny_run / m).read_text())["strict"]["mIoU"]
                                  for m in choice["chosen_from"])
    assert sorted(p.parent.name for p in finetune.glob("*/predictions.png")) == ["dfc2020", "dw",
                                                                                 "osm"]
    job_logs = list((tiny_run / "results/logs").rglob("*.log"))
    assert len(job_logs) > 40
    for job_log in job_logs:  # every job's log opens with its header
        assert "INFO cromss: version: cromss" in job_log.read_text().split("\n", 1)[0], job_log
        assert ".snakemake_timestamp" not in job_log.read_text(), job_log  # no zarr warning
    claims = pd.read_csv(tiny_run / "results/tables/claims.csv")
    # tiny: S2 frozen only, one seed, midF 13 and lateF 9 bands: CromSS-midF against random per
    # task, and the selection precision per modality
    assert set(claims["family"]) == {"pretraining beats random", "selection precision"}, claims
    assert len(claims) == 3 + 2 * 2
    assert claims[["effect", "low", "high", "verdict", "level"]].notna().all().all()
    assert set(claims["verdict"]) <= {"holds", "does not hold", "inconclusive"}
    long = pd.read_csv(tiny_run / "results/tables/results_long.csv")
    table2 = pd.read_csv(tiny_run / "results/tables/table2.csv")
    ours = table2[table2["seeds"] > 0]
    # table 2 has the transfer weights; the long table also the ablation-only lateF run
    miou = long[(long["task"] == "dw") & (long["metric"] == "mIoU")
                & long["weights"].isin(["random", "midF"])]
    assert sorted(miou["value"].round(4)) == sorted(ours["mIoU"].round(4))
    assert tiny_report.read_text().count("cromss-table") >= 5  # the claims, tables 1-4


@pytest.mark.slow
@pytest.mark.xdist_group("tiny_run")  # one worker runs the tiny workflow once for all three
def test_a_changed_value_reruns_exactly_its_downstream(tiny_run):
    lr = with_config(tiny_run, "lr.yaml", TINY, lambda c: c["finetune"].update(lr=0.001))
    jobs = planned_jobs(tiny_run, "--configfile", str(lr), "--replace-workflow-config")
    assert set(jobs) == {"transfer_runs", "ablation_transfer_runs", "transfer_table",
                         "ablation_table", "claims_table", "long_table", "transfer_figure",
                         "predictions_figure", "ablation_figure", "metrics_summary", "scene_map",
                         "map_figure", "best_model", "all"}

    world = with_config(tiny_run, "world.yaml", TINY,
                        lambda c: c["data"]["synthetic"].update(label_noise=0.2))
    jobs = planned_jobs(tiny_run, "--configfile", str(world), "--replace-workflow-config")
    assert {"synthetic_world", "store", "pretrain", "transfer_runs", "ablation_transfer_runs",
            "transfer_table", "ablation_table", "claims_table"} <= set(jobs)
    assert jobs["store"] == 7


@pytest.mark.slow
@pytest.mark.xdist_group("tiny_run")  # one worker runs the tiny workflow once for all three
def test_dvc_push_then_pull_in_a_fresh_clone_plans_nothing(tiny_run):
    run_command("dvc", "commit", "-f", cwd=tiny_run)  # every stage
    run_command("git", "add", "dvc.lock", cwd=tiny_run)
    run_command("git", "commit", "-qm", "results", cwd=tiny_run)
    run_command("dvc", "push", cwd=tiny_run)

    clone = tiny_run.parent / "clone"
    run_command("git", "clone", "-q", tiny_run, clone, cwd=tiny_run.parent)
    run_command("bash", "workflow/scripts/dvc_pull.sh", *TINY_ARGS, cwd=clone)
    assert (clone / "results/tables/table3.csv").read_text() == (
        tiny_run / "results/tables/table3.csv").read_text()
    assert planned_jobs(clone, "results/tables/table3.csv", *TINY_ARGS) == {}
    assert planned_jobs(clone, *TINY_ARGS) == {}  # the maps too: their model is versioned


def test_jobs_that_write_tables_figures_and_quicklooks_do_not_import_torch():
    # `cromss --help` and the modules behind `cromss report tables | table4 | metrics-summary |
    # figure pretrain-curves | figure class-iou`, `cromss data synth | ingest | inspect | scene |
    # fetch`, `cromss map figure` (each its own job); torch costs seconds of start-up each
    code = ("import sys, cromss.cli, cromss.report.cli, cromss.report.tables, "
            "cromss.report.figures, cromss.report.claims, cromss.report.claims_output, "
            "cromss.report.long_table, cromss.data.inspect, cromss.training.cli, "
            "cromss.data.synthetic, cromss.data.ingest, cromss.data.map_scene, "
            "cromss.sources.ssl4eo, cromss.sources.stac, cromss.predict.figure, "
            "cromss.weights.released; "
            "cromss.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'xarray', 'segmentation_models_pytorch') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"
