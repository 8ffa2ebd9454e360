"""Figures for the Snakemake report (matplotlib, Agg backend, PNG).

Every function takes plain data (log records, metrics dictionaries, numpy arrays) and returns a
``matplotlib.figure.Figure``; ``save_figure`` writes it atomically. The two figures that need model
inference (``sample_panels``, ``prediction_panels``) take arrays, so the workflow rule runs the
model and hands the results over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cromss.atomic import atomic_path
from cromss.constants import IGNORE_INDEX
from cromss.data.inspect import s1_composite, true_colour
from cromss.report.colours import class_legend, show_label

SELECTION_CMAP = "magma"


def save_figure(figure: Figure, out: str | Path, dpi: int = 110) -> Path:
    """Write ``figure`` as PNG to ``out`` (atomically) and close it."""
    out = Path(out)
    with atomic_path(out) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return out


def _series(log: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Epochs (counted from 1, as the logs print ``epoch 1/N``) and values of ``key`` over the
    records that carry it."""
    points = [(r["epoch"] + 1, r[key]) for r in log if r.get(key) is not None]
    epochs, values = zip(*points) if points else ((), ())
    return np.asarray(epochs, dtype=float), np.asarray(values, dtype=float)


def _clip_first_epoch(axis: plt.Axes, series: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
    """Scale ``axis`` to the epochs after the first where the first lies far above them (early
    BatchNorm statistics can put it decades higher), and say so at the clipped points."""
    later = np.concatenate([values[epochs > 1] for epochs, values in series] or [np.empty(0)])
    first = np.concatenate([values[epochs == 1] for epochs, values in series] or [np.empty(0)])
    later, first = later[np.isfinite(later)], first[np.isfinite(first)]
    if not later.size or not first.size or first.max() <= 3 * later.max():
        return
    low, high = later.min(), later.max()
    top = high + 0.15 * max(high - low, 0.1 * abs(high))
    axis.set_ylim(low - 0.05 * max(high - low, 0.1 * abs(high)), top)
    axis.annotate(f"epoch 1: {first.max():.3g} (off scale)", xy=(1, top), xytext=(0, -14),
                  textcoords="offset points", fontsize=8, color="0.3", ha="left", va="top",
                  arrowprops={"arrowstyle": "-|>", "color": "0.5"}, annotation_clip=False)


def pretrain_curves(logs: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """Training loss, validation loss and learning rate over epochs 1..N, one line per variant;
    a first epoch far above the rest is clipped (and labelled), a constant learning rate is
    stated instead of drawn as a flat line."""
    if not logs:
        raise ValueError("no pretraining logs given")
    panels = (("train_loss", "training loss", "loss (CE + Dice + consistency)"),
              ("val_loss", "validation loss", "loss (CE + Dice, hard labels)"))
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
    for axis, (key, title, ylabel) in zip(axes, panels):
        series = {variant: _series(log, key) for variant, log in logs.items()}
        for variant, (epochs, values) in series.items():
            axis.plot(epochs, values, marker="o", markersize=3, label=variant)
        axis.set(title=title, xlabel="epoch", ylabel=ylabel)
        _clip_first_epoch(axis, list(series.values()))
    rates = {variant: _series(log, "lr") for variant, log in logs.items()}
    values = np.concatenate([v for _, v in rates.values()] or [np.empty(0)])
    lr_axis = axes[2]
    if values.size and np.allclose(values, values[0]):
        lr_axis.text(0.5, 0.5, f"constant {values[0]:.3g}\nin every epoch of every variant\n"
                     "(the plateau scheduler never reduced it)", ha="center", va="center",
                     transform=lr_axis.transAxes, fontsize=10)
        lr_axis.set(title="learning rate", xlabel="epoch", yticks=[])
        lr_axis.set_xlim(0.5, max(e.max() for e, _ in rates.values()) + 0.5)
    else:
        for variant, (epochs, rate) in rates.items():
            lr_axis.step(epochs, rate, where="post", marker="o", markersize=3, label=variant)
        lr_axis.set(title="learning rate", xlabel="epoch", ylabel="learning rate (log)",
                    yscale="log")
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(title="variant")
    return figure


def selection_curves(logs: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """Per variant: kept proportion, label precision and both modalities' selection precision."""
    if not logs:
        raise ValueError("no pretraining logs given")
    lines = (("kept_proportion", "kept proportion", "k", "-"),
             ("label_precision", "label precision (all pixels)", "tab:gray", "--"),
             ("selection_precision_s1", "selection precision S1", "tab:blue", "-"),
             ("selection_precision_s2", "selection precision S2", "tab:orange", "-"))
    columns = min(len(logs), 2)
    rows = -(-len(logs) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 3.4 * rows + 0.5),
                                squeeze=False, sharex=True, sharey=True, layout="constrained")
    for axis in axes.flat[len(logs):]:
        axis.set_visible(False)
    for axis, (variant, log) in zip(axes.flat, logs.items()):
        for key, label, color, style in lines:
            axis.plot(*_series(log, key), color=color, linestyle=style, marker="o",
                      markersize=3, label=label)
        axis.set(title=variant, xlabel="epoch", ylim=(0, 1.02))
        axis.grid(alpha=0.3)
    for axis in axes[:, 0]:
        axis.set_ylabel("fraction of labelled pixels")
    figure.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=2)
    return figure


def _group_runs(runs: Sequence[Mapping[str, Any]], setting: str
                ) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    """Runs of ``setting`` grouped by (modality, weights), in a stable order."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for run in sorted(runs, key=lambda r: (r["modality"], r["weights"] != "random", r["weights"])):
        if run["setting"] == setting:
            groups.setdefault((run["modality"], run["weights"]), []).append(run)
    if not groups:
        raise ValueError(f"no metrics of setting {setting!r} given")
    return groups


def _class_names(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    names = {tuple(run["class_names"]) for run in runs}
    if len(names) != 1:
        raise ValueError("the metrics files disagree on the class names")
    return list(names.pop())


def class_iou_bars(runs: Sequence[Mapping[str, Any]], setting: str = "finetuned") -> Figure:
    """Per-class IoU (strict, mean and std over seeds): a panel per modality, a bar per weights."""
    groups = _group_runs(runs, setting)
    names = _class_names(runs)
    modalities = sorted({m for m, _ in groups})
    figure, axes = plt.subplots(len(modalities), 1, figsize=(max(8, 0.9 * len(names) + 3),
                                                             3.4 * len(modalities)),
                                squeeze=False, sharey=True, layout="constrained")
    for axis, modality in zip(axes[:, 0], modalities):
        members = [(w, rs) for (m, w), rs in groups.items() if m == modality]
        width = 0.8 / len(members)
        for offset, (weights, group) in enumerate(members):
            iou = np.array([run["strict"]["IoU"] for run in group], dtype=float)
            x = np.arange(len(names)) + (offset - (len(members) - 1) / 2) * width
            axis.bar(x, iou.mean(0), width, yerr=iou.std(0) if len(group) > 1 else None,
                     capsize=2, label=f"{weights} (mIoU {iou.mean():.1f})")
        axis.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
        axis.set(title=f"{modality.upper()}, {setting}", ylabel="IoU (%)", ylim=(0, 100))
        axis.grid(axis="y", alpha=0.3)
        axis.legend(fontsize="small", ncols=min(len(members), 4))
    return figure


def normalised_confusion(matrix: np.ndarray) -> np.ndarray:
    """Rows (true classes) scaled to sum to 1; empty rows stay 0."""
    matrix = np.asarray(matrix, dtype=float)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def confusion_matrices(runs: Sequence[Mapping[str, Any]], setting: str = "finetuned") -> Figure:
    """Row-normalised confusion matrices summed over seeds, one per (modality, weights)."""
    groups = _group_runs(runs, setting)
    names = _class_names(runs)
    columns = min(len(groups), 2)  # two per row: legible when the report shows it page-wide
    rows = -(-len(groups) // columns)
    size = 1.8 + 0.42 * len(names)  # room for the full class names and two-digit cells
    figure, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows),
                                squeeze=False, layout="constrained")
    image = None
    for axis, ((modality, weights), group) in zip(axes.flat, groups.items()):
        matrix = 100 * normalised_confusion(np.asarray(sum(np.asarray(r["confusion_matrix"])
                                                           for r in group)))
        image = axis.imshow(matrix, cmap="Blues", vmin=0, vmax=100)
        for (row, col), value in np.ndenumerate(matrix):
            if value >= 0.5:
                axis.text(col, row, f"{value:.0f}", ha="center", va="center", fontsize=9,
                          color="white" if value > 60 else "black")
        ticks = np.arange(len(names))
        axis.set_xticks(ticks, names, rotation=45, ha="right", fontsize=9)
        axis.set_yticks(ticks, names, fontsize=9)
        axis.set(title=f"{modality.upper()} {weights} ({setting})", xlabel="predicted",
                 ylabel="true")
    for axis in axes.flat[len(groups):]:
        axis.set_visible(False)
    assert image is not None, "no groups"
    figure.colorbar(image, ax=axes, shrink=0.6, label="share of the true class (%)")
    return figure


def ablation_bars(table: Any) -> Figure:
    """Table 4 as a figure: the transfer mIoU of each variant (mean, error bars one std over
    seeds; none with one seed) and, per variant, the precision of the pixels each modality's
    selection kept against the precision of all noisy labels."""
    rows = table[table["seeds"].fillna(0) > 0] if "seeds" in table else table
    if rows.empty:
        raise ValueError("table 4 has no variant with transfer results")
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4), layout="constrained",
                                         width_ratios=(1, 1.3))
    x = np.arange(len(rows))
    std = rows["mIoU_std"].astype(float).to_numpy()  # NaN (one seed): no error bar
    left.bar(x, rows["mIoU"].astype(float), yerr=std, capsize=4,
             color=["0.6" if w == "random" else "tab:blue" for w in rows["weights"]])
    for position, (mean, spread) in enumerate(zip(rows["mIoU"].astype(float),
                                                  np.nan_to_num(std))):
        left.annotate(f"{mean:.1f}", (position, mean + spread), xytext=(0, 3),
                      textcoords="offset points", ha="center", fontsize=9)
    transfer = ", ".join(sorted({str(t) for t in rows.get("transfer", []) if isinstance(t, str)}))
    left.set_xticks(x, rows["weights"], rotation=20, ha="right")
    left.set(title=f"transfer mIoU ({transfer})", ylabel="mIoU (%), mean ± std over seeds")
    pretrained = table[table["weights"] != "random"]
    px = np.arange(len(pretrained))
    for offset, (key, label, color) in enumerate((
            ("selection_precision_s1", "kept by S1 selection", "tab:blue"),
            ("selection_precision_s2", "kept by S2 selection", "tab:orange"))):
        right.bar(px + (offset - 0.5) * 0.38, pretrained[key].astype(float), 0.38, label=label,
                  color=color)
    right.scatter(px, pretrained["label_precision"].astype(float), marker="_", s=900,
                  color="k", zorder=3, label="all noisy labels")
    low = np.nanmin(pretrained[["label_precision", "selection_precision_s1",
                                "selection_precision_s2"]].astype(float).to_numpy())
    right.set_xticks(px, pretrained["weights"], rotation=20, ha="right")
    right.set(title="label precision at the last pretraining epoch",
              ylabel="correct noisy labels (%)", ylim=(max(0, low - 10), 100))
    right.legend(fontsize="small", loc="upper right")
    for axis in (left, right):
        axis.grid(axis="y", alpha=0.3)
    return figure


def _check_samples(name: str, arrays: Sequence[Any], count: int) -> None:
    if len(arrays) != count:
        raise ValueError(f"{name}: {len(arrays)} arrays for {count} samples")


def sample_panels(s2_rgb: Sequence[np.ndarray], s1: Sequence[np.ndarray],
                  noisy: Sequence[np.ndarray], truth: Sequence[np.ndarray],
                  mask_s1: Sequence[np.ndarray], mask_s2: Sequence[np.ndarray],
                  classes: Sequence[str], colors: Sequence[str]) -> Figure:
    """One row per sample: S2 true colour, S1, noisy label, true label, S1 and S2 selection masks.

    ``s2_rgb`` is (H, W, 3) L1C digital numbers in red, green, blue order (shown with
    :func:`cromss.data.inspect.true_colour`, as in the quicklooks), ``s1`` is
    (2, H, W), labels are class indices with 255 = ignore, masks are selection weights in [0, 1].
    """
    count = len(s2_rgb)
    if count == 0:
        raise ValueError("no samples given")
    for name, arrays in (("s1", s1), ("noisy", noisy), ("truth", truth), ("mask_s1", mask_s1),
                         ("mask_s2", mask_s2)):
        _check_samples(name, arrays, count)
    titles = ("S2 true colour", "S1 (VV, VH, VV-VH)", "noisy label (DW)", "true label",
              "selection weight S1", "selection weight S2")
    figure, axes = plt.subplots(count, 6, figsize=(15, 2.6 * count + 0.8), squeeze=False,
                                layout="constrained")
    mask_image = None
    for row in range(count):
        axes[row, 0].imshow(true_colour(s2_rgb[row]))
        axes[row, 1].imshow(s1_composite(s1[row]))
        show_label(axes[row, 2], noisy[row], colors)
        show_label(axes[row, 3], truth[row], colors)
        for col, mask in ((4, mask_s1[row]), (5, mask_s2[row])):
            mask_image = axes[row, col].imshow(mask, cmap=SELECTION_CMAP, vmin=0, vmax=1,
                                               interpolation="nearest")
    for col, title in enumerate(titles):
        axes[0, col].set_title(title, fontsize=10)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    assert mask_image is not None, "no samples"
    figure.colorbar(mask_image, ax=axes[:, 5], shrink=0.7, label="weight")
    class_legend(figure, classes, colors)
    return figure


def prediction_panels(images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                      predictions: Sequence[Mapping[str, np.ndarray]], classes: Sequence[str],
                      colors: Sequence[str]) -> Figure:
    """One row per test tile: the input, its label, then one prediction per model.

    ``images`` are (H, W, 3) in [0, 1], ready to show (``true_colour`` or ``s1_composite`` of
    :mod:`cromss.data.inspect`);
    ``predictions[i]`` maps a model name to its (H, W) class map for tile ``i``. Pixels whose
    label is ignored are greyed out in the predictions too.
    """
    count = len(images)
    if count == 0:
        raise ValueError("no tiles given")
    _check_samples("labels", labels, count)
    _check_samples("predictions", predictions, count)
    models = list(predictions[0])
    if any(list(p) != models for p in predictions):
        raise ValueError("every tile needs the same models' predictions")
    figure, axes = plt.subplots(count, 2 + len(models), figsize=(2.6 * (2 + len(models)),
                                                                 2.6 * count + 0.8),
                                squeeze=False, layout="constrained")
    for row in range(count):
        label = np.asarray(labels[row])
        axes[row, 0].imshow(np.clip(images[row], 0, 1))
        show_label(axes[row, 1], label, colors)
        for col, model in enumerate(models, start=2):
            prediction = np.where(label == IGNORE_INDEX, IGNORE_INDEX, predictions[row][model])
            show_label(axes[row, col], prediction, colors)
            correct = (prediction == label)[label != IGNORE_INDEX]
            axes[row, col].set_xlabel(f"{correct.mean() * 100:.0f}% correct" if correct.size
                                      else "no labelled pixels", fontsize=8)
    for col, title in enumerate(["input", "label", *models]):
        axes[0, col].set_title(title, fontsize=10)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    class_legend(figure, classes, colors)
    return figure
