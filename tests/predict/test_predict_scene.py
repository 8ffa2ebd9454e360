"""Scenes for `cromss map predict`: band files at native resolutions, every model kind, bad scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from cromss import models
from cromss.cli import main
from cromss.data.map_scene import write_scene
from cromss.data.synthetic import write_tif
from cromss.predict.mapping import predict_map
from cromss.predict.predictor import load_predictor
from cromss.predict.scene import SceneReader, find_bands
from cromss.settings import Scene
from cromss.weights import trained

SETTINGS = {"fusion": "middle", "encoder": "resnet18", "s2_bands": 13,
            "decoder_channels": [32, 16, 16, 8, 8]}


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A 96 px synthetic scene: 13 L1C band files at 10/20/60 m, S1 VV/VH, true maps."""
    return write_scene(tmp_path_factory.mktemp("scene") / "scene",
                       Scene.parse({"size": 96, "seed": 3}))


@pytest.fixture(scope="module")
def fusion_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    return trained.save_model(path, models.build_model(SETTINGS), SETTINGS)


def test_band_files_at_native_resolution_are_read_on_the_10m_grid(scene):
    bands = find_bands([scene])
    assert sorted(bands) == sorted(["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9",
                                    "B10", "B11", "B12", "VV", "VH"])
    with rasterio.open(bands["B1"].path) as src:
        assert src.res == (60.0, 60.0)
    reader = SceneReader([scene], {"s2": ["B2", "B5", "B1"], "s1": ["VV", "VH"]})
    with rasterio.open(bands["B2"].path) as ref:
        assert (reader.crs, reader.transform, reader.width) == (ref.crs, ref.transform, 96)
        b2 = ref.read(1)
    with reader:
        raw, valid = reader.read(rasterio.windows.Window(10, 20, 40, 30))
    assert raw["s2"].shape == (3, 30, 40) and raw["s1"].shape == (2, 30, 40)
    np.testing.assert_array_equal(raw["s2"][0], b2[20:50, 10:50])
    with rasterio.open(bands["B1"].path) as coarse:  # 60 m resampled, close to its block value
        b1 = coarse.read(1).astype(float)
    assert abs(raw["s2"][2].mean() - b1[3:8, 1:9].mean()) < 0.1 * b1.mean()
    assert valid.shape == (30, 40)


def test_fusion_model_maps_with_cross_modal_agreement(scene, fusion_model, tmp_path):
    summary = predict_map(fusion_model, [scene], tmp_path / "map.tif", tile=64, overlap=16)
    assert summary["kind"] == "pretrained" and summary["modalities"] == ["s1", "s2"]
    with rasterio.open(tmp_path / "map_confidence.tif") as conf:
        assert conf.count == 2 and "agreement" in conf.descriptions[1]
        confidence, agreement = conf.read(1), conf.read(2)
    with rasterio.open(tmp_path / "map.tif") as out:
        valid = out.read(1) != 255
    assert valid.any()
    assert (agreement[valid] >= 0).all() and (agreement[valid] <= 1 + 1e-5).all()
    assert (confidence[valid] >= 1 / 9 - 1e-6).all()


