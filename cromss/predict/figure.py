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
from cromss.errors import CromssError
from cromss.predict.scene import find_bands
from cromss.report.colours import class_legend, show_label
from cromss.training import metrics

SHOWN_PX = 1024
"""Longest side drawn; larger rasters are read decimated (the COG's overviews)."""
ERROR_COLORS = ("#d9d9d9", "#ff00ff", "#ffffff")  # correct, wrong, no true class
"""Colours no class uses (Dynamic World's built is red, trees green, bare grey-brown)."""
ERROR_LABELS = ("correct", "wrong", "no true class")
TITLE_SIZE = 12


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
        raise CromssError(f"scene {', '.join(map(str, scene))}: no {', '.join(missing)} for the "
                          f"true colour")
    return np.dstack([_read(bands[b].path, bands[b].index, nearest=False) for b in
                      ("B4", "B3", "B2")]).astype(np.float32)


def map_scores(map_path: str | Path, truth: str | Path, num_classes: int) -> dict:
    """Scores of the full-resolution map against the true map (pixels with a class in both)."""
    with rasterio.open(map_path) as pred_src, rasterio.open(truth) as true_src:
        if (pred_src.crs, pred_src.transform, pred_src.shape) != (
                true_src.crs, true_src.transform, true_src.shape):
            raise CromssError(f"{truth}: not on the grid of the map {map_path}")
        pred, true = pred_src.read(1), true_src.read(1)
    keep = pred != IGNORE_INDEX
    cm = metrics.confusion_matrix(pred[keep], true[keep], num_classes)
    return metrics.scores(cm)


def map_figure(map_path: str | Path, scene: Sequence[str | Path],
               truth: str | Path | None = None) -> Figure:
    """True colour | map | confidence [/ true map | error] in one or two rows of three, with the
    class legend: large panels and text, legible at the report's width (about 1000 px)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    with rasterio.open(map_path) as src:
        classes = json.loads(src.tags().get("classes", "[]"))
        colormap = src.colormap(1)
    colors = ["#{:02x}{:02x}{:02x}".format(*colormap[i][:3]) for i in range(len(classes))]
    prediction = _read(map_path)
    confidence_path = Path(map_path).with_name(f"{Path(map_path).stem}_confidence.tif")
    rows = 2 if truth else 1
    figure, grid = plt.subplots(rows, 3, figsize=(11, 4.3 * rows + 0.9), squeeze=False,
                                layout="constrained")
    axes = grid.flatten()
    axes[0].imshow(inspect.true_colour(true_colour(scene)))
    axes[0].set_title("S2 true colour (B4 B3 B2)", fontsize=TITLE_SIZE)
    show_label(axes[1], prediction, colors)
    axes[1].set_title(f"map: {Path(map_path).stem}", fontsize=TITLE_SIZE)
    if confidence_path.is_file():
        image = axes[2].imshow(_read(confidence_path, nearest=False), cmap="viridis", vmin=0,
                               vmax=1, interpolation="nearest")
        figure.colorbar(image, ax=axes[2], shrink=0.8, label="max class probability")
    axes[2].set_title("confidence", fontsize=TITLE_SIZE)
    if truth:
        true = _read(truth)
        show_label(axes[3], true, colors)
        axes[3].set_title("true map", fontsize=TITLE_SIZE)
        error = np.where(true == IGNORE_INDEX, 2, (prediction != true).astype(int))
        error = np.where(prediction == IGNORE_INDEX, 2, error)
        axes[4].imshow(error, cmap=ListedColormap(ERROR_COLORS), vmin=-0.5, vmax=2.5,
                       interpolation="nearest")
        scores = map_scores(map_path, truth, len(classes))
        axes[4].set_title(f"error: OA {scores['OA']:.1f}%, mIoU {scores['mIoU']:.1f}%",
                          fontsize=TITLE_SIZE)
        axes[5].axis("off")
        axes[5].legend(handles=[Patch(facecolor=c, edgecolor="0.4", label=label)
                                for c, label in zip(ERROR_COLORS, ERROR_LABELS)],
                       title="error panel", loc="center", fontsize=11, title_fontsize=11)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    class_legend(figure, classes, colors, fontsize=11)
    return figure
