"""STAC patches against a loopback STAC API with GeoTIFF assets, and the Dynamic World messages."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from cromss.cli import main
from cromss.sources.stac import patch_grid, to_db, utm_epsg
from helpers.loopback import LoopbackServer

BBOX = [15.0, 45.0, 15.003, 45.001]  # about 236 m x 111 m: two 16 px patches side by side
PATCH = 16


def _raster(path: Path, pixels: np.ndarray, origin: tuple[float, float]) -> None:
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", count=1, dtype=pixels.dtype.name, height=pixels.shape[0],
                       width=pixels.shape[1], crs="EPSG:32633", tiled=True, blockxsize=16, blockysize=16,
                       transform=from_origin(*origin, 10, 10)) as dst:
        dst.write(pixels, 1)


def _item(url: str, item_id: str, collection: str, when: str, bbox: list[float], assets: dict,
          cloud: float | None = None) -> dict:
    props = {"datetime": when, **({"eo:cloud_cover": cloud, "s2:mgrs_tile": "33TWL"} if cloud is not None else {})}
    lon0, lat0, lon1, lat1 = bbox
    return {"type": "Feature", "stac_version": "1.0.0", "stac_extensions": [], "id": item_id,
            "collection": collection, "bbox": bbox, "links": [],
            "geometry": {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1],
                                                              [lon0, lat1], [lon0, lat0]]]},
            "properties": props,
            "assets": {key: {"href": f"{url}/cogs/{name}", "type": "image/tiff"} for key, name in assets.items()}}


@pytest.fixture()
def stac_api(tmp_path: Path):
    from rasterio.warp import transform_bounds

    root = tmp_path / "remote"
    (root / "cogs").mkdir(parents=True)
    epsg, corners = patch_grid(BBOX, PATCH)
    assert epsg == utm_epsg(15.0015, 45.0005) == 32633 and len(corners) == 2
    origin = (corners[0][0] - 100, corners[0][1] + 100)  # 10 px margin, on the 10 m grid
    rows, cols = np.mgrid[0:52, 0:52]
    _raster(root / "cogs/gradient.tif", (cols + 1000 * rows).astype(np.uint16), origin)
    _raster(root / "cogs/const.tif", np.full((52, 52), 7, np.uint16), origin)
    _raster(root / "cogs/s1.tif", np.full((52, 52), 0.01, np.float32), origin)
    bounds = list(transform_bounds("EPSG:32633", "EPSG:4326", origin[0], origin[1] - 520,
                                   origin[0] + 520, origin[1]))
    with LoopbackServer(root) as server:
        s2_assets = {"coastal": "const.tif", "red": "gradient.tif", "green": "const.tif"}
        items = [
            _item(server.url, "S2_clear", "sentinel-2-l1c", "2021-03-10T10:00:00Z", bounds, s2_assets, 5.0),
            _item(server.url, "S2_cloudy", "sentinel-2-l1c", "2021-03-20T10:00:00Z", bounds, s2_assets, 60.0),
            _item(server.url, "S2_summer", "sentinel-2-l1c", "2021-06-20T10:00:00Z", bounds, s2_assets, 1.0),
            _item(server.url, "S1A_IW_GRDH_1SDV_20210312T050000_X", "sentinel-1-grd", "2021-03-12T05:00:00Z",
                  bounds, {"vv": "s1.tif", "vh": "s1.tif"}),
            _item(server.url, "S1A_IW_GRDH_1SDV_20210618T050000_X", "sentinel-1-grd", "2021-06-18T05:00:00Z",
                  bounds, {"vv": "s1.tif", "vh": "s1.tif"}),
        ]
        # the summer scene names its red band as CDSE does and declares the baseline-04.00 offset
        items[2]["assets"]["B04_10m"] = {**items[2]["assets"].pop("red"), "bands": [
            {"name": "B04", "eo:common_name": "red", "eo:center_wavelength": 0.665}],
            "raster:scale": 0.0001, "raster:offset": -0.1}

        def search(body: dict) -> dict:
            start, end = body["datetime"].split("/")
            found = [item for item in items if item["collection"] in body["collections"]
                     and start[:10] <= item["properties"]["datetime"][:10] <= end[:10]]
            return {"type": "FeatureCollection", "features": found, "links": []}

        server.post_routes["/stac/search"] = search
        (root / "stac").write_text(json.dumps({
            "type": "Catalog", "id": "loopback", "stac_version": "1.0.0", "description": "test API",
            "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
            "links": [{"rel": "self", "href": f"{server.url}/stac"}, {"rel": "root", "href": f"{server.url}/stac"},
                      {"rel": "search", "href": f"{server.url}/stac/search", "method": "POST",
                       "type": "application/geo+json"}]}))
        yield server, corners


def test_stac_patches_on_the_10m_grid(stac_api, tmp_path: Path) -> None:
    import rasterio

    server, corners = stac_api
    settings = {"stac": {"provider": "earth_search", "url": f"{server.url}/stac", "bbox": BBOX,
                         "patch_size": PATCH, "first_id": 40,
                         "seasons": [["2021-03-01", "2021-03-31"], ["2021-06-01", "2021-06-30"]]}}
    out = tmp_path / "raw"
    assert main(["data", "fetch", "stac", "--settings", json.dumps(settings), "--out", str(out), "--quiet"]) == 0
    manifest = json.loads((out / "stac_patches.json").read_text())["patches"]
    assert [p["id"] for p in manifest] == [40, 41]
    spring = "20210310T100000_20210310T100000_T33TWL"  # the clear scene, not the later cloudy one
    assert manifest[1]["s2_l1c"] == [spring, "20210620T100000_20210620T100000_T33TWL"]
    with rasterio.open(out / "ssl4eo_s12/s2c/0000041" / spring / "B4.tif") as src:
        red = src.read(1)
        assert src.crs.to_epsg() == 32633 and src.transform.c == corners[1][0] and red.shape == (16, 16)
    rows, cols = np.mgrid[0:16, 0:16]
    np.testing.assert_array_equal(red, (cols + 10 + PATCH) + 1000 * (rows + 10))  # 10 px margin, 2nd patch
    summer = out / "ssl4eo_s12/s2c/0000041/20210620T100000_20210620T100000_T33TWL/B4.tif"
    with rasterio.open(summer) as src:  # found by its band metadata, the declared offset removed
        np.testing.assert_array_equal(src.read(1), red - 1000)
    with rasterio.open(out / "ssl4eo_s12/s2c/0000040" / spring / "B10.tif") as src:
        assert not src.read(1).any()  # no "cirrus" asset: zeros, listed in the manifest
    assert "S2_clear:B10" in manifest[0]["missing_bands"]
    s1_season = out / "ssl4eo_s12/s1/0000040/S1A_IW_GRDH_1SDV_20210312T050000_X"
    with rasterio.open(s1_season / "VV.tif") as src:
        np.testing.assert_allclose(src.read(1), -40.0, rtol=1e-5)  # amplitude 0.01 -> 20 log10 = -40 dB


def test_stac_without_scenes_in_every_season_fails(stac_api, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    server, _ = stac_api
    settings = {"stac": {"url": f"{server.url}/stac", "bbox": BBOX, "patch_size": PATCH,
                         "seasons": [["2019-01-01", "2019-01-31"]]}}
    assert main(["data", "fetch", "stac", "--settings", json.dumps(settings), "--out", str(tmp_path / "raw")]) == 2
    assert "no patch of bbox" in capsys.readouterr().err
    assert not (tmp_path / "raw" / "ssl4eo_s12").exists()


def test_to_db_units() -> None:
    np.testing.assert_allclose(to_db(np.array([0.1, 1.0]), "linear"), [-10.0, 0.0], atol=1e-6)
    assert np.isnan(to_db(np.array([0.0]), "linear")[0])
    with pytest.raises(ValueError, match="s1_units"):
        to_db(np.array([1.0]), "sigma")


def test_dynamicworld_without_earthengine_says_what_to_install(tmp_path: Path, monkeypatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "ee", None)  # import ee -> ImportError
    assert main(["data", "fetch", "dynamicworld", "--settings", "{}", "--out", str(tmp_path)]) == 2
    assert "pip install earthengine-api" in capsys.readouterr().err


def test_dynamicworld_without_credentials_says_what_to_set(tmp_path: Path, monkeypatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    import types

    fake = types.ModuleType("ee")

    def initialize(project=None):
        raise Exception("Please authorize access to your Earth Engine account")
    fake.Initialize = initialize
    monkeypatch.setitem(sys.modules, "ee", fake)
    monkeypatch.delenv("EE_PROJECT", raising=False)
    assert main(["data", "fetch", "dynamicworld", "--settings", '{"dynamicworld": {"project": "my-proj"}}',
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "earthengine authenticate" in err and "my-proj" in err