def test_released_lightning_checkpoint_maps_like_the_same_weights(scene, fusion_model, tmp_path):
    model, _ = trained.load_model(fusion_model)
    renames = {"encoder_s1.": "net.encoder1.", "encoder_s2.": "net.encoder.",
               "decoder.": "net.decoder.", "segmentation_head.": "net.segmentation_head."}
    state = {next(new + k[len(old):] for old, new in renames.items() if k.startswith(old)): v
             for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 199}, tmp_path / "released.ckpt")
    predictor = load_predictor(tmp_path / "released.ckpt", "cpu")
    assert predictor.kind == "released" and predictor.modalities == ("s1", "s2")
    predict_map(predictor, [scene], tmp_path / "released.tif", tile=64, overlap=16)
    predict_map(fusion_model, [scene], tmp_path / "ours.tif", tile=64, overlap=16)
    with rasterio.open(tmp_path / "released.tif") as a, rasterio.open(tmp_path / "ours.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))


def _run(args: list[str], capsys) -> tuple[int, str]:
    code = main(["map", "predict", *args])
    return code, capsys.readouterr().err


def test_missing_bands_are_named(scene, fusion_model, tmp_path, capsys):
    code, err = _run(["--model", str(fusion_model), "--scene", str(scene / "S2"),
                      "--out", str(tmp_path / "map.tif")], capsys)
    assert code == 2 and "needs the bands VV, VH, which are missing" in err
    assert not (tmp_path / "map.tif").exists()


def test_wrong_crs_and_resolution_are_named(scene, fusion_model, tmp_path, capsys):
    with rasterio.open(next((scene / "S1").glob("*_VV.tif"))) as src:
        vv, transform, epsg = src.read(1), src.transform, src.crs.to_epsg()
    other = 32633 if epsg != 32633 else 32634
    write_tif(tmp_path / "utm33" / "x_VV.tif", vv, other, transform)
    code, err = _run(["--model", str(fusion_model), "--scene", str(scene / "S2"),
                      str(next((scene / "S1").glob("*_VH.tif"))), str(tmp_path / "utm33"),
                      "--out", str(tmp_path / "map.tif")], capsys)
    assert code == 2 and f"x_VV.tif: CRS EPSG:{other} differs" in err

    write_tif(tmp_path / "half" / "x_VV.tif", vv[:48], epsg, transform)
    code, err = _run(["--model", str(fusion_model), "--scene", str(scene / "S2"),
                      str(next((scene / "S1").glob("*_VH.tif"))), str(tmp_path / "half"),
                      "--out", str(tmp_path / "map.tif")], capsys)
    assert code == 2 and "x_VV.tif: bounds" in err and "do not cover the grid" in err

    coarse = tmp_path / "coarse"
    grid = from_origin(0, 0, 20, 20)
    write_tif(coarse / "s2.tif", np.full((13, 48, 48), 1000, np.uint16), 32632, grid)
    for band in ("VV", "VH"):
        write_tif(coarse / f"s_{band}.tif", vv[::2, ::2], 32632, grid)
    code, err = _run(["--model", str(fusion_model), "--scene", str(coarse),
                      "--out", str(tmp_path / "map.tif")], capsys)
    assert code == 2 and "20 m pixels; the model was trained on 10 m pixels" in err
    assert not (tmp_path / "map.tif").exists()


def test_a_file_that_names_no_band_is_refused(tmp_path, fusion_model, capsys):
    write_tif(tmp_path / "mystery.tif", np.zeros((5, 8, 8), np.uint16), 32632,
              from_origin(0, 0, 10, 10))
    code, err = _run(["--model", str(fusion_model), "--scene", str(tmp_path / "mystery.tif"),
                      "--out", str(tmp_path / "map.tif")], capsys)
    assert code == 2 and "mystery.tif: 5 bands without band descriptions" in err


def test_map_figure_shows_the_error_against_the_true_map(scene, fusion_model, tmp_path):
    predict_map(fusion_model, [scene], tmp_path / "map.tif", tile=64, overlap=16)
    assert main(["map", "figure", "--map", str(tmp_path / "map.tif"), "--scene", str(scene),
                 "--truth", str(scene / "truth" / "dw.tif"), "--out",
                 str(tmp_path / "map.png")]) == 0
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG"
    # two rows of three panels: legible when the report scales it to about 1000 px (one row of
    # five came out 4:1, its text 6 px high), and the error panel's colours are no class's
    from matplotlib.colors import to_hex
    from matplotlib.image import imread

    from cromss.constants import DW_COLORS
    from cromss.predict.figure import ERROR_COLORS

    height, width = imread(tmp_path / "map.png").shape[:2]
    assert width / height < 1.6
    assert not {to_hex(c) for c in ERROR_COLORS[:2]} & {to_hex(c) for c in DW_COLORS}
