"""Report figures that run a model: selection masks of pretraining samples, test predictions."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from cromss import models
from cromss.cli import main
from cromss.constants import DFC_CLASSES
from cromss.report import inference
from cromss.settings import Finetune
from cromss.training import finetune
from helpers.settings import FINETUNE_SETTINGS
from helpers.stores import write_store
from cromss.weights import trained

matplotlib.use("Agg")
PRETRAIN = {"name": "midF", "fusion": "middle", "encoder": "resnet18", "s2_bands": 9,
            "decoder_channels": [16, 16, 8, 8, 8], "epochs": 3,
            "selection": {"enabled": True, "ramp_epochs": 2, "keep": 0.5}}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    model_path = trained.save_model(root / "model.pt", models.build_model(PRETRAIN), PRETRAIN)
    return model_path, write_store(root / "nol.zarr", samples=3, size=40)


def test_selection_examples_show_every_sample_with_both_masks(pretrained, tmp_path):
    model_path, store = pretrained
    figure = inference.selection_examples(model_path, store, count=2)
    images = [axis.images for axis in figure.axes if axis.images]
    assert len(images) == 2 * 6  # two samples x (S2, S1, noisy, truth, Wl S1, Wl S2)
    shown = images[0][0].get_array()
    assert shown.shape[:2] == (32, 32)  # centre crop to the encoder's stride
    masks = [np.asarray(axis[0].get_array()) for axis in images[4:6]]
    assert all(m.min() >= 0 and m.max() <= 1 for m in masks)
    out = tmp_path / "samples.png"
    assert main(["report", "figure", "samples", "--model", str(model_path), "--store", str(store),
                 "--count", "2", "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000


def test_selection_examples_need_two_modalities(pretrained, tmp_path):
    _, store = pretrained
    single = {**PRETRAIN, "fusion": "single_s2"}
    path = trained.save_model(tmp_path / "s2.pt", models.build_model(single), single)
    with pytest.raises(ValueError, match="two-modality"):
        inference.selection_examples(path, store, count=1)


def test_prediction_examples_show_each_models_prediction(tmp_path):
    kwargs = {"seasons": 1, "size": 32, "classes": 8, "noise": 0.0, "names": DFC_CLASSES}
    train = write_store(tmp_path / "train.zarr", samples=4, **kwargs)
    test = write_store(tmp_path / "test.zarr", samples=2, seed=1, **kwargs)
    paths = {}
    for setting in ("frozen", "finetuned"):
        out = tmp_path / setting
        finetune.finetune(task="dfc2020", modality="s2", encoder="random", setting=setting,
                          seed=0, train=train, settings=Finetune.parse({**FINETUNE_SETTINGS, "epochs": 1}),
                          out=out)
        paths[setting] = out / "model.pt"
    figure = inference.prediction_examples(paths, test, count=2)
    titles = [axis.get_title() for axis in figure.axes]
    assert titles[:4] == ["input", "label", "frozen", "finetuned"]
    assert sum(1 for axis in figure.axes if axis.images) == 2 * 4
    out = tmp_path / "predictions.png"
    assert main(["report", "figure", "predictions", "--model", *(f"{k}={v}" for k, v in paths.items()),
                 "--store", str(test), "--out", str(out)]) == 0
    assert out.is_file()
