"""Mixed precision: the pretraining and fine-tuning steps run under bf16 autocast (as on a GPU,
here on the CPU) with float32 losses and finite gradients, close to their float32 values."""

from __future__ import annotations

import pytest
import torch

from cromss import models
from cromss.constants import IGNORE_INDEX
from cromss.settings import Finetune, Pretrain
from cromss.training import finetune, pretrain
from cromss.training.datasets import PretrainDataset
from helpers.stores import write_store
from helpers.settings import PRETRAIN_SETTINGS as SETTINGS


def _grads_finite(module: torch.nn.Module) -> bool:
    return all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


def test_pretraining_loss_under_bf16_autocast(tmp_path):
    settings = Pretrain.parse({**SETTINGS, "fusion": "middle"})
    store = write_store(tmp_path / "nol.zarr", samples=2, size=32)
    dataset = PretrainDataset(store, range(2), settings)
    batch = torch.utils.data.default_collate(dataset.__getitems__([0, 1]))
    torch.manual_seed(0)
    net = models.build_model({**SETTINGS, "fusion": "middle"})
    losses = {}
    for dtype in (None, torch.bfloat16):
        net.zero_grad()
        torch.manual_seed(1)
        total, parts, weights = pretrain.forward_loss(net, batch, 3, settings, dtype)
        assert total.dtype == torch.float32 and torch.isfinite(total)
        assert all(torch.isfinite(v).all() for v in parts.values())
        total.backward()
        assert _grads_finite(net)
        losses[dtype] = float(total.detach())
    assert losses[torch.bfloat16] == pytest.approx(losses[None], rel=0.05)


def test_finetuning_loss_under_bf16_autocast():
    """PSPNet here; benchmarks/bench_gpu.py --tiny (tests/test_bench_gpu.py) runs all three."""
    torch.manual_seed(0)
    model = finetune.build_downstream("dfc2020", "resnet18", 13).train()
    image = torch.rand(2, 13, 32, 32)
    labels = torch.randint(0, 8, (2, 32, 32))
    labels[:, :4] = IGNORE_INDEX
    dice = finetune.dice_loss()
    losses = {}
    for dtype in (None, torch.bfloat16):
        model.zero_grad()
        torch.manual_seed(1)  # the same dropout masks (FPN)
        loss = finetune.training_loss(model, image, labels, dice, dtype)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        loss.backward()
        assert _grads_finite(model)
        losses[dtype] = float(loss)
    assert losses[torch.bfloat16] == pytest.approx(losses[None], rel=0.05)


def test_finetune_amp_is_float16_on_cuda_only():
    amp, default = Finetune.parse({"amp": True}), Finetune.parse({})
    assert finetune.autocast_dtype(amp, torch.device("cuda", 0)) == torch.float16
    assert finetune.autocast_dtype(amp, torch.device("cpu")) is None
    assert finetune.autocast_dtype(default, torch.device("cuda", 0)) is None
