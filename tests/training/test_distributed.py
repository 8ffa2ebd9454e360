"""DDP: the sampler shards and resumes; `cromss pretrain run` runs unchanged under torchrun (gloo, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from cromss.constants import IGNORE_INDEX
from cromss.training import distributed, pretrain
from cromss.settings import Pretrain
from cromss.training.datasets import PretrainDataset
from helpers.settings import PRETRAIN_SETTINGS as SETTINGS
from helpers.stores import write_store
from cromss.weights import trained


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
        sampler.skip(2, 3)  # after a partial last batch (5 items in batches of 3): nothing left
        assert list(sampler) == [] and len(sampler) == 0
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
        [*torchrun, "--no-python", sys.executable, "-c", code, "pretrain", "run", "--store", str(store),
         "--settings", json.dumps(settings), "--out", str(out), "--threads", "1"],
        env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    # crops cover the whole 32x32 maps: the two processes together count every training
    # location's sampled season exactly once
    train_idx, _ = pretrain.split_indices(10, settings["val_fraction"], settings["seed"])
    dataset = PretrainDataset(store, train_idx, Pretrain.parse(settings))
    right = valid = 0
    for k in range(len(dataset)):  # the labels as the training step sees them
        item = dataset.prepare(dataset.__getitems__([k]),
                               torch.device("cpu"))
        ok = item["label"] != IGNORE_INDEX
        right += int(((item["label"] == item["truth"]) & ok).sum())
        valid += int(ok.sum())
    assert records[0]["label_precision"] == pytest.approx(right / valid)
    model, _ = trained.load_model(out / "model.pt")
    for modality in ("s1", "s2"):
        state = model.encoder(modality).state_dict()
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_torchrun_with_one_process_joins_the_process_group():
    """``torchrun --nproc_per_node 1`` (one GPU) runs the same process-group (NCCL on a GPU) and
    DDP path as several processes, not a silent single-process run."""
    code = ("import torch.distributed as dist; from cromss.training import distributed as d; "
            "ctx = d.setup(); print(ctx.distributed, dist.is_initialized(), ctx.world_size); "
            "d.teardown(ctx)")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "1", "--no-python", sys.executable, "-c", code]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(torchrun, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["True", "True", "1"]
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           timeout=120)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert plain.stdout.split() == ["False", "False", "1"]
