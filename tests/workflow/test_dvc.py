"""The DVC sharing story: per-stage outputs, push, clone, pull, and Snakemake plans nothing.

A toy workflow mirrors the real layout (an untracked raw input, a directory store, a model, a
table and DVC metrics and plots, in DVC stages whose commands run Snakemake for their own
targets). The project's own ``dvc.yaml`` is then checked on files written by ``cromss
metrics-summary``: ``dvc dag``, ``dvc params diff``, ``dvc metrics show`` and ``dvc plots show``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import ROOT
from helpers.tables import epoch, make_run, write_log
from helpers.workflow import run_command as run

from cromss.cli import main

PULL_SCRIPT = ROOT / "workflow" / "scripts" / "dvc_pull.sh"

SNAKEFILE = """
rule all:
    default_target: True
    input: "results/tables/t.csv", "results/metrics/transfer/dw_midF.json"

rule data:
    input: "results/data/s.zarr"

rule pretraining:
    input: "results/pretrain/m.txt"

rule raw:
    output: "results/raw/a.txt"
    shell: "echo raw > {output}"

rule store:
    input: "results/raw/a.txt"
    output: directory("results/data/s.zarr")
    shell: "mkdir -p {output} && cat {input} > {output}/x"

rule model:
    input: "results/data/s.zarr"
    output: "results/pretrain/m.txt"
    params: lr=config["lr"]
    shell: "cat {input}/x > {output} && echo {params.lr} >> {output}"

rule table:
    input: "results/pretrain/m.txt"
    output:
        "results/tables/t.csv",
        "results/metrics/transfer/dw_midF.json",
        "results/metrics/pretrain_curves.csv",
    params: seeds=config["seeds"]
    shell:
        "wc -c < {input} > {output[0]} && "
        "echo '{{\\"s2\\": {{\\"mIoU\\": 42.5}}}}' > {output[1]} && "
        "printf 'variant,epoch,val_loss\\\\nmidF,0,2.0\\\\nmidF,1,1.5\\\\n' > {output[2]}"
"""

DVC_YAML = """
stages:
  data:
    cmd: snakemake --cores 1 data
    deps: [Snakefile]
    outs:
      - results/data: {persist: true}
  pretraining:
    cmd: snakemake --cores 1 pretraining
    deps: [Snakefile, results/data]
    params: [config.yaml: [lr]]
    outs:
      - results/pretrain: {persist: true}
  report:
    cmd: snakemake --cores 1
    deps: [Snakefile, results/pretrain]
    params: [config.yaml: [seeds]]
    outs:
      - results/tables: {persist: true}
      - results/metrics/pretrain_curves.csv: {persist: true}
    metrics:
      - results/metrics/transfer: {persist: true}
plots:
  - loss:
      x: epoch
      y: {results/metrics/pretrain_curves.csv: val_loss}
