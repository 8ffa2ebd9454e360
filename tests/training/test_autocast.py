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
from helpers.settings import FINETUNE_SETTINGS
from helpers.settings import PRETRAIN_SETTINGS as SETTINGS


def _grads_finite(module: torch.nn.Module) -> bool:
    return all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


def test_pretraining_loss_under_bf16_autocast(tmp_path):
    settings = Pretrain.parse({**SETTINGS, "fusion": "middle"})
    store = write_store(tmp_path / "nol.zarr", samples=2, size=32)
    dataset = PretrainDataset(store, range(2), settings)
    batch = dataset.prepare(dataset.__getitems__([0, 1]),
                            torch.device("cpu"))
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


def test_finetune_amp_defaults_to_float16_on_cuda_and_stays_off_on_the_cpu():
    default, off = Finetune.parse({}), Finetune.parse({"amp": False})
    bf16_cpu = Finetune.parse({"amp_dtype": "bfloat16", "amp_on_cpu": True})
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert finetune.autocast_dtype(default, cuda) == torch.float16  # the reference's 16-mixed
    assert finetune.autocast_dtype(default, cpu) is None
    assert finetune.autocast_dtype(off, cuda) is None
    assert finetune.autocast_dtype(bf16_cpu, cpu) == torch.bfloat16
    assert finetune.autocast_dtype(bf16_cpu, cuda) == torch.bfloat16


class AutocastProbe:
    """Records, at each forward pass of a module, whether CPU autocast is on and its type."""

    def __init__(self) -> None:
        self.seen: list[tuple[bool, torch.dtype]] = []

    def __call__(self, module: torch.nn.Module, inputs: tuple) -> None:
        if module.training:  # evaluation runs in float32
            self.seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_the_configured_type_reaches_autocast_and_float16_is_scaled(tmp_path, stores, monkeypatch,
                                                                   dtype):
    """A fine-tuning run on the CPU with ``amp_on_cpu``: every training forward pass runs under
    autocast in ``amp_dtype``; float16 steps go through an enabled GradScaler, bfloat16 ones not."""
    probe, scalers = AutocastProbe(), []
    build = finetune.build_downstream

    def probed(*args, **kwargs):
        model = build(*args, **kwargs)
        model.register_forward_pre_hook(probe)
        return model

    step = torch.amp.GradScaler.step

    def counted(self, *args, **kwargs):
        scalers.append((self.is_enabled(), self.get_scale() if self.is_enabled() else None))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(finetune, "build_downstream", probed)
    monkeypatch.setattr(torch.amp.GradScaler, "step", counted)
    settings = Finetune.parse({**FINETUNE_SETTINGS, "epochs": 1, "amp_dtype": dtype,
                               "amp_on_cpu": True})
    finetune.finetune(task="dfc2020", modality="s1", encoder="random", setting="finetuned",
                      seed=0, train=stores[0], settings=settings, out=tmp_path / "run")
    assert probe.seen and set(probe.seen) == {(True, getattr(torch, dtype))}
    assert scalers and all(enabled == (dtype == "float16") for enabled, _ in scalers)
    if dtype == "float16":
        assert scalers[0][1] == 2.0 ** 16  # GradScaler's initial scale multiplies the loss
    plain = tmp_path / "float32"
    probe.seen.clear()
    finetune.finetune(task="dfc2020", modality="s1", encoder="random", setting="finetuned",
                      seed=0, train=stores[0], out=plain,
                      settings=Finetune.parse({**FINETUNE_SETTINGS, "epochs": 1}))
    assert set(probe.seen) == {(False, torch.get_autocast_dtype("cpu"))}  # CPU default: off
