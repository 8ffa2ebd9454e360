"""Pretraining loop: outputs, log, exact resume after a signal, NaN stop, settings checks."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from cromss import selection
from cromss.errors import CromssError
from cromss.data.store import open_arrays
from cromss.settings import Pretrain
from cromss.training import pretrain
from cromss.weights import encoders, files, trained
from helpers.settings import PRETRAIN_SETTINGS as SETTINGS
from helpers.stores import write_store



@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("pre") / "nol.zarr", samples=8, size=48)


@pytest.fixture(scope="module")
def uninterrupted(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "midF"
    pretrain.pretrain(store, Pretrain.parse(SETTINGS), out)
    return out


def encoder_state(out: Path, modality: str) -> dict[str, torch.Tensor]:
    return trained.load_model(out / "model.pt")[0].encoder(modality).state_dict()


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_split_is_seeded_disjoint_and_complete():
    train, val = pretrain.split_indices(20, 0.1, seed=1)
    assert len(val) == 2 and sorted(train + val) == list(range(20))
    assert pretrain.split_indices(20, 0.1, seed=1) == (train, val)
    assert pretrain.split_indices(20, 0.1, seed=2) != (train, val)
    assert len(pretrain.split_indices(20, 0.0, seed=1)[1]) == 1
    with pytest.raises(ValueError, match="at least 2"):
        pretrain.split_indices(1, 0.1, seed=1)


def test_outputs_cards_and_log(uninterrupted, store, tmp_path):
    assert sorted(p.name for p in uninterrupted.iterdir()) == [
        "log.jsonl", "model.pt"]  # checkpoint removed at the end
    trained.export_encoder(uninterrupted / "model.pt", "s2", tmp_path / "encoder_s2.pt")
    state, card = encoders.read_encoder(tmp_path / "encoder_s2.pt")
    assert card["variant"] == "midF" and card["modality"] == "s2" and card["in_channels"] == 9
    assert state["conv1.weight"].shape[1] == 9
    records = read_log(uninterrupted / "log.jsonl")
    assert [r["epoch"] for r in records] == [0, 1]
    for r in records:
        assert r["kept_proportion"] == pytest.approx(selection.kept_proportion(r["epoch"], 5, 0.5))
        assert 0 <= r["selection_precision_s1"] <= 1 and 0 <= r["selection_precision_s2"] <= 1
        assert np.isfinite([r["train_loss"], r["val_loss"], r["ce_1"], r["consistency_2"]]).all()
        assert r["lr"] == 0.005 and r["time_s"] > 0
    # the share of right noisy labels is close to the store's overall share (about 0.8)
    group = open_arrays(store)
    label, truth = np.asarray(group["label"]), np.asarray(group["truth"])
    valid = label != 255
    overall = (label == truth)[valid].mean()
    assert abs(records[0]["label_precision"] - overall) < 0.05


def test_interrupted_run_resumes_to_the_same_weights(uninterrupted, store, tmp_path):
    out = tmp_path / "midF"

    def interrupt(epoch: int, step: int) -> None:
        if (epoch, step) == (0, 2):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(CromssError, match="rerun the same command"):
        pretrain.pretrain(store, Pretrain.parse(SETTINGS), out, on_step=interrupt)
    state = files.load(out / "checkpoint.pt")
    assert (state["epoch"], state["step"]) == (0, 2)
    assert not (out / "model.pt").exists()
    pretrain.pretrain(store, Pretrain.parse(SETTINGS), out)
    for modality in ("s1", "s2"):
        resumed = encoder_state(out, modality)
        straight = encoder_state(uninterrupted, modality)
        assert resumed.keys() == straight.keys()
        for key in resumed:
            assert torch.equal(resumed[key], straight[key]), key
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in read_log(out / "log.jsonl")]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"}
                     for r in read_log(uninterrupted / "log.jsonl")]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(store, tmp_path, monkeypatch):
    real_loss = pretrain.losses.cromss_loss

    def nan_in_second_epoch(*args, **kwargs):
        total, parts = real_loss(*args, **kwargs)
        return (total * float("nan") if args[4] == 1 else total), parts

    monkeypatch.setattr(pretrain.losses, "cromss_loss", nan_in_second_epoch)
    out = tmp_path / "nan"
    with pytest.raises(CromssError, match="loss is nan at epoch 1"):
        pretrain.pretrain(store, Pretrain.parse(SETTINGS), out)
    state = files.load(out / "checkpoint.pt")
    assert (state["epoch"], state["step"]) == (1, 0)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (out / "model.pt").exists()
    assert len(read_log(out / "log.jsonl")) == 1


def test_resume_refuses_a_checkpoint_of_other_settings(store, tmp_path):
    out = tmp_path / "other"
    with pytest.raises(CromssError):
        pretrain.pretrain(store, Pretrain.parse({**SETTINGS, "epochs": 1, "checkpoint_every": 1}), out,
                          on_step=lambda e, s: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(CromssError, match="different run.*lr"):
        pretrain.pretrain(store, Pretrain.parse({**SETTINGS, "lr": 0.001}), out)


def test_single_modal_variant_writes_only_its_encoder(store, tmp_path):
    settings = {**SETTINGS, "name": "s1-only", "fusion": "single_s1", "epochs": 1}
    pretrain.pretrain(store, Pretrain.parse(settings), tmp_path / "s1")
    assert sorted(p.name for p in (tmp_path / "s1").iterdir()) == ["log.jsonl", "model.pt"]
    trained.export_encoder(tmp_path / "s1" / "model.pt", "s1", tmp_path / "encoder_s1.pt")
    with pytest.raises(ValueError, match="no s2 encoder"):
        trained.export_encoder(tmp_path / "s1" / "model.pt", "s2", tmp_path / "encoder_s2.pt")
    assert not (tmp_path / "encoder_s2.pt").exists()
    record = read_log(tmp_path / "s1" / "log.jsonl")[0]
    assert record["kept_proportion"] == 1.0
    assert record["selection_precision_s1"] == pytest.approx(record["label_precision"])


def test_validation_loss_is_the_reference_hard_label_loss():
    """Reference ``_calculate_loss(train=False)``: per branch CE + Dice on the hard labels (torch's
    cross entropy and smp's multiclass Dice), plus the consistency CE over all pixels."""
    import segmentation_models_pytorch as smp
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    logits_1, logits_2 = (torch.randn(2, 9, 8, 8, generator=gen) for _ in range(2))
    labels = torch.randint(0, 9, (2, 8, 8), generator=gen)
    dice = smp.losses.DiceLoss("multiclass", from_logits=True)
    expected = sum(F.cross_entropy(lg, labels) + dice(lg, labels) for lg in (logits_1, logits_2))
    expected += F.cross_entropy(logits_1, logits_2.softmax(1)) + F.cross_entropy(
        logits_2, logits_1.softmax(1))
    got = pretrain.validation_loss(logits_1, logits_2, labels, SETTINGS["consistency_weight"])
    assert float(got) == pytest.approx(float(expected), rel=1e-5)


def test_identical_predictions_give_the_same_validation_loss_at_every_epoch(store, tmp_path):
    """The ramp of the selection does not move the monitored loss (the plateau scheduler's input)."""
    settings = Pretrain.parse({**SETTINGS, "val_augment": False})  # the same items every epoch
    trainer = pretrain.Trainer(store, settings, tmp_path, pretrain.distributed.setup())
    values = []
    for epoch in (0, 2, 4, 40):
        trainer.epoch = epoch
        values.append(trainer.validate())
    assert values == pytest.approx([values[0]] * 4, rel=1e-6)
    # the training loss of the same predictions does fall over the ramp (selection weights)
    batch = trainer._to_device(next(iter(trainer._loader(trainer.val_set, trainer.val_sampler))),
                               trainer.val_set)
    trainer.net.eval()
    with torch.no_grad():
        train_losses = [float(trainer.loss(batch, e)[0]) for e in (0, 4)]
    assert train_losses[1] < train_losses[0]


def test_validation_batches_drop_the_remainder_and_augmented_items_are_drawn_per_epoch(
        store, tmp_path, monkeypatch):
    """The reference's validation: batches of ``val_batch_size`` without the remainder, items
    cropped, flipped and rotated with a random season. Seeded by (seed, epoch, location): the
    same loss for the same epoch, in a new trainer too, another one at another epoch; with
    ``val_augment`` off the same items (and loss) every epoch."""
    sizes: list[int] = []
    loss = pretrain.validation_loss

    def recorded(logits_1, logits_2, labels, weight):
        sizes.append(len(labels))
        return loss(logits_1, logits_2, labels, weight)

    monkeypatch.setattr(pretrain, "validation_loss", recorded)
    ctx = pretrain.distributed.setup()

    def losses(**changes) -> list[float]:
        # 4 of the 8 locations validate; the model is seeded, so every trainer starts the same
        settings = Pretrain.parse({**SETTINGS, "val_fraction": 0.5, "val_batch_size": 3,
                                   **changes})
        trainer = pretrain.Trainer(store, settings, tmp_path, ctx)
        values = []
        for epoch in (0, 0, 1):
            trainer.epoch = epoch
            values.append(trainer.validate())
        return values

    augmented = losses()
    assert sizes == [3, 3, 3]  # 4 items: one batch of 3, the remainder left out
    assert augmented[0] == augmented[1] and augmented[2] != augmented[0]
    assert losses() == augmented
    fixed = losses(val_augment=False)
    assert fixed[0] == fixed[1] == fixed[2] and fixed[0] != augmented[0]
    sizes.clear()
    losses(val_drop_last=False)
    assert sizes == [3, 1] * 3
    with pytest.raises(CromssError, match="4 validation locations .* fewer than val_batch_size 5"):
        losses(val_batch_size=5)