"""


def planned_jobs(repo: Path, *options: str) -> str:
    """Snakemake's dry-run summary (``Nothing to be done`` when it plans nothing)."""
    result = run("snakemake", "-n", *options, cwd=repo)
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An origin repository whose workflow ran and was pushed, and its remote."""
    if not shutil.which("dvc") or not shutil.which("snakemake"):
        pytest.skip("dvc and snakemake are needed")
    base = tmp_path_factory.mktemp("dvc")
    origin, remote = base / "origin", base / "remote"
    origin.mkdir()
    (origin / "Snakefile").write_text('configfile: "config.yaml"\n' + SNAKEFILE)
    (origin / "config.yaml").write_text("lr: 0.1\nseeds: 2\n")
    (origin / "dvc.yaml").write_text(DVC_YAML)
    (origin / ".gitignore").write_text("/results/*\n/.snakemake/\n")
    scripts = origin / "workflow" / "scripts"
    scripts.mkdir(parents=True)
    shutil.copy2(PULL_SCRIPT, scripts / PULL_SCRIPT.name)
    run("git", "init", "-q", cwd=origin)
    run("dvc", "init", "-q", cwd=origin)
    run("dvc", "remote", "add", "-d", "storage", remote, cwd=origin)
    run("dvc", "repro", "-q", cwd=origin)
    run("dvc", "push", "-q", cwd=origin)
    run("git", "add", "-A", cwd=origin)
    run("git", "commit", "-qm", "results", cwd=origin)
    return origin, remote


@pytest.fixture()
def clone(shared: tuple[Path, Path], tmp_path: Path) -> Path:
    origin, _ = shared
    target = tmp_path / "clone"
    run("git", "clone", "-q", origin, target, cwd=tmp_path)
    return target


def make_stale(repo: Path) -> None:
    """The worst checkout order: the store looks newer than everything made from it."""
    future = (repo / "results" / "tables" / "t.csv").stat().st_mtime + 100
    stamp = repo / "results" / "data" / "s.zarr" / ".snakemake_timestamp"
    os.utime(stamp, (future, future))


def test_origin_records_every_output(shared: tuple[Path, Path]) -> None:
    origin, remote = shared
    lock = (origin / "dvc.lock").read_text()
    for path in ("results/data", "results/pretrain", "results/tables",
                 "results/metrics/transfer"):
        assert f"path: {path}\n" in lock
    assert set(yaml.safe_load(lock)["stages"]) == {"data", "pretraining", "report"}
    assert "results/raw" not in lock
    assert any(remote.rglob("*")), "dvc push sent nothing"


def test_pull_then_fix_plans_nothing(clone: Path) -> None:
    run("dvc", "pull", "-q", cwd=clone)
    assert (clone / "results" / "pretrain" / "m.txt").read_text() == "raw\n0.1\n"
    assert not (clone / "results" / "raw").exists()
    make_stale(clone)
    assert "Nothing to be done" not in planned_jobs(clone)

    run("bash", "workflow/scripts/dvc_pull.sh", cwd=clone)

    assert "Nothing to be done" in planned_jobs(clone)
    assert run("dvc", "status", "-q", cwd=clone, check=False).returncode == 0


def test_after_fix_a_changed_param_reruns_only_its_downstream(clone: Path) -> None:
    run("bash", "workflow/scripts/dvc_pull.sh", cwd=clone)
    plan = planned_jobs(clone, "--config", "seeds=3")
    jobs = {line.split()[0] for line in plan.splitlines()
            if line[:1].isalpha() and line.split()[-1:] == ["1"]}
    assert jobs == {"table", "all"}


def test_pull_refuses_to_trust_results_of_other_code(clone: Path) -> None:
    (clone / "config.yaml").write_text("lr: 0.2\nseeds: 2\n")
    result = run("bash", "workflow/scripts/dvc_pull.sh", cwd=clone, check=False)
    assert result.returncode == 1
    assert "differs from dvc.lock" in result.stderr
    assert (clone / "results" / "pretrain" / "m.txt").exists()


def test_metrics_and_plots_show_after_pull(clone: Path) -> None:
    run("dvc", "pull", "-q", cwd=clone)
    metrics = json.loads(run("dvc", "metrics", "show", "--json", cwd=clone).stdout)
    (workspace,) = metrics.values()  # keyed "" (the workspace) in DVC 3
    assert set(workspace["data"]) == {"results/metrics/transfer/dw_midF.json"}  # no stray file
    values = workspace["data"]["results/metrics/transfer/dw_midF.json"]["data"]
    assert values == {"s2": {"mIoU": 42.5}}
    run("dvc", "plots", "show", "-o", "plots", cwd=clone)
    assert "val_loss" in (clone / "plots" / "index.html").read_text()


def test_pull_of_one_stage_brings_only_its_outputs(clone: Path) -> None:
    run("bash", "workflow/scripts/dvc_pull.sh", "--stage", "pretraining", "pretraining",
        cwd=clone)
    assert (clone / "results" / "pretrain" / "m.txt").read_text() == "raw\n0.1\n"
    assert not (clone / "results" / "data").exists()
    assert not (clone / "results" / "tables").exists()


def test_a_changed_param_shows_against_its_stage(clone: Path) -> None:
    run("dvc", "pull", "-q", cwd=clone)
    (clone / "config.yaml").write_text("lr: 0.2\nseeds: 2\n")
    diff = run("dvc", "params", "diff", cwd=clone).stdout
    assert "lr" in diff and "0.1" in diff and "0.2" in diff and "seeds" not in diff
    status = json.loads(run("dvc", "status", "--json", cwd=clone).stdout)
    assert status == {"pretraining": [{"changed deps": {"config.yaml": {"lr": "modified"}}}]}


# -- the project's dvc.yaml ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository with the project's dvc.yaml, plot templates and config, committed, and the
    metrics and plot files `cromss report metrics-summary` writes from two variants and a few runs."""
    if not shutil.which("dvc"):
        pytest.skip("dvc is needed")
    repo = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copytree(ROOT / "config", repo / "config")
    run("git", "init", "-q", cwd=repo)
    run("dvc", "init", "-q", cwd=repo)
    shutil.copytree(ROOT / ".dvc" / "plots", repo / ".dvc" / "plots")
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-qm", "project", cwd=repo)
    metrics = [make_run(repo / f"m/{task}_{weights}_{modality}_{setting}_{seed}.json", task=task,
                        weights=weights, modality=modality, setting=setting, seed=seed,
                        miou=30.0 + seed)
               for task in ("dfc2020", "dw") for weights in ("random", "midF")
               for modality in ("s1", "s2") for setting in ("frozen", "finetuned")
               for seed in (0, 1)]
    logs = [write_log(repo / f"results/pretrain/{variant}/log.jsonl",
                      [epoch(0, 1.0, 9.0e4, 0.7), epoch(1, 0.6, 2.0, 0.8)])
            for variant in ("midF", "lateF")]
    out = repo / "results" / "metrics"
    assert main(["report", "metrics-summary", "--metrics", *map(str, metrics), "--pretrain-logs",
                 *map(str, logs), "--transfer-dir", str(out / "transfer"), "--pretrain-dir",
                 str(out / "pretrain"), "--curves", str(out / "pretrain_curves.csv")]) == 0
    return repo


