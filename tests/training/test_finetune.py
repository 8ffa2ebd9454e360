"""Downstream transfer: encoder sources, frozen / fine-tuned behaviour, schedule, evaluation, CLI."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from segmentation_models_pytorch.encoders import get_encoder

from cromss.cli import main
from cromss.constants import DFC_CLASSES, IGNORE_INDEX
from cromss.data.store import open_arrays
from cromss.settings import Crop, Finetune
from cromss.training import finetune
from cromss.weights import by_reference, encoders, files
from helpers.settings import FINETUNE_SETTINGS as SETTINGS
from helpers.stores import write_store



def encoder(in_channels: int, name: str = "resnet18") -> torch.nn.Module:
    return get_encoder(name, in_channels=in_channels, depth=5, weights=None)


def test_cosine_schedule_by_hand():
    assert finetune.cosine_lr(0, 5e-4, 1e-5, 4) == pytest.approx(5e-4)
    assert finetune.cosine_lr(2, 5e-4, 1e-5, 4) == pytest.approx((5e-4 + 1e-5) / 2)
    assert finetune.cosine_lr(1, 5e-4, 1e-5, 4) == pytest.approx(
        1e-5 + (5e-4 - 1e-5) * (1 + math.cos(math.pi / 4)) / 2)
    assert finetune.cosine_lr(4, 5e-4, 1e-5, 4) == finetune.cosine_lr(9, 5e-4, 1e-5, 4) == 1e-5


def test_infer_resnet_depth():
    assert encoders.infer_resnet(encoder(2).state_dict()) == "resnet18"
    assert encoders.infer_resnet(encoder(2, "resnet50").state_dict()) == "resnet50"
    with pytest.raises(ValueError, match="not a ResNet"):
        encoders.infer_resnet({"conv1.weight": torch.zeros(1)})


@pytest.mark.parametrize("prefix_s1,prefix_s2", [("net.encoder1.", "net.encoder."),
                                                 ("net.model1.encoder.", "net.model2.encoder.")])
def test_released_lightning_checkpoint_maps_each_modality(tmp_path, prefix_s1, prefix_s2):
    s1, s2 = encoder(2), encoder(9)
    state = {**{prefix_s1 + k: v for k, v in s1.state_dict().items()},
             **{prefix_s2 + k: v for k, v in s2.state_dict().items()},
             "net.decoder.blocks.0.conv1.0.weight": torch.zeros(1)}
    path = tmp_path / "cromss.ckpt"
    torch.save({"state_dict": state, "epoch": 3, "global_step": 12}, path)
    for modality, module, bands in (("s1", s1, 2), ("s2", s2, 9)):
        source = encoders.load_encoder_source(str(path), modality, Finetune.parse({}))
        assert (source.name, source.in_channels, source.weights) == ("resnet18", bands, "released")
        for key, value in module.state_dict().items():
            assert torch.equal(source.state_dict[key], value)


def test_released_checkpoint_without_the_modality_names_the_prefixes(tmp_path):
    path = tmp_path / "s1only.ckpt"
    torch.save({"state_dict": {"net.encoder." + k: v for k, v in encoder(2).state_dict().items()}},
               path)
    assert encoders.load_encoder_source(str(path), "s1", Finetune.parse({})).in_channels == 2
    with pytest.raises(ValueError, match=r"no unique s2 encoder.*net\.encoder\.': 2"):
        encoders.load_encoder_source(str(path), "s2", Finetune.parse({}))


def test_plain_state_dict_and_band_checks(tmp_path, s2_encoder_file):
    path = tmp_path / "moco_s1.pth"
    torch.save(encoder(2).state_dict(), path)
    source = encoders.load_encoder_source(str(path), "s1", Finetune.parse({}))
    assert (source.name, source.weights, source.card) == ("resnet18", "moco_s1", {})
    with pytest.raises(ValueError, match="takes 2 bands; s2 needs 9 or 13"):
        encoders.load_encoder_source(str(path), "s2", Finetune.parse({}))
    with pytest.raises(ValueError, match="s2 encoder, not s1"):
        encoders.load_encoder_source(str(s2_encoder_file), "s1", Finetune.parse({}))
    ours = encoders.load_encoder_source(str(s2_encoder_file), "s2", Finetune.parse({}))
    assert (ours.weights, ours.in_channels, ours.card["fusion"]) == ("midF", 13, "middle")
    with pytest.raises(ValueError, match="needs the encoder name"):
        encoders.load_encoder_source("random", "s1", Finetune.parse({}))


def test_unsafe_or_mismatching_files_are_refused(tmp_path, stores):
    pickled = tmp_path / "object.pt"
    torch.save({"state_dict": encoder(2).state_dict(), "extra": Path("x")}, pickled)
    with pytest.raises(ValueError, match="weights-only"):
        encoders.load_encoder_source(str(pickled), "s1", Finetune.parse(SETTINGS))
    state = encoder(2).state_dict()
    del state["layer4.1.bn2.weight"]
    state["head.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.pt"
    torch.save(state, broken)
    with pytest.raises(ValueError, match=r"missing keys: layer4\.1\.bn2\.weight.*unexpected keys: "
                                         r"head\.weight"):
        finetune.finetune(task="dfc2020", modality="s1", encoder=str(broken), setting="frozen",
                          seed=0, train=stores[0], settings=Finetune.parse(SETTINGS),
                          out=tmp_path / "out")
    assert not (tmp_path / "out" / "model.pt").exists()


def encoder_weights(model_file: Path) -> dict[str, torch.Tensor]:
    state = by_reference.full_state(model_file, files.load(model_file))
    return {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}


@pytest.mark.parametrize("setting,batchnorm", [("frozen", "update"), ("frozen", "freeze"),
                                               ("finetuned", "update")])
def test_frozen_and_finetuned_encoders(tmp_path, stores, s2_encoder_file, setting, batchnorm):
    out = tmp_path / setting
    finetune.finetune(task="dfc2020", modality="s2", encoder=str(s2_encoder_file), setting=setting,
                      seed=1, train=stores[0],
                      settings=Finetune.parse({**SETTINGS, "frozen_batchnorm": batchnorm}),
                      out=out)
    before = encoders.read_encoder(s2_encoder_file)[0]
    after = encoder_weights(out / "model.pt")
    assert torch.equal(after["conv1.weight"], before["conv1.weight"]) == (setting == "frozen")
    stats_fixed = torch.equal(after["bn1.running_mean"], before["bn1.running_mean"])
    assert stats_fixed == (batchnorm == "freeze")
    card = files.load(out / "model.pt")["card"]
    assert (card["weights"], card["arch"], card["num_classes"]) == ("midF", "PSPNet", 8)
    # a frozen run's file refers to the encoder file for the weights it did not change
    stored = files.load(out / "model.pt")["state_dict"]
    assert ("encoder.conv1.weight" in stored) == (setting == "finetuned")
    if setting == "frozen":
        assert card[by_reference.KEY]["file"] == str(s2_encoder_file)
        assert (out / "model.pt").stat().st_size < 0.1 * s2_encoder_file.stat().st_size
        assert ("encoder.bn1.running_mean" in stored) == (batchnorm == "update")
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in log] == [0.01, 1e-5]
    assert not (out / "checkpoint.pt").exists()


def test_evaluate_counts_every_labelled_test_pixel(tmp_path, stores, s2_encoder_file):
    out = tmp_path / "run"
    finetune.finetune(task="dfc2020", modality="s2", encoder=str(s2_encoder_file),
                      setting="finetuned", seed=0, train=stores[0],
                      settings=Finetune.parse(SETTINGS), out=out)
    result = finetune.evaluate(out / "model.pt", stores[1], out / "metrics.json")
    assert json.loads((out / "metrics.json").read_text()) == result
    labels = np.asarray(open_arrays(stores[1])["label"])
    assert np.sum(result["confusion_matrix"]) == int((labels != IGNORE_INDEX).sum())
    tiles = np.asarray(result["tile_confusion_matrices"])  # one per test tile, in store order
    assert tiles.shape == (labels.shape[0], 8 * 8)
    assert tiles.sum(0).reshape(8, 8).tolist() == result["confusion_matrix"]
    assert tiles.reshape(-1, 8, 8).sum((1, 2)).tolist() == [
        int((tile != IGNORE_INDEX).sum()) for tile in labels[:, 0]]
    assert (result["task"], result["weights"], result["s2_bands"], result["seed"]) == (
        "dfc2020", "midF", 13, 0)
    assert result["class_names"] == list(DFC_CLASSES)
    assert len(result["strict"]["IoU"]) == 8
    assert result["strict"]["mIoU"] <= result["reference"]["mIoU"]
    with pytest.raises(ValueError, match="9 classes, the model has 8"):
        finetune.evaluate(out / "model.pt", write_store(tmp_path / "dw.zarr", samples=1,
                                                        seasons=1, size=32), tmp_path / "m.json")


def test_cli_finetune_random_encoder_with_evaluation(tmp_path, stores, caplog):
    caplog.set_level("INFO", logger="cromss")
    out = tmp_path / "random"
    args = ["finetune", "run", "--task", "dfc2020", "--modality", "s1", "--encoder", "random",
            "--setting", "finetuned", "--seed", "2", "--train", str(stores[0]),
            "--settings", json.dumps({**SETTINGS, "epochs": 1}), "--out", str(out),
            "--test", str(stores[1])]
    assert main(args) == 0
    # a group job's log interleaves its runs: each epoch line says whose it is
    assert any(r.getMessage().startswith("dfc2020/s1/finetuned/seed2 epoch 1/1: lr ")
               for r in caplog.records)
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["weights"], metrics["modality"], metrics["s2_bands"]) == ("random", "s1", None)
    assert main(["finetune", "evaluate", "--model", str(out / "model.pt"), "--test", str(stores[1]),
                 "--out", str(tmp_path / "again.json")]) == 0
    assert json.loads((tmp_path / "again.json").read_text()) == metrics
    settings = {k: v for k, v in SETTINGS.items() if k != "encoder"}
    assert main([*args[:-4], "--settings", json.dumps(settings), "--out", str(tmp_path / "x")]) == 2


def test_a_crop_off_the_decoders_stride_is_refused_before_training(tmp_path, stores):
    # PSPNet's ResNet encoder has stride 8: 36 is no multiple, 32 is (the schema refuses 36 too;
    # the library checks the stride of whatever settings it is given)
    settings = dataclasses.replace(Finetune.parse(SETTINGS), crop=Crop(36, None, None))
    with pytest.raises(ValueError, match="crop 36 of task dfc2020 must be a multiple of 8"):
        finetune.finetune(task="dfc2020", modality="s1", encoder="random", setting="frozen",
                          seed=0, train=stores[0], settings=settings,
                          out=tmp_path / "run")
    assert not (tmp_path / "run" / "model.pt").exists()


def test_the_reference_protocol_scores_whole_test_batches_only(tmp_path, stores):
    """``finetune.test.tiles: reference`` scores the first whole batches of the test store (the
    reference's drop_last=True test loader); the metrics say which tiles; ``all`` scores every
    tile; a store smaller than one batch is refused."""
    reference = {"tiles": "reference", "batch_size": {"dfc2020": 2}}
    settings = Finetune.parse({**SETTINGS, "epochs": 1, "test": reference})
    out = tmp_path / "run"
    finetune.finetune(task="dfc2020", modality="s1", encoder="random", setting="frozen", seed=0,
                      train=stores[0], settings=settings, out=out)
    labels = np.asarray(open_arrays(stores[1])["label"])  # 3 tiles
    result = finetune.evaluate(out / "model.pt", stores[1], out / "metrics.json")  # the card's
    assert result["test_tiles"] == {"protocol": "reference", "scored": 2, "total": 3,
                                    "batch_size": 2}
    assert np.sum(result["confusion_matrix"]) == int((labels[:2] != IGNORE_INDEX).sum())
    every = finetune.evaluate(out / "model.pt", stores[1], tmp_path / "all.json",
                              scoring=Finetune.parse({}).test)
    assert every["test_tiles"] == {"protocol": "all", "scored": 3, "total": 3}
    assert np.sum(every["confusion_matrix"]) == int((labels != IGNORE_INDEX).sum())
    too_big = Finetune.parse({"test": {"tiles": "reference", "batch_size": {"dfc2020": 4}}}).test
    with pytest.raises(ValueError, match="3 test tiles, fewer than one reference batch of 4"):
        finetune.evaluate(out / "model.pt", stores[1], tmp_path / "none.json", scoring=too_big)


@pytest.mark.parametrize("drop_last,steps", [(True, 1), (False, 2)])
def test_training_drops_the_last_incomplete_batch_as_the_reference(tmp_path, stores, drop_last,
                                                                   steps):
    """5 tiles in batches of 3: the reference's loader takes one step an epoch, not two; without
    drop_last a remainder of one tile is still left out (BatchNorm needs two)."""
    train = write_store(tmp_path / "train.zarr", samples=5, seasons=1, size=32, classes=8,
                        noise=0.0, names=DFC_CLASSES)

    def steps_of(store: Path, out: str, **changes) -> list[tuple[int, int]]:
        done: list[tuple[int, int]] = []
        settings = Finetune.parse({**SETTINGS, "epochs": 1, "batch_size": 3, **changes})
        finetune.finetune(task="dfc2020", modality="s1", encoder="random", setting="frozen",
                          seed=0, train=store, settings=settings, out=tmp_path / out,
                          on_step=lambda epoch, step: done.append((epoch, step)))
        return done

    assert steps_of(train, "five", drop_last=drop_last) == [(0, s) for s in range(1, steps + 1)]
    assert steps_of(stores[0], "four", drop_last=drop_last) == [(0, 1)]  # 4 = 3 + 1
    with pytest.raises(ValueError, match="5 training tiles, fewer than one batch of 6"):
        steps_of(train, "big", batch_size=6)
