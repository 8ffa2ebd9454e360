"""Fine-tuning never loses or mixes up progress: exact resume after SIGTERM and kill -9, a
checkpoint of another run refused, non-finite weights or losses stopping with the last good
checkpoint kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cromss.errors import CromssError
from cromss.settings import Finetune
from cromss.training import checkpoint, finetune
from helpers.settings import FINETUNE_SETTINGS as SETTINGS
from cromss.weights import files

# batch 1 over 4 samples: 4 steps per epoch, so a stop can land mid-epoch
RESUME = {**SETTINGS, "epochs": 3, "cosine_epochs": 3, "batch_size": 1, "checkpoint_every": 1}


def run(out: Path, train: Path, settings: dict = RESUME, encoder: str = "random") -> None:
    finetune.finetune(task="dfc2020", modality="s1", encoder=encoder, setting="finetuned", seed=5,
                      train=train, settings=Finetune.parse(settings), out=out)


def weights(out: Path) -> dict[str, torch.Tensor]:
    return files.load(out / "model.pt")["state_dict"]


def log_without_times(out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "time_s"}
            for line in (out / "log.jsonl").read_text().splitlines()]


def assert_same_run(out: Path, reference: Path) -> None:
    resumed, straight = weights(out), weights(reference)
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), key
    assert log_without_times(out) == log_without_times(reference)
    assert sorted(p.name for p in out.iterdir()) == ["log.jsonl", "model.pt"]


@pytest.fixture(scope="module")
def uninterrupted(stores, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    run(out, stores[0])
    return out


def signal_at(monkeypatch, calls: int, signum: int = signal.SIGTERM) -> None:
    """Send ``signum`` to this process during the ``calls``-th loss evaluation."""
    real, count = finetune.segmentation_loss, [0]

    def loss(*args, **kwargs):
        count[0] += 1
        if count[0] == calls:
            os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(finetune, "segmentation_loss", loss)


@pytest.mark.parametrize("calls", [2, 7])  # epoch 0 batch 2; epoch 1 batch 3
def test_sigterm_mid_epoch_resumes_bit_for_bit(stores, uninterrupted, tmp_path, monkeypatch,
                                               calls):
    out = tmp_path / "run"
    signal_at(monkeypatch, calls)
    with pytest.raises(CromssError, match="rerun the same command"):
        run(out, stores[0])
    state = files.load(out / "checkpoint.pt")
    assert (state["epoch"], state["step"]) == divmod(calls, 4)
    monkeypatch.undo()
    run(out, stores[0])
    assert_same_run(out, uninterrupted)


def _start(out: Path, train: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "cromss", "finetune", "run", "--task", "dfc2020", "--modality", "s1",
               "--encoder", "random", "--setting", "finetuned", "--seed", "5", "--train",
               str(train), "--settings", json.dumps({**RESUME, "epochs": 8, "cosine_epochs": 3}),
               "--out", str(out), "--threads", str(torch.get_num_threads())]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_after_checkpoint(process: subprocess.Popen, ckpt: Path, newer_than: float) -> float:
    """kill -9 ``process`` as soon as a checkpoint newer than ``newer_than`` appears."""
    while not (ckpt.is_file() and ckpt.stat().st_mtime_ns > newer_than):
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(0.01)
    process.kill()
    process.wait()
    return ckpt.stat().st_mtime_ns


def test_kill_9_twice_then_resume_is_bit_for_bit(stores, tmp_path):
    reference, out = tmp_path / "reference", tmp_path / "killed"
    settings = {**RESUME, "epochs": 8, "cosine_epochs": 3}
    run(reference, stores[0], settings)
    first = _kill_after_checkpoint(_start(out, stores[0]), out / "checkpoint.pt", 0)
    epoch_first = files.load(out / "checkpoint.pt")["epoch"]
    _kill_after_checkpoint(_start(out, stores[0]), out / "checkpoint.pt", first)
    epoch_second = files.load(out / "checkpoint.pt")["epoch"]
    assert 1 <= epoch_first < epoch_second < 8  # the second process resumed, did not restart
    assert not (out / "model.pt").exists()
    run(out, stores[0], settings)
    assert_same_run(out, reference)


@pytest.mark.parametrize("change", [{"lr": 0.002}, {"seed": 6}, {"encoder": "s2"}])
def test_a_checkpoint_of_another_run_is_refused(stores, s2_encoder_file, tmp_path, monkeypatch,
                                                change):
    out = tmp_path / "run"
    signal_at(monkeypatch, 2)
    with pytest.raises(CromssError):
        finetune.finetune(task="dfc2020", modality="s2", encoder="random", setting="finetuned",
                          seed=5, train=stores[0], settings=Finetune.parse(RESUME), out=out)
    monkeypatch.undo()
    kwargs = {"task": "dfc2020", "modality": "s2", "encoder": "random", "setting": "finetuned",
              "seed": 5, "train": stores[0], "settings": Finetune.parse(RESUME),
              "out": out}
    if "lr" in change:
        kwargs["settings"] = Finetune.parse({**RESUME, **change})
    elif "seed" in change:
        kwargs["seed"] = change["seed"]
    else:
        kwargs["encoder"] = str(s2_encoder_file)
    with pytest.raises(CromssError, match=rf"different run .*{list(change)[0]}"):
        finetune.finetune(**kwargs)
    assert not (out / "model.pt").exists() and (out / "checkpoint.pt").is_file()


def test_infinite_batchnorm_statistics_stop_and_keep_the_last_good_checkpoint(
        stores, tmp_path, monkeypatch):
    real = finetune.build_downstream

    def poisoned(*args, **kwargs):
        model = real(*args, **kwargs)
        calls = [0]

        def hook(module, inputs):
            calls[0] += 1
            if calls[0] > 4:  # from the second epoch on
                module.running_var.fill_(float("inf"))

        model.encoder.bn1.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(finetune, "build_downstream", poisoned)
    out = tmp_path / "inf"
    with pytest.raises(CromssError, match=r"non-finite .*epoch 1 .*encoder\.bn1\.running_var"):
        run(out, stores[0])
    state = files.load(out / "checkpoint.pt")
    assert state["epoch"] == 1 and not files.non_finite(state["model"])
    assert not (out / "model.pt").exists() and not (out / "log.jsonl").exists()


def test_nan_never_reaches_the_log(tmp_path):
    with pytest.raises(CromssError, match=r"non-finite values in the log .*0\.val_loss"):
        checkpoint.write_log([{"epoch": 0, "val_loss": float("nan")}], tmp_path / "log.jsonl")
    assert not any(tmp_path.iterdir())


def test_one_loader_with_persistent_workers_gives_the_in_process_weights(
        stores, uninterrupted, tmp_path, monkeypatch):
    """num_workers > 0: one DataLoader for all epochs, its workers (and tile caches) kept alive;
    each epoch's crops and flips still reach them: the weights of the in-process loader."""
    made: list[bool] = []

    class Recorded(finetune.DataLoader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.persistent_workers)

    monkeypatch.setattr(finetune, "DataLoader", Recorded)
    run(tmp_path, stores[0], {**RESUME, "num_workers": 2})
    assert made == [True]
    assert_same_run(tmp_path, uninterrupted)
