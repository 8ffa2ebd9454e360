"""Figures that need a model run: selection masks of pretraining samples, test-tile predictions."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from cromss.constants import DW_CLASSES, DW_COLORS, TASKS
from cromss.settings import Selection, build
from cromss.data.inspect import rgb_bands, s1_composite, true_colour
from cromss.data.store import open_arrays
from cromss.errors import CromssError
from cromss.losses import selection_weights
from cromss.report import figures
from cromss.training.datasets import SIZE_MULTIPLE, SegmentationDataset, model_input
from cromss.training.finetune import predict
from cromss.weights.trained import load_downstream, load_model


def _centre(array: np.ndarray) -> np.ndarray:
    """The centre crop of the last two axes at the largest multiple of the encoder's stride."""
    height, width = array.shape[-2:]
    size = min(height, width) // SIZE_MULTIPLE * SIZE_MULTIPLE
    top, left = (height - size) // 2, (width - size) // 2
    return array[..., top:top + size, left:left + size]


@torch.no_grad()
def selection_examples(model_path: str | Path, store: str | Path, count: int) -> Figure:
    """S2, S1, noisy and true labels and both modalities' label-selection weights (Wl) of the
    first ``count`` pretraining samples (season i % 4), as the model selects at its last epoch."""
    model, settings = load_model(model_path)
    if model.modalities != ("s1", "s2"):
        raise CromssError(f"{model_path}: selection needs a two-modality model")
    group = open_arrays(store)
    if "truth" not in group:
        raise CromssError(f"{store}: no true labels to compare the selection with")
    count = min(count, group["label"].shape[0])
    seasons = [i % group["label"].shape[1] for i in range(count)]
    s1 = np.stack([_centre(np.asarray(group["s1"][i, t])) for i, t in enumerate(seasons)])
    s2 = np.stack([_centre(np.asarray(group["s2"][i, t])) for i, t in enumerate(seasons)])
    noisy = np.stack([_centre(np.asarray(group["label"][i, t])) for i, t in enumerate(seasons)])
    truth = np.stack([_centre(np.asarray(group["truth"][i, t])) for i, t in enumerate(seasons)])
    s2_bands = int(settings["s2_bands"])
    inputs_s1 = torch.from_numpy(np.stack([model_input(x, "s1", 2) for x in s1]))
    inputs_s2 = torch.from_numpy(np.stack([model_input(x, "s2", s2_bands) for x in s2]))
    model.eval()
    logits_s1, logits_s2 = model(inputs_s1, inputs_s2)
    weights = selection_weights(torch.softmax(logits_s1, 1), torch.softmax(logits_s2, 1),
                                torch.from_numpy(noisy).long(),
                                settings["epochs"] - 1, build(Selection, settings["selection"]))
    return figures.sample_panels(
        [rgb_bands(x) for x in s2], list(s1), list(noisy),
        list(truth), list(weights.label_1.numpy()), list(weights.label_2.numpy()),
        DW_CLASSES, DW_COLORS)


@torch.no_grad()
def prediction_examples(model_paths: Mapping[str, str | Path], test: str | Path,
                        count: int) -> Figure:
    """The first ``count`` test tiles with each named fine-tuned model's prediction."""
    loaded = {name: load_downstream(Path(path)) for name, path in model_paths.items()}
    cards = [card for _, card in loaded.values()]
    if len({(c["task"], c["modality"]) for c in cards}) != 1:
        raise CromssError("prediction figure: all models must share one task and modality")
    task, modality = cards[0]["task"], cards[0]["modality"]
    group = open_arrays(test)
    raw = group[modality]
    count = min(count, raw.shape[0])
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    predictions: list[dict[str, np.ndarray]] = [{} for _ in range(count)]
    for name, (model, card) in loaded.items():
        dataset = SegmentationDataset(test, modality=modality, s2_bands=card["s2_bands"] or 13)
        for i in range(count):
            item = dataset[i]
            predictions[i][name] = predict(model, item["image"][None])[0].numpy()
    for i in range(count):
        labels.append(np.asarray(group["label"][i, 0]))
        tile = np.asarray(raw[i, 0])
        images.append(true_colour(rgb_bands(tile)) if modality == "s2" else s1_composite(tile))
    _, classes, colors, _ = TASKS[task]
    return figures.prediction_panels(images, labels, predictions, classes, colors)
