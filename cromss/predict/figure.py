"""The report figure of a map: the scene's true colour, the map, its confidence and, where a true
map exists (the synthetic scene), the true map and the error against it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from rasterio.enums import Resampling

from cromss.constants import IGNORE_INDEX
from cromss.data import inspect
from cromss.predict.scene import find_bands
from cromss.report import figures
from cromss.training import metrics

SHOWN_PX = 1024
"""Longest side drawn; larger rasters are read decimated (the COG's overviews)."""
ERROR_COLORS = ("#1a9850", "#d73027", "#bdbdbd")  # correct, wrong, no true class


def _read(path: str | Path, band: int = 1, nearest: bool = True) -> np.ndarray:
    with rasterio.open(path) as src:
        scale = max(1.0, max(src.width, src.height) / SHOWN_PX)
        shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        return src.read(band, out_shape=shape, resampling=Resampling.nearest if nearest
                        else Resampling.average)


def true_colour(scene: Sequence[str | Path]) -> np.ndarray:
    """(H, W, 3) B4, B3, B2 of a scene, decimated for display."""
    bands = find_bands(scene)
    missing = [b for b in ("B4", "B3", "B2") if b not in bands]
    if missing:
        raise ValueError(f"scene {', '.join(map(str, scene))}: no {', '.join(missing)} for the "
                         f"true colour")
    return np.dstack([_read(bands[b].path, bands[b].index, nearest=False) for b in
                      ("B4", "B3", "B2")]).astype(np.float32)


def map_scores(map_path: str | Path, truth: str | Path, num_classes: int) -> dict:
    """Scores of the full-resolution map against the true map (pixels with a class in both)."""
    with rasterio.open(map_path) as pred_src, rasterio.open(truth) as true_src:
        if (pred_src.crs, pred_src.transform, pred_src.shape) != (
                true_src.crs, true_src.transform, true_src.shape):
            raise ValueError(f"{truth}: not on the grid of the map {map_path}")
        pred, true = pred_src.read(1), true_src.read(1)
    keep = pred != IGNORE_INDEX
    cm = metrics.confusion_matrix(pred[keep], true[keep], num_classes)
    return metrics.scores(cm)


def map_figure(map_path: str | Path, scene: Sequence[str | Path],
               truth: str | Path | None = None) -> Figure:
    """True colour | map | confidence [| true map | error] in one row, with the class legend."""
    import matplotlib.pyplot as plt

    with rasterio.open(map_path) as src:
        classes = json.loads(src.tags().get("classes", "[]"))
        colormap = src.colormap(1)
    colors = ["#%02x%02x%02x" % colormap[i][:3] for i in range(len(classes))]
    prediction = _read(map_path)
    confidence_path = Path(map_path).with_name(f"{Path(map_path).stem}_confidence.tif")
    panels = 3 + (2 if truth else 0)
    figure, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 4.4), layout="constrained")
    axes[0].imshow(inspect.true_colour(true_colour(scene)))
    axes[0].set_title("S2 true colour (B4 B3 B2)", fontsize=10)
    figures._show_label(axes[1], prediction, colors)
    axes[1].set_title(f"map: {Path(map_path).stem}", fontsize=10)
    if confidence_path.is_file():
        image = axes[2].imshow(_read(confidence_path, nearest=False), cmap="viridis", vmin=0,
                               vmax=1, interpolation="nearest")
        figure.colorbar(image, ax=axes[2], shrink=0.7, label="max class probability")
    axes[2].set_title("confidence", fontsize=10)
    if truth:
        true = _read(truth)
        figures._show_label(axes[3], true, colors)
        axes[3].set_title("true map", fontsize=10)
        error = np.where(true == IGNORE_INDEX, 2, (prediction != true).astype(int))
        error = np.where(prediction == IGNORE_INDEX, 2, error)
        axes[4].imshow(error, cmap=ListedColormap(ERROR_COLORS), vmin=-0.5, vmax=2.5,
                       interpolation="nearest")
        scores = map_scores(map_path, truth, len(classes))
        axes[4].set_title(f"error: OA {scores['OA']:.1f}%, mIoU {scores['mIoU']:.1f}%",
                          fontsize=10)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    figures._legend(figure, classes, colors)
    return figure
