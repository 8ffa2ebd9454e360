"""A fine-tuning group in one process: every run trained and evaluated, written as it completes,
a failed run not losing the others, and a rerun restoring completed runs instead of retraining."""

from __future__ import annotations

import json

import pytest

from cromss.cli import main
from cromss.training import finetune, runs
from helpers.settings import FINETUNE_SETTINGS as SETTINGS

PATTERN = "{root}/{{setting}}/seed{{seed}}"


def group_args(root, stores, seeds=("0", "1")):
    return ["finetune", "group", "--task", "dfc2020", "--modality", "s1", "--encoder", "random",
            "--setting", "frozen", "--seed", *seeds, "--train", str(stores[0]),
            "--test", str(stores[1]), "--settings", json.dumps({**SETTINGS, "epochs": 1}),
            "--out", PATTERN.format(root=root)]


def test_a_group_trains_and_evaluates_each_run_like_the_single_commands(tmp_path, stores):
    assert main(group_args(tmp_path / "group", stores)) == 0
    single = tmp_path / "single"
    assert main(["finetune", "run", "--task", "dfc2020", "--modality", "s1", "--encoder", "random",
                 "--setting", "frozen", "--seed", "1", "--train", str(stores[0]),
                 "--settings", json.dumps({**SETTINGS, "epochs": 1}), "--out", str(single),
                 "--test", str(stores[1])]) == 0
    for seed in (0, 1):
        run = tmp_path / "group" / "frozen" / f"seed{seed}"
        assert {p.name for p in run.iterdir()} == set(runs.OUTPUTS)  # no links left
    grouped = json.loads((tmp_path / "group/frozen/seed1/metrics.json").read_text())
    assert grouped == json.loads((single / "metrics.json").read_text())


def fail_once(monkeypatch, seed: int) -> list[int]:
    """Make ``seed``'s first training fail; returns the seeds trained, in order."""
    trained: list[int] = []
    real = finetune.finetune

    def flaky(**kwargs):
        trained.append(kwargs["seed"])
        if kwargs["seed"] == seed and trained.count(seed) == 1:
            raise ValueError("injected failure")
        return real(**kwargs)

    monkeypatch.setattr(finetune, "finetune", flaky)
    return trained


def test_a_failed_run_keeps_the_others_and_a_rerun_trains_only_it(tmp_path, stores, monkeypatch):
    trained = fail_once(monkeypatch, seed=0)
    root = tmp_path / "group"
    assert main(group_args(root, stores)) == 2  # the error names the failed run
    assert trained == [0, 1]
    assert not (root / "frozen/seed0/model.pt").exists()
    assert (root / "frozen/seed1/metrics.json").is_file()
    metrics = (root / "frozen/seed1/metrics.json").read_text()
    for name in runs.OUTPUTS:  # Snakemake removes every output of a failed job
        (root / "frozen/seed1" / name).unlink()
    assert main(group_args(root, stores)) == 0
    assert trained == [0, 1, 0]  # seed 1 restored, not retrained
    assert (root / "frozen/seed1/metrics.json").read_text() == metrics
    assert (root / "frozen/seed0/metrics.json").is_file()
    assert not list(root.rglob(runs.COMPLETE))  # the group succeeded: its links are gone


def test_a_changed_input_retrains_a_completed_run(tmp_path, stores, monkeypatch):
    trained = fail_once(monkeypatch, seed=1)
    root = tmp_path / "group"
    assert main(group_args(root, stores)) == 2
    assert (root / "frozen/seed0" / runs.COMPLETE).is_dir()  # kept: the group failed
    args = group_args(root, stores)
    args[args.index("--settings") + 1] = json.dumps({**SETTINGS, "epochs": 1, "lr": 0.02})
    assert main(args) == 0
    assert trained == [0, 1, 0, 1]  # seed 0's links have another key: trained again


def test_the_output_pattern_must_name_setting_and_seed():
    with pytest.raises(ValueError, match="must contain"):
        runs.group_runs(["frozen"], [0], "out/seed{seed}")
