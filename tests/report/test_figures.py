"""Report figures: valid PNGs from logs, metrics and arrays; the helpers they rely on."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from cromss.cli import main
from cromss.constants import DW_CLASSES, DW_COLORS, IGNORE_INDEX
from cromss.data import inspect
from cromss.report import colours, figures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def log(kept_end: float) -> list[dict]:
    return [{"epoch": e, "lr": 0.005 / (1 + e), "train_loss": 3 - e * 0.1,
             "val_loss": 2.5 - e * 0.1,
             "kept_proportion": 1 - (1 - kept_end) * e / 4, "label_precision": 0.7,
             "selection_precision_s1": 0.7 + 0.05 * e, "selection_precision_s2": 0.72 + 0.05 * e}
            for e in range(5)]


def run(modality: str, weights: str, seed: int, diagonal: int) -> dict:
    matrix = [[diagonal, 2, 0], [3, diagonal, 1], [0, 0, 0]]
    return {"task": "dw", "modality": modality, "weights": weights, "setting": "finetuned",
            "seed": seed, "class_names": ["water", "trees", "snow & ice"],
            "confusion_matrix": matrix, "strict": {"IoU": [50.0 + seed, 60.0, 0.0]}}


def pixels(figure: plt.Figure) -> np.ndarray:
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3]


def has_colour(image: np.ndarray, hex_colour: str) -> bool:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return bool((np.abs(image.astype(int) - rgb).sum(-1) <= 3).any())


def test_save_figure_writes_a_png_atomically(tmp_path: Path) -> None:
    out = figures.save_figure(figures.pretrain_curves({"midF": log(0.5), "lateF": log(0.6)}),
                              tmp_path / "curves.png")
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_selection_curves_one_panel_per_variant() -> None:
    figure = figures.selection_curves({"a": log(0.5), "b": log(0.5), "c": log(0.5)})
    visible = [axis for axis in figure.axes if axis.get_visible()]
    assert [axis.get_title() for axis in visible] == ["a", "b", "c"]
    assert len(visible[0].lines) == 4
    plt.close(figure)


def test_empty_logs_are_refused() -> None:
    with pytest.raises(ValueError, match="no pretraining logs"):
        figures.pretrain_curves({})


def test_normalised_confusion_rows_sum_to_one_and_empty_rows_stay_zero() -> None:
    matrix = figures.normalised_confusion(np.array([[3, 1], [0, 0]]))
    np.testing.assert_allclose(matrix, [[0.75, 0.25], [0.0, 0.0]])


def test_class_iou_and_confusion_panels() -> None:
    runs = [run("s1", "random", 0, 8), run("s1", "midF", 0, 9), run("s2", "midF", 0, 9),
            run("s2", "midF", 1, 7)]
    bars = figures.class_iou_bars(runs, "finetuned")
    assert [axis.get_title() for axis in bars.axes] == ["S1, finetuned", "S2, finetuned"]
    heights = [patch.get_height() for patch in bars.axes[1].patches]
    assert heights == pytest.approx([50.5, 60.0, 0.0])  # mean over the two seeds
    plt.close(bars)
    matrices = figures.confusion_matrices(runs, "finetuned")
    titles = [axis.get_title() for axis in matrices.axes if axis.get_visible() and axis.images]
    assert titles == ["S1 random (finetuned)", "S1 midF (finetuned)", "S2 midF (finetuned)"]
    plt.close(matrices)
    with pytest.raises(ValueError, match="frozen"):
        figures.class_iou_bars(runs, "frozen")


def test_stretch_maps_percentiles_to_unit_range() -> None:
    image = np.arange(101, dtype=float).reshape(101, 1) * np.array([1.0, 10.0, 0.0])
    image = image.reshape(101, 1, 3)
    stretched = inspect.stretch(image)
    assert stretched.min() == 0.0 and stretched.max() == 1.0
    np.testing.assert_allclose(stretched[50, 0, :2], [0.5, 0.5])
    assert (stretched[..., 2] == 0).all()  # a constant channel does not divide by zero


def test_labels_use_class_colours_and_black_for_ignore() -> None:
    figure, axis = plt.subplots()
    colours.show_label(axis, np.array([[0, IGNORE_INDEX], [6, 6]]), DW_COLORS)
    image = pixels(figure)
    plt.close(figure)
    assert has_colour(image, DW_COLORS[0]) and has_colour(image, DW_COLORS[6])
    assert has_colour(image, "#000000")
    assert not has_colour(image, DW_COLORS[1])
    with pytest.raises(ValueError, match="beyond the 9 colours"):
        colours.show_label(plt.gca(), np.array([[9]]), DW_COLORS)
    plt.close("all")


def test_sample_and_prediction_panels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = [rng.integers(0, 9, (16, 16)).astype(np.uint8) for _ in range(2)]
    s2 = [rng.random((16, 16, 3)) * 3000 for _ in range(2)]
    s1 = [rng.normal(-15, 3, (2, 16, 16)) for _ in range(2)]
    masks = [rng.random((16, 16)) for _ in range(2)]
    figure = figures.sample_panels(s2, s1, labels, labels, masks, masks, DW_CLASSES, DW_COLORS)
    assert len([axis for axis in figure.axes if axis.images]) == 12
    figures.save_figure(figure, tmp_path / "samples.png")
    with pytest.raises(ValueError, match="mask_s2: 1 arrays for 2 samples"):
        figures.sample_panels(s2, s1, labels, labels, masks, masks[:1], DW_CLASSES, DW_COLORS)
    with pytest.raises(ValueError, match=r"\(2, H, W\)"):
        inspect.s1_composite(np.zeros((3, 4, 4)))

    label = labels[0].copy()
    label[:8] = IGNORE_INDEX
    predictions = [{"random": labels[0], "midF": labels[0]},
                   {"random": labels[1], "midF": labels[0]}]
    shown_s2 = [inspect.true_colour(x) for x in s2]
    figure = figures.prediction_panels(shown_s2, [label, labels[1]], predictions, DW_CLASSES,
                                       DW_COLORS)
    assert [axis.get_title() for axis in figure.axes[:4]] == ["input", "label", "random", "midF"]
    assert figure.axes[2].get_xlabel() == "100% correct"
    shown = figure.axes[2].images[0].get_array()
    assert shown.mask[:8].all() and not shown.mask[8:].any()  # ignored pixels not drawn
    plt.close(figure)
    with pytest.raises(ValueError, match="same models"):
        figures.prediction_panels(s2, labels, [{"a": labels[0]}, {"b": labels[1]}], DW_CLASSES,
                                  DW_COLORS)


def test_true_colour_is_one_fixed_scale_for_every_tile() -> None:
    dark = np.full((4, 4, 3), 250.0)
    bright = np.full((4, 4, 3), 5000.0)
    assert np.allclose(inspect.true_colour(dark), 0.1 ** inspect.TRUE_COLOUR_GAMMA)
    assert (inspect.true_colour(bright) == 1).all()  # no per-tile stretch: dark stays dark
    stack = np.zeros((13, 2, 2))
    stack[3], stack[2], stack[1] = 1, 2, 3  # B4, B3, B2
    assert inspect.rgb_bands(stack)[0, 0].tolist() == [1, 2, 3]


def test_figures_show_class_names_in_full() -> None:
    runs = [run("s2", "random", 0, 9), run("s2", "midF", 0, 8)]
    for draw in (figures.class_iou_bars, figures.confusion_matrices):
        figure = draw(runs, "finetuned")
        labels = {tick.get_text() for axis in figure.axes for tick in axis.get_xticklabels()}
        assert {"water", "trees", "snow & ice"} <= labels
        plt.close(figure)


def test_cli_figure(tmp_path: Path) -> None:
    metrics = []
    for index, weights in enumerate(("random", "midF")):
        path = tmp_path / f"m{index}.json"
        headline = {"OA": 80.0, "AA": 70.0, "mIoU": 50.0, "mF1": 60.0}
        record = run("s2", weights, 0, 9)
        record["strict"] |= headline
        path.write_text(json.dumps({**record, "reference": headline}))
        metrics.append(str(path))
    out = tmp_path / "confusion.png"
    assert main(["report", "figure", "confusion", "--metrics", *metrics, "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    missing = tmp_path / "curves.png"
    assert main(["report", "figure", "pretrain-curves", "--out", str(missing)]) == 2
    assert not missing.exists()


def test_pretrain_curves_count_epochs_from_one_and_clip_a_far_first_epoch() -> None:
    logs = {"midF": log(0.5), "lateF": log(0.6)}
    logs["midF"][0]["val_loss"] = 3e4  # early BatchNorm statistics
    figure = figures.pretrain_curves(logs)
    train, val, rate = figure.axes
    assert list(train.lines[0].get_xdata()) == [1, 2, 3, 4, 5]  # the logs' "epoch 1/5".."5/5"
    assert train.get_ylabel() and val.get_ylabel()
    assert val.get_ylim()[1] < 10  # the later epochs fill the axis
    assert any("epoch 1: 3e+04" in text.get_text() for text in val.texts)
    assert rate.get_yscale() == "log" and len(rate.lines) == 2  # the rate changes: drawn
    plt.close(figure)


def test_a_constant_learning_rate_is_stated_not_drawn() -> None:
    constant = [{**record, "lr": 0.005} for record in log(0.5)]
    figure = figures.pretrain_curves({"midF": constant})
    rate = figure.axes[2]
    assert not rate.lines and any("constant 0.005" in t.get_text() for t in rate.texts)
    plt.close(figure)


def test_confusion_colour_bar_is_in_percent_like_its_cells() -> None:
    figure = figures.confusion_matrices([run("s2", "midF", 0, 9)], "finetuned")
    matrix_axis = next(axis for axis in figure.axes if axis.images and axis.texts)
    assert matrix_axis.images[0].get_clim() == (0, 100)
    assert {t.get_text() for t in matrix_axis.texts} >= {"82", "18"}  # 9 of 11, 2 of 11
    colour_bar = next(axis for axis in figure.axes if "(%)" in axis.get_ylabel())
    assert colour_bar.get_ylim() == (0, 100)
    plt.close(figure)


def test_ablation_figure_has_error_bars_where_there_are_seeds(tmp_path: Path) -> None:
    import pandas as pd

    table = pd.DataFrame({
        "weights": ["random", "midF", "midF-nosmooth"], "mIoU": [5.0, 10.95, 12.46],
        "mIoU_std": [float("nan"), 1.07, 2.76], "seeds": [1, 2, 2],
        "transfer": ["dw/s2/frozen"] * 3, "label_precision": [float("nan"), 70.0, 70.0],
        "selection_precision_s1": [float("nan"), 80.0, 75.0],
        "selection_precision_s2": [float("nan"), 82.0, 76.0]})
    table.to_csv(tmp_path / "table4.csv", index=False)
    assert main(["report", "figure", "ablation", "--table", str(tmp_path / "table4.csv"), "--out",
                 str(tmp_path / "ablation.png")]) == 0
    assert (tmp_path / "ablation.png").read_bytes()[:8] == PNG_SIGNATURE
    figure = figures.ablation_bars(table)
    bars = figure.axes[0]
    assert [p.get_height() for p in bars.patches] == pytest.approx([5.0, 10.95, 12.46])
    spans = [float(np.ptp(np.asarray(segment)[:, 1])) for collection in bars.collections
             for segment in collection.get_segments() if len(segment)]
    spans = [span for span in spans if not np.isnan(span)]
    assert spans == pytest.approx([2 * 1.07, 2 * 2.76])  # none for the single seed
    plt.close(figure)
