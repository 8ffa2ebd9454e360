"""DDP: the sampler shards and resumes; `cromss pretrain` runs unchanged under torchrun (gloo, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from cromss import models
from cromss.constants import IGNORE_INDEX
from cromss.training import distributed, pretrain
from cromss.training.datasets import PretrainDataset
from test_datasets import write_store
from test_pretrain import SETTINGS


def test_sampler_shards_are_disjoint_and_resume_mid_epoch():
    data = list(range(10))
    shards = []
    for rank in (0, 1):
        sampler = distributed.ResumableSampler(data, distributed.Context(rank, 2, torch.device("cpu")),
                                               seed=7)
        sampler.set_epoch(3)
        shards.append(list(sampler))
        sampler.start = 2
        assert list(sampler) == shards[-1][2:] and len(sampler) == 3
    assert sorted(shards[0] + shards[1]) == data
    single = distributed.ResumableSampler(data, distributed.Context(0, 1, torch.device("cpu")), 7)
    single.set_epoch(3)
    order = list(single)
    single.set_epoch(4)
    assert sorted(order) == data and list(single) != order


def test_pretrain_under_torchrun_with_two_cpu_processes(tmp_path):
    store = write_store(tmp_path / "nol.zarr", samples=10, size=32)
    settings = {**SETTINGS, "epochs": 2, "val_fraction": 0.2}
    out = tmp_path / "midF"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2"]
    code = "import sys; from cromss.cli import main; sys.exit(main())"
    result = subprocess.run(
        [*torchrun, "--no-python", sys.executable, "-c", code, "pretrain", "--store", str(store),
         "--settings", json.dumps(settings), "--out", str(out), "--threads", "1"],
        env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    # crops cover the whole 32x32 maps: the two processes together count every training
    # location's sampled season exactly once
    train_idx, _ = pretrain.split_indices(10, settings["val_fraction"], settings["seed"])
    dataset = PretrainDataset(store, train_idx, settings)
    right = valid = 0
    for item in dataset:
        ok = item["label"] != IGNORE_INDEX
        right += int(((item["label"] == item["truth"]) & ok).sum())
        valid += int(ok.sum())
    assert records[0]["label_precision"] == pytest.approx(right / valid)
    model, _ = models.load_model(out / "model.pt")
    for modality in ("s1", "s2"):
        state = model.encoder(modality).state_dict()
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
