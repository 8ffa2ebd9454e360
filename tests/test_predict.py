"""Tiled map inference: blending, equality with whole-image prediction, edges, nodata, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from torch import nn

from cromss.cli import main
from cromss.constants import DW_CLASSES, DW_COLORS, S2_BANDS, input_normalisation
from cromss.data.synthetic import write_tif
from cromss.predict.mapping import predict_map
from cromss.predict.predictor import Predictor
from cromss.predict.tiling import Tiling, axis_profile, tile_starts

CLASSES = 4
UTM = from_origin(600_000.0, 5_300_000.0, 10.0, 10.0)


def conv_predictor(seed: int = 0) -> Predictor:
    """A small fully convolutional S2 model (receptive field 5 px, within the zero-weight margin
    of the blending) so that tiles and the whole image must agree exactly."""
    torch.manual_seed(seed)
    module = nn.Sequential(nn.Conv2d(13, 8, 3, padding=1), nn.ReLU(),
                           nn.Conv2d(8, CLASSES, 3, padding=1)).eval()
    return Predictor(module, "finetuned", ("s2",), {"s2": input_normalisation("s2", 13)},
                     list(DW_CLASSES[:CLASSES]), list(DW_COLORS[:CLASSES]), "conv")


def s2_scene(path: Path, height: int, width: int, seed: int = 0, crs: int = 32633,
             transform=UTM) -> np.ndarray:
    """A smooth random 13-band L1C scene in one GeoTIFF (band descriptions B1..B12)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(300, 4000, (13, height // 8 + 2, width // 8 + 2))
    data = np.kron(base, np.ones((8, 8)))[:, :height, :width]
    data = (data + rng.integers(0, 200, data.shape)).astype(np.uint16)
    write_tif(path, data, crs, transform)
    with rasterio.open(path, "r+") as dst:
        for index, band in enumerate(S2_BANDS, start=1):
            dst.set_band_description(index, band)
    return data


def test_tiles_reach_every_edge():
    assert tile_starts(100, 64, 16) == [0, 36]
    assert tile_starts(64, 64, 16) == [0]
    assert tile_starts(40, 64, 16) == [0]
    starts = tile_starts(1000, 256, 64)
    assert starts[0] == 0 and starts[-1] + 256 == 1000
    assert all(b - a <= 192 for a, b in zip(starts, starts[1:]))


def test_blending_weights_are_a_partition_of_unity_and_cover_the_scene():
    tiling = Tiling(500, 333, tile=128, overlap=32)
    total = np.zeros((500, 333))
    for top in tiling.rows:
        for left in tiling.cols:
            total[top:top + 128, left:left + 128] += tiling.weights(top, left)
    assert total.min() > 0  # every pixel is covered by a tile with weight
    regular = total[: tiling.rows[-1] + 8, : tiling.cols[-1] + 8]  # before the moved last tiles
    np.testing.assert_allclose(regular, 1.0, atol=1e-6)  # seams blend to exactly 1
    profile = axis_profile(128, 32, False, False)
    assert profile[:8].max() == 0 and profile[-8:].max() == 0 and profile[32:96].min() == 1
    assert np.all(np.diff(profile[:32]) >= 0)  # a smooth rise, no step
    assert axis_profile(128, 32, True, True).min() == 1  # the scene border is not faded


def _whole_image(predictor: Predictor, data: np.ndarray) -> np.ndarray:
    prepared = predictor.prepare("s2", data.astype(np.float32))
    return predictor([{"s2": prepared}])[0]


def test_tiled_equals_whole_image_prediction(tmp_path):
    data = s2_scene(tmp_path / "scene.tif", 200, 170)
    predictor = conv_predictor()
    predict_map(predictor, [tmp_path / "scene.tif"], tmp_path / "map.tif",
                probabilities=tmp_path / "probs.zarr", tile=64, overlap=32, batch_size=3)
    import zarr

    tiled = zarr.open_array(str(tmp_path / "probs.zarr"), mode="r")[:]
    whole = _whole_image(predictor, data)
    inner = (slice(None), slice(8, -8), slice(8, -8))  # away from the scene's padded border
    np.testing.assert_allclose(tiled[inner], whole[inner], atol=1e-5)
    with rasterio.open(tmp_path / "map.tif") as src:
        np.testing.assert_array_equal(src.read(1)[8:-8, 8:-8], whole.argmax(0)[8:-8, 8:-8])
    with rasterio.open(tmp_path / "map_confidence.tif") as src:
        np.testing.assert_allclose(src.read(1)[8:-8, 8:-8], whole.max(0)[8:-8, 8:-8], atol=1e-5)


def test_map_keeps_the_input_grid_and_is_a_cloud_optimized_geotiff(tmp_path):
    transform = from_origin(350_010.0, 4_999_990.0, 10.0, 10.0)
    s2_scene(tmp_path / "scene.tif", 700, 650, crs=32618, transform=transform)
    summary = predict_map(conv_predictor(), [tmp_path / "scene.tif"], tmp_path / "map.tif",
                          tile=128, overlap=32)
    assert summary["width"] == 650 and summary["height"] == 700
    with rasterio.open(tmp_path / "scene.tif") as scene, rasterio.open(tmp_path / "map.tif") as out:
        assert out.crs == scene.crs and out.transform == scene.transform
        assert out.shape == scene.shape and out.dtypes == ("uint8",) and out.nodata == 255
        assert out.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert out.overviews(1)  # overviews for viewers
        assert out.colormap(1)[0][:3] == (0x41, 0x9B, 0xDF)  # water's DW colour
        assert json.loads(out.tags()["classes"]) == list(DW_CLASSES[:CLASSES])
    with rasterio.open(tmp_path / "map_confidence.tif") as conf:
        assert conf.transform == transform and conf.count == 1 and conf.dtypes == ("float32",)


def test_scene_not_a_multiple_of_the_tile_is_covered_to_its_edges(tmp_path):
    s2_scene(tmp_path / "scene.tif", 157, 97)  # 97 px: narrower than one 128 px tile
    predict_map(conv_predictor(), [tmp_path / "scene.tif"], tmp_path / "map.tif", tile=128,
                overlap=32)
    with rasterio.open(tmp_path / "map.tif") as out, \
            rasterio.open(tmp_path / "map_confidence.tif") as conf:
        labels, confidence = out.read(1), conf.read(1)
    assert labels.shape == (157, 97)
    assert (labels < CLASSES).all()
    assert np.isfinite(confidence).all() and (confidence >= 1 / CLASSES - 1e-6).all()


def test_nodata_stays_nodata(tmp_path):
    data = s2_scene(tmp_path / "scene.tif", 180, 150)
    data[:, 40:90, 30:70] = 0  # L1C NO_DATA
    data[3, 150:, :] = 0  # one band missing is no data too
    write_tif(tmp_path / "holes.tif", data, 32633, UTM)
    predict_map(conv_predictor(), [tmp_path / "holes.tif"], tmp_path / "map.tif",
                probabilities=tmp_path / "p.zarr", tile=64, overlap=16)
    with rasterio.open(tmp_path / "map.tif") as out, \
            rasterio.open(tmp_path / "map_confidence.tif") as conf:
        labels, confidence = out.read(1), conf.read(1)
    hole = np.zeros(labels.shape, bool)
    hole[40:90, 30:70] = True
    hole[150:] = True
    assert (labels[hole] == 255).all() and np.isnan(confidence[hole]).all()
    assert (labels[~hole] < CLASSES).all() and np.isfinite(confidence[~hole]).all()
    import zarr

    probs = zarr.open_array(str(tmp_path / "p.zarr"), mode="r")[:]
    assert np.isnan(probs[:, hole]).all()
    np.testing.assert_allclose(probs[:, ~hole].sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs[:, ~hole].argmax(0), labels[~hole])


class FailingPredictor(Predictor):
    """Fails on its second batch, after the first strip's tiles were blended."""

    calls = 0

    def __call__(self, inputs):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("device lost")
        return super().__call__(inputs)


def test_a_failing_run_leaves_no_output(tmp_path):
    s2_scene(tmp_path / "scene.tif", 150, 150)
    good = conv_predictor()
    broken = FailingPredictor(good.module, "finetuned", ("s2",), good.normalisation,
                              good.classes, good.colors, "broken")
    with pytest.raises(RuntimeError, match="device lost"):
        predict_map(broken, [tmp_path / "scene.tif"], tmp_path / "out" / "map.tif", tile=64,
                    overlap=16, batch_size=1)
    assert list((tmp_path / "out").iterdir()) == []


def test_cli_predict_with_a_fine_tuned_model(tmp_path, capsys):
    from cromss.training import checkpoint
    from cromss.training.finetune import build_downstream

    s2_scene(tmp_path / "scene.tif", 100, 90)
    model = build_downstream("dw", "resnet18", 13)
    card = {"task": "dw", "encoder": "resnet18", "modality": "s2", "in_channels": 13,
            "s2_bands": 13, "normalisation": input_normalisation("s2", 13),
            "classes": list(DW_CLASSES), "num_classes": 9}
    run = tmp_path / "finetune" / "seed0"
    checkpoint.save({"state_dict": model.state_dict(), "card": card}, run / "model.pt")
    (run / "metrics.json").write_text(json.dumps({"strict": {"mIoU": 50.0}}))
    worse = tmp_path / "finetune" / "seed1"
    worse.mkdir()
    (worse / "metrics.json").write_text(json.dumps({"strict": {"mIoU": 10.0}}))
    assert main(["predict", "--best-of", str(worse / "metrics.json"), str(run / "metrics.json"),
                 "--scene", str(tmp_path / "scene.tif"), "--out", str(tmp_path / "map.tif"),
                 "--tile", "64", "--overlap", "16", "--threads", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == str(run / "model.pt") and summary["kind"] == "finetuned"
    with rasterio.open(tmp_path / "map.tif") as out:
        assert out.shape == (100, 90) and (out.read(1) < 9).all()
