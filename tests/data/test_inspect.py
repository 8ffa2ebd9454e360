"""Store summary and PNG quicklook."""

from __future__ import annotations

import matplotlib.image
import numpy as np

from cromss.cli import main
from cromss.data.inspect import class_histogram, colour_labels, summarise
from cromss.data.store import open_arrays


def test_class_histogram_hand_computed():
    labels = np.array([[0, 0, 2], [255, 1, 0]], np.uint8)
    assert class_histogram(labels, 3).tolist() == [3, 1, 1, 1]


def test_colour_labels_uses_class_colours_and_black_for_ignore():
    rgb = colour_labels(np.array([[0, 255]], np.uint8), ["#FF0000"])
    assert rgb.tolist() == [[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]


def test_summary_of_the_pretraining_store(tiny_world):
    summary = summarise(tiny_world["nol"])
    assert (summary["samples"], summary["seasons"], summary["height"]) == (6, 4, 48)
    assert len(summary["s2_bands"]) == 13 and summary["s1_bands"] == ["VV", "VH"]
    assert sum(summary["class_histogram"].values()) == 6 * 4 * 48 * 48
    group = open_arrays(tiny_world["nol"])
    wrong = (group["label"][:] != group["truth"][:]).mean()
    assert summary["label_noise_rate"] == wrong
    assert 0.15 < summary["label_noise_rate"] < 0.45  # label_noise 0.3, varied per scene


def test_downstream_summary_has_no_noise_rate(tiny_world):
    summary = summarise(tiny_world["osm_test"])
    assert "label_noise_rate" not in summary and summary["seasons"] == 1
    assert len(summary["class_histogram"]) == 13 + 1


def test_cli_prints_summary_and_writes_quicklook(tiny_world, tmp_path, capsys):
    png = tmp_path / "nol.png"
    assert main(["data", "inspect", str(tiny_world["nol"]), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "samples: 6" in out and "label_noise_rate" in out and "snow & ice" in out
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 200 and image.shape[1] > 200 and image[..., :3].std() > 0.05
    assert main(["data", "inspect", str(tmp_path / "missing.zarr")]) == 2
