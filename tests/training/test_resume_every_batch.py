"""A run stopped by SIGTERM after any batch of an epoch, the last partial one included, resumes to
the weights and log of an uninterrupted run: pretraining in one process and in two gloo processes,
fine-tuning in one process.

Each case is one chain: the run is stopped by the code's own stop-signal path (SIGTERM to itself,
polled after the step) at every (epoch, batch) in turn, rerun each time, and finally compared with
an uninterrupted run bit for bit. Epochs end on a partial batch (10 training locations in batches
of 4; two shards of 5 in batches of 3; 5 tiles in batches of 3).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from cromss.constants import DFC_CLASSES
from cromss.errors import CromssError
from cromss.settings import Finetune, Pretrain
from cromss.training import finetune, pretrain
from cromss.weights import files
from helpers.settings import FINETUNE_SETTINGS as FINETUNE
from helpers.settings import PRETRAIN_SETTINGS as PRETRAIN
from helpers.stores import write_store

# 12 locations: 2 for validation, 10 for training
PRE = Pretrain.parse({**PRETRAIN, "val_fraction": 0.17, "epochs": 2, "batch_size": 4})
PRE_DDP = dataclasses.replace(PRE, batch_size=3)
# drop_last off: the epoch ends on a partial batch of 2 (the reference would leave it out)
FT = Finetune.parse({**FINETUNE, "epochs": 2, "cosine_epochs": 2, "batch_size": 3,
                     "drop_last": False, "checkpoint_every": 1})


def stops(epochs: int, batches: int) -> list[tuple[int, int]]:
    """Every (epoch, batches done) after which a run can be stopped."""
    return [(epoch, step) for epoch in range(epochs) for step in range(1, batches + 1)]


def sigterm_at(target: tuple[int, int]):
    def on_step(epoch: int, step: int) -> None:
        if (epoch, step) == target:
            os.kill(os.getpid(), signal.SIGTERM)
    return on_step


def stop_at_every_batch(train, out: Path, targets: list[tuple[int, int]], main: bool = True
                        ) -> None:
    """``train(out, on_step)`` stopped at each target in turn, then run to its end."""
    for target in targets:
        with pytest.raises(CromssError, match="rerun the same command"):
            train(out, sigterm_at(target) if main else None)
        if main:
            state = files.load(out / "checkpoint.pt")
            assert (state["epoch"], state["step"]) == target
    train(out, None)


def read_log(out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "time_s"}
            for line in (out / "log.jsonl").read_text().splitlines()]


def assert_same_outputs(out: Path, reference: Path, weights: str) -> None:
    resumed = files.load(out / "model.pt")[weights]
    straight = files.load(reference / "model.pt")[weights]
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), key
    assert read_log(out) == read_log(reference)
    assert not (out / "checkpoint.pt").exists()


@pytest.fixture(scope="module")
def pretrain_store(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("every") / "nol.zarr", samples=12, size=32)


def test_pretraining_resumes_from_a_stop_after_every_batch(pretrain_store, tmp_path):
    def train(out: Path, on_step) -> None:
        pretrain.pretrain(pretrain_store, PRE, out, on_step=on_step)

    train(tmp_path / "straight", None)
    stop_at_every_batch(train, tmp_path / "stopped", stops(2, 3))  # 4, 4, 2
    assert_same_outputs(tmp_path / "stopped", tmp_path / "straight", "state_dict")


def test_fine_tuning_resumes_from_a_stop_after_every_batch(tmp_path):
    store = write_store(tmp_path / "train.zarr", samples=5, seasons=1, size=32, classes=8,
                        noise=0.0, names=DFC_CLASSES)

    def train(out: Path, on_step) -> None:
        finetune.finetune(task="dfc2020", modality="s1", encoder="random", setting="finetuned",
                          seed=5, train=store, settings=FT, out=out, on_step=on_step)

    train(tmp_path / "straight", None)
    stop_at_every_batch(train, tmp_path / "stopped", stops(2, 2))  # 3, 2
    assert_same_outputs(tmp_path / "stopped", tmp_path / "straight", "state_dict")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _ddp_rank(rank: int, store: Path, root: Path, ports: list[int]) -> None:
    """One of two gloo processes: an uninterrupted run, then the chain (rank 0 gets the signals;
    the stop reaches rank 1 through the loop's all-reduce). Each run joins a new process group."""
    torch.set_num_threads(1)
    os.environ.update({"WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1"})
    calls = iter(ports)

    def train(out: Path, on_step) -> None:
        os.environ["MASTER_PORT"] = str(next(calls))
        pretrain.pretrain(store, PRE_DDP, out, on_step=on_step)

    train(root / "straight", None)
    stop_at_every_batch(train, root / "stopped", stops(2, 2), main=rank == 0)  # 3, 2 per shard
    if rank == 0:
        assert_same_outputs(root / "stopped", root / "straight", "state_dict")


def test_pretraining_in_two_gloo_processes_resumes_from_a_stop_after_every_batch(
        pretrain_store, tmp_path):
    ports = _free_ports(2 + len(stops(2, 2)))
    mp.spawn(_ddp_rank, args=(pretrain_store, tmp_path, ports), nprocs=2, join=True)
