"""config/release.yaml: tables 1-3 from the released weights, without pretraining. Its DAG, and a
run of the same DAG on tiny data with the four released checkpoints served by a loopback Hugging
Face server (full Lightning files, written the way the reference writes them)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml

from cromss.weights.released import RELEASES
from helpers import ROOT
from helpers.loopback import LoopbackServer
from helpers.workflow import TINY, copy_workflow, planned_jobs, snakemake, with_config

RELEASE_ARGS = ("--configfile", "config/release.yaml", "--replace-workflow-config")


def test_release_config_builds_tables_1_to_3_without_pretraining(tmp_path):
    workdir = copy_workflow(tmp_path)
    jobs = planned_jobs(workdir, *RELEASE_ARGS)
    assert jobs["release_encoders"] == 4
    assert not {"pretrain", "encoder", "ablation_table", "pretrain_figure",
                "samples_figure", "metrics_summary"} & set(jobs)
    # one job per task x modality x (random + 4 releases), each training and evaluating its
    # 2 settings x 3 seeds
    assert jobs["transfer_runs"] == 3 * 2 * 5 and "evaluate" not in jobs
    assert jobs["transfer_table"] == 3
    assert jobs["real_download"] == 2  # NoLDO-S12 and DFC2020; no SSL4EO-S12 images
    assert jobs["store"] == 6  # the downstream stores only, not the noisy-label one
    config = yaml.safe_load((ROOT / "config/release.yaml").read_text())
    assert config["pretrain"]["encoder"] == "resnet50" and config["finetune"]["epochs"] == 50


def test_the_published_folder_of_each_encoder_is_a_rule_product(tmp_path):
    workdir = copy_workflow(tmp_path)
    for target in ("results/pretrain/release-9B-lateF/encoder_s1/item.json",
                   "results/pretrain/release-13B-midF/encoder_s2/model.safetensors"):
        assert planned_jobs(workdir, *RELEASE_ARGS, target) == {"release_encoders": 1}
    for name in ("model.safetensors", "README.md", "item.json"):
        jobs = planned_jobs(workdir, f"results/pretrain/midF/encoder_s1/{name}")
        assert jobs["pretrain"] == 1 and "release_encoders" not in jobs


def test_an_unknown_weights_name_stops_the_run_naming_it(tmp_path):
    workdir = copy_workflow(tmp_path)
    bad = with_config(workdir, "bad.yaml", ROOT / "config/release.yaml",
                      lambda c: c["finetune"].update(weights=["random", "release-13B-midf"]))
    result = snakemake(workdir, "-n", "--configfile", str(bad), "--replace-workflow-config",
                       check=False)
    assert result.returncode != 0
    assert "release-13B-midf is neither 'random'" in result.stdout + result.stderr


@pytest.mark.xdist_group("release_checkpoints")  # one worker writes the checkpoints
@pytest.mark.slow
def test_the_four_releases_fine_tune_through_the_workflow(tmp_path, release_checkpoints):
    (tmp_path / "run").mkdir()
    workdir = copy_workflow(tmp_path / "run")
    path, _ = next(iter(release_checkpoints.values()))
    with LoopbackServer(path.parents[5]) as server:
        def change(config):
            config["pretrain"]["variants"] = {}
            config["data"]["real"] = {"huggingface_url": server.url,
                                      "retry": {"attempts": 2, "backoff_s": 0.01}}
            # S2: the 9B encoders must get their 9 bands (S1 exports: tests/test_release.py)
            config["finetune"].update(tasks=["dfc2020"], modalities=["s2"],
                                      weights=list(RELEASES), seeds=[0])
        tiny = with_config(workdir, "tiny_release.yaml", TINY, change)
        args = ("--configfile", str(tiny), "--replace-workflow-config")
        snakemake(workdir, "--cores", "2", *args, "results/tables/table1.csv")
        assert planned_jobs(workdir, *args, "results/tables/table1.csv") == {}
    assert {r[1].rsplit("/", 1)[1] for r in server.requests} == {
        p.name for p, _ in release_checkpoints.values()}
    table = pd.read_csv(workdir / "results/tables/table1.csv", dtype={"s2_bands": str})
    released = table[table["seeds"].notna()]
    assert set(released["pretraining"]) == {"released"} and len(table) == 40
    assert sorted(released["label"]) == sorted(
        f"CromSS-{f} {b}B" for f in ("midF", "lateF") for b in (13, 9))
    assert released["paper_mIoU"].notna().all() and released["mIoU"].notna().all()
    for name in RELEASES:
        card = torch.load(workdir / f"results/pretrain/{name}/encoder_s2.pt",
                          weights_only=True)["card"]
        assert card["in_channels"] == int(name.split("-")[1][:-1])
        assert card["source"]["file"].startswith("weights-cromss-")
    metrics = workdir / "results/finetune/dfc2020/s2/release-9B-midF/frozen/seed0/metrics.json"
    assert '"s2_bands": 9' in metrics.read_text()