def test_dag_has_one_node_per_workflow_stage(project: Path) -> None:
    dag = run("dvc", "dag", "--dot", cwd=project).stdout
    for edge in ('"data" -> "pretraining"', '"pretraining" -> "transfer"',
                 '"transfer" -> "report"', '"data" -> "transfer"'):
        assert edge in dag, dag


def test_params_diff_shows_a_changed_learning_rate(project: Path) -> None:
    config = project / "config" / "config.yaml"
    original = config.read_text()
    try:
        config.write_text(original.replace("  lr: 0.005", "  lr: 0.002"))
        diff = run("dvc", "params", "diff", cwd=project).stdout
        assert "pretrain.lr" in diff and "0.005" in diff and "0.002" in diff
        assert "finetune" not in diff
    finally:
        config.write_text(original)


def test_metrics_show_has_one_short_row_per_task_weights_and_variant(project: Path) -> None:
    table = run("dvc", "metrics", "show", cwd=project).stdout
    lines = table.splitlines()
    header = lines[0].split()
    # percent everywhere: transfer mIoU per modality and setting, the selection's shares
    assert header == ["Path", "kept_%", "label_prec_%", "s1.finetuned", "s1.frozen",
                      "s2.finetuned", "s2.frozen", "sel_prec_s1_%", "sel_prec_s2_%"], header
    assert max(map(len, lines)) <= 160, table
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert set(rows) == {"results/metrics/transfer/dfc2020_random.json",
                         "results/metrics/transfer/dfc2020_midF.json",
                         "results/metrics/transfer/dw_random.json",
                         "results/metrics/transfer/dw_midF.json",
                         "results/metrics/pretrain/midF.json", "results/metrics/pretrain/lateF.json"}
    assert rows["results/metrics/transfer/dw_midF.json"][2:6] == ["30.5"] * 4  # seeds 0, 1
    kept = rows["results/metrics/pretrain/midF.json"][0]
    assert 1 < float(kept) <= 100  # a share in percent, not 0-1


