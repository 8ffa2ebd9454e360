"""Tiled map inference: blending, equality with whole-image prediction, edges, nodata, outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from cromss.cli import main
from cromss.constants import DW_CLASSES, input_normalisation
from cromss.data.synthetic import write_tif
from cromss.predict.mapping import predict_map
from cromss.predict.predictor import Predictor
from cromss.predict.tiling import Tiling, axis_profile, tile_starts
from helpers.predict import CLASSES, UTM, conv_predictor, s2_scene
from cromss.weights import files


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


def gdalinfo(path: Path) -> str:
    """What ``gdalinfo`` prints for ``path``: GDALInfo(), the library form of the command, from
    the GDAL that rasterio ships with (no GDAL binaries needed)."""
    import ctypes

    found = sorted((Path(rasterio.__file__).parent.parent / "rasterio.libs").glob("libgdal-*.so*"))
    if not found:
        pytest.skip("rasterio without its bundled libgdal")
    gdal = ctypes.CDLL(str(found[0]))
    gdal.GDALAllRegister()
    gdal.GDALOpen.restype = ctypes.c_void_p
    gdal.GDALOpen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    gdal.GDALInfoOptionsNew.restype = ctypes.c_void_p
    gdal.GDALInfoOptionsNew.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    gdal.GDALInfo.restype = ctypes.c_void_p
    gdal.GDALInfo.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    gdal.GDALClose.argtypes = [ctypes.c_void_p]
    gdal.VSIFree.argtypes = [ctypes.c_void_p]
    dataset = gdal.GDALOpen(str(path).encode(), 0)
    assert dataset, f"GDAL cannot open {path}"
    try:
        text = gdal.GDALInfo(dataset, gdal.GDALInfoOptionsNew(None, None))
        try:
            return ctypes.string_at(text).decode()
        finally:
            gdal.VSIFree(text)
    finally:
        gdal.GDALClose(dataset)


def test_gis_tools_read_the_class_names_and_mode_overviews(tmp_path):
    from rio_cogeo.cogeo import cog_validate

    s2_scene(tmp_path / "scene.tif", 700, 650, seed=3)
    predict_map(conv_predictor(), [tmp_path / "scene.tif"], tmp_path / "map.tif", tile=128,
                overlap=32)
    valid, errors, _ = cog_validate(str(tmp_path / "map.tif"), strict=True)
    assert valid and not errors
    info = gdalinfo(tmp_path / "map.tif")
    categories = re.findall(r"^\s+(\d+): (.+)$",
                            info.split("Categories:", 1)[1].split("Color Table", 1)[0], re.M)
    assert categories == [(str(i), name) for i, name in enumerate(DW_CLASSES[:CLASSES])]
    style = (tmp_path / "map.qml").read_text()
    assert 'value="0" color="#419bdf" alpha="255" label="water"' in style
    with rasterio.open(tmp_path / "map.tif") as src:
        full = src.read(1)
        overview = src.read(1, out_shape=(350, 325))  # the first overview, half the size
    blocks = full.reshape(350, 2, 325, 2).transpose(0, 2, 1, 3).reshape(350, 325, 4)
    counts = np.stack([(blocks == c).sum(-1) for c in range(CLASSES)])
    majority = counts.max(0) >= 3
    # where three of four pixels share a class, a mode overview shows it, a nearest one may not
    assert (blocks[..., 0] != counts.argmax(0))[majority].any()
    np.testing.assert_array_equal(overview[majority], counts.argmax(0)[majority])


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
    from cromss.models import build_downstream

    s2_scene(tmp_path / "scene.tif", 100, 90)
    model = build_downstream("dw", "resnet18", 13)
    card = {"task": "dw", "encoder": "resnet18", "modality": "s2", "in_channels": 13,
            "s2_bands": 13, "normalisation": input_normalisation("s2", 13),
            "classes": list(DW_CLASSES), "num_classes": 9}
    run = tmp_path / "finetune" / "seed0"
    files.save({"state_dict": model.state_dict(), "card": card}, run / "model.pt")
    (run / "metrics.json").write_text(json.dumps({"strict": {"mIoU": 50.0}}))
    worse = tmp_path / "finetune" / "seed1"
    worse.mkdir()
    (worse / "metrics.json").write_text(json.dumps({"strict": {"mIoU": 10.0}}))
    assert main(["map", "predict", "--best-of", str(worse / "metrics.json"), str(run / "metrics.json"),
                 "--scene", str(tmp_path / "scene.tif"), "--out", str(tmp_path / "map.tif"),
                 "--tile", "64", "--overlap", "16", "--threads", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == str(run / "model.pt") and summary["kind"] == "finetuned"
    with rasterio.open(tmp_path / "map.tif") as out:
        assert out.shape == (100, 90) and (out.read(1) < 9).all()


KILLED_MID_WRITE = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from helpers.predict import conv_predictor
from cromss.predict.mapping import predict_map
from cromss.predict.predictor import Predictor

class Killed(Predictor):
    calls = 0
    def __call__(self, inputs):
        self.calls += 1
        if self.calls > 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(inputs)

good = conv_predictor()
predict_map(Killed(good.module, "finetuned", ("s2",), good.normalisation, good.classes,
                   good.colors, "killed"),
            [Path({scene!r})], Path({out!r}), tile=64, overlap=16, batch_size=1,
            probabilities=Path({probs!r}))
"""


def test_a_killed_run_leaves_nothing_after_the_next_run(tmp_path):
    """kill -9 during the strip writes, then a successful rerun: only the outputs remain."""
    import subprocess
    import sys

    s2_scene(tmp_path / "scene.tif", 150, 150)
    out, probs = tmp_path / "out" / "map.tif", tmp_path / "out" / "p.zarr"
    script = KILLED_MID_WRITE.format(tests=str(Path(__file__).parents[1]), out=str(out),
                                     scene=str(tmp_path / "scene.tif"), probs=str(probs))
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=False)
    assert killed.returncode == -9, killed.stderr
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")], "nothing to clean up"
    predict_map(conv_predictor(), [tmp_path / "scene.tif"], out, tile=64, overlap=16,
                batch_size=1, probabilities=probs)
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