def test_plots_compare_variants_with_losses_and_shares_on_their_own_axes(project: Path) -> None:
    result = run("dvc", "plots", "show", "--json", cwd=project)
    assert "failed" not in result.stderr
    plots = json.loads(result.stdout)["data"]
    assert set(plots) == {"pretraining loss", "selection", "learning rate"}
    loss = plots["pretraining loss"][0]["content"]
    shares = plots["selection"][0]["content"]
    assert loss["encoding"]["y"]["scale"] == {"type": "log"}
    assert shares["encoding"]["y"]["scale"] == {"domain": [0, 1]}
    for content in (loss, shares):
        assert content["encoding"]["color"]["field"] == "variant"
        assert {row["variant"] for row in content["data"]["values"]} == {"midF", "lateF"}
    assert {row["field"] for row in shares["data"]["values"]} == {
        "kept_proportion", "label_precision", "selection_precision_s1", "selection_precision_s2"}


def test_plots_page_renders_offline(project: Path, tmp_path: Path) -> None:
    """`dvc plots show` fills the report stage's page (.dvc/config plots.html_template): no script
    comes from the network, and a headless browser without one draws every chart."""
    pytest.importorskip("vl_convert")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is needed")
    page = project / "results" / "metrics" / "plots_page.html"
    assert main(["report", "plots-page", "--out", str(page)]) == 0
    run("dvc", "plots", "show", "-o", str(tmp_path / "plots"), cwd=project)
    html = (tmp_path / "plots" / "index.html").read_text()
    assert re.findall(r"<script[^>]*\bsrc=", html) == []
    assert html.count("vegaEmbed(") == 3
    # no network: a proxy that does not exist, and only local files
    dom = run(chromium, "--headless", "--no-sandbox", "--disable-gpu",
              "--proxy-server=127.0.0.1:9", "--virtual-time-budget=10000", "--dump-dom",
              (tmp_path / "plots" / "index.html").as_uri(), cwd=tmp_path).stdout
    drawn = len(re.findall(r"<canvas|<svg", dom))
    assert drawn >= 3, dom[-2000:]


def test_exp_run_set_param_rewrites_one_line_of_the_config(tmp_path: Path) -> None:
    """`dvc exp run -S` writes the params file back through DVC's own YAML dump: the project's
    config is in that form, so setting one value changes one line."""
    from dvc.utils.hydra import apply_overrides

    config = tmp_path / "config.yaml"
    shutil.copy(ROOT / "config" / "config.yaml", config)
    apply_overrides(str(config), ["finetune.lr=0.001"])
    before = (ROOT / "config" / "config.yaml").read_text().splitlines()
    after = config.read_text().splitlines()
    assert len(before) == len(after)
    assert [(a, b) for a, b in zip(before, after) if a != b] == [
        ("  lr: 0.0005", "  lr: 0.001")]


def test_exp_run_dry_in_a_clean_clone_lists_every_stage(project: Path, tmp_path: Path) -> None:
    """In a fresh clone (no results), `dvc exp run --dry -f -S ...` prints the stages' commands;
    without -f, DVC 3 fails looking up its run cache for deps that do not exist yet (docs/dvc.md)."""
    clone = tmp_path / "clone"
    run("git", "clone", "-q", str(project), str(clone), cwd=tmp_path)
    result = run("dvc", "exp", "run", "--dry", "-f", "-S", "config/config.yaml:finetune.lr=0.001",
                 cwd=clone)
    commands = [line for line in result.stdout.splitlines() if line.startswith("> ")]
    assert commands == ["> snakemake --cores all data", "> snakemake --cores all pretraining",
                        "> snakemake --cores all transfer", "> snakemake --cores all"]
    assert run("git", "status", "--porcelain", cwd=clone).stdout == ""
