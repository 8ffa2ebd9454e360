"""`cromss map predict` on an area from loopback STAC APIs serving items shaped like the real catalogs'.

The items in ``tests/fixtures/stac/`` follow the providers' published examples (Earth Search v1 L1C as
recorded in CS-SI/eodag's provider responses, Earth Search v1 L2A, Planetary Computer L2A after its
collection's ``item_assets``, Copernicus Data Space STAC 1.1); only the footprint and the asset
hosts are the test's. Every asset holds ``true + shift`` where ``shift`` is the offset the item
declares (or its processing baseline implies), so a correct reader returns ``true``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from helpers.loopback import LoopbackServer
from helpers.predict import conv_predictor
from rasterio.windows import Window

from cromss.cli import main
from cromss.constants import S2_BANDS, input_normalisation
from cromss.predict.mapping import predict_map
from cromss.predict.scene import SceneReader
from cromss.predict.stac_scene import area_grid, stac_scene

BBOX = [15.0, 45.0, 15.006, 45.004]  # about 470 m x 445 m
FIXTURES = Path(__file__).parents[1] / "fixtures" / "stac"
ES_KEYS = dict(zip(S2_BANDS, ("coastal", "blue", "green", "red", "rededge1", "rededge2",
                              "rededge3", "nir", "nir08", "nir09", "cirrus", "swir16", "swir22")))
CATALOGS = {  # fixture: (provider, asset key of each band as the provider names it, shift)
    "earth_search_l1c": ("earth_search", ES_KEYS, 1000),
    "earth_search_l2a": ("earth_search", {b: k for b, k in ES_KEYS.items() if b != "B10"}, 0),
    "planetary_computer_l2a": ("planetary_computer", {
        b: f"B{b[1:]:0>2}" if b != "B8A" else "B8A" for b in S2_BANDS if b != "B10"}, 1000),
    "cdse_l1c": ("cdse", {b: f"B{b[1:]:0>2}_{res}m" if b != "B8A" else "B8A_20m" for b, res in zip(
        S2_BANDS, (60, 10, 10, 10, 20, 20, 20, 10, 20, 60, 60, 20, 20))}, 1000),
}
TOKEN = "loopback-token"


def true_values(index: int, size: int) -> np.ndarray:
    """The L1C digital numbers of asset ``index``: a level of its own plus a ramp."""
    ramp = np.add.outer(np.arange(size), np.arange(size)) % 97
    return (600 + 150 * index + ramp).astype(np.uint16)


def serve_catalog(root: Path, server: LoopbackServer,
                  name: str) -> tuple[dict, dict[str, np.ndarray]]:
    """Write the fixture's assets (GeoTIFF content, any extension) around the area and answer
    its STAC search; return the item and the true values of each asset key."""
    epsg, (_, grid_transform, width, height) = area_grid(BBOX)
    origin = (grid_transform.c - 200, grid_transform.f + 200)  # the assets reach past the area
    size = max(width, height) + 40
    bounds = list(transform_bounds(f"EPSG:{epsg}", "EPSG:4326", origin[0], origin[1] - 10 * size,
                                   origin[0] + 10 * size, origin[1]))
    text = (FIXTURES / f"{name}.json").read_text()
    item = json.loads(text.replace("{assets}", f"{server.url}/assets").replace(
        "{protected}", f"{server.url}/protected"))
    item["bbox"] = bounds
    item["geometry"] = {"type": "Polygon", "coordinates": [[
        [bounds[0], bounds[1]], [bounds[2], bounds[1]], [bounds[2], bounds[3]],
        [bounds[0], bounds[3]], [bounds[0], bounds[1]]]]}
    shift = CATALOGS[name][2]
    truth = {}
    for index, (key, asset) in enumerate(sorted(item["assets"].items())):
        href = (asset.get("alternate") or {}).get("https", {}).get("href", asset["href"])
        path = root / href.removeprefix(server.url + "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        truth[key] = true_values(index, size)
        stored = truth[key] + (5000 if key.endswith("-jp2") else shift)  # never read: a COG is
        with rasterio.open(path, "w", driver="GTiff", count=1, dtype="uint16", width=size,
                           height=size, crs=f"EPSG:{epsg}", transform=from_origin(*origin, 10, 10),
                           tiled=True, blockxsize=32, blockysize=32, nodata=0) as dst:
            dst.write(stored[None])
    server.post_routes["/stac/search"] = lambda body: {
        "type": "FeatureCollection", "features": [item], "links": []}
    (root / "stac").write_text(json.dumps({
        "type": "Catalog", "id": "loopback", "stac_version": "1.0.0", "description": "test",
        "conformsTo": ["https://api.stacspec.org/v1.0.0/core",
                       "https://api.stacspec.org/v1.0.0/item-search"],
        "links": [{"rel": "self", "href": f"{server.url}/stac"},
                  {"rel": "root", "href": f"{server.url}/stac"},
                  {"rel": "search", "href": f"{server.url}/stac/search", "method": "POST",
                   "type": "application/geo+json"}]}))
    crop = (slice(20, 20 + height), slice(20, 20 + width))
    return item, {key: values[crop] for key, values in truth.items()}


@pytest.fixture
def loopback(tmp_path, monkeypatch):
    monkeypatch.setenv("GDAL_HTTP_HEADERS", "")  # restored after the CDSE cases set it
    monkeypatch.setenv("CDSE_ACCESS_TOKEN", TOKEN)
    root = tmp_path / "remote"
    root.mkdir()
    with LoopbackServer(root) as server:
        server.bearer = TOKEN
        yield root, server


@pytest.mark.parametrize("name", sorted(CATALOGS))
def test_bands_are_found_by_their_metadata_and_offsets_removed(loopback, name):
    root, server = loopback
    provider, keys, _ = CATALOGS[name]
    _, truth = serve_catalog(root, server, name)
    needs = {"s2": list(keys)}
    bands, grid, _ = stac_scene({"bbox": BBOX, "datetime": "2020-01-01/2026-12-31",
                                 "provider": provider, "url": f"{server.url}/stac"}, needs)
    with SceneReader([], needs, bands=bands, grid=grid) as reader:
        raw, valid = reader.read(Window(0, 0, grid[2], grid[3]))
    assert valid.all()
    for plane, band in zip(raw["s2"], needs["s2"]):
        np.testing.assert_array_equal(plane, truth[keys[band]], err_msg=f"{name} {band}")


def model_file(tmp_path: Path, bands: int) -> Path:
    from cromss.constants import DW_CLASSES
    from cromss.models import build_downstream
    from cromss.weights import files

    card = {"task": "dw", "encoder": "resnet18", "modality": "s2", "in_channels": bands,
            "s2_bands": bands, "normalisation": input_normalisation("s2", bands),
            "classes": list(DW_CLASSES), "num_classes": 9}
    path = tmp_path / f"model{bands}.pt"
    files.save({"state_dict": build_downstream("dw", "resnet18", bands).state_dict(),
                     "card": card}, path)
    return path


@pytest.mark.parametrize("name", sorted(CATALOGS))
def test_cli_maps_an_area_from_each_catalog(loopback, tmp_path, caplog, name):
    root, server = loopback
    provider = CATALOGS[name][0]
    serve_catalog(root, server, name)
    level_2a = name.endswith("l2a")
    out = tmp_path / "map.tif"
    args = ["map", "predict", "--stac-bbox", *map(str, BBOX), "--stac-datetime", "2020-01-01/2026-12-31",
            "--stac-provider", provider, "--stac-url", f"{server.url}/stac", "--out", str(out),
            "--tile", "32", "--overlap", "8", "--threads", "1"]
    with caplog.at_level(logging.WARNING):
        assert main([*args, "--model", str(model_file(tmp_path, 9 if level_2a else 13))]) == 0
    _, (_, transform, width, height) = area_grid(BBOX)
    with rasterio.open(out) as written:
        assert (written.width, written.height) == (width, height) and written.transform == transform
        assert (written.read(1) < 9).all()
    assert ("Level-2A (surface reflectance) but the model was trained on Level-1C"
            in caplog.text) == level_2a
    if name == "cdse_l1c":  # read from the https alternates, which answer 401 without the token
        assert any(r[1].startswith("/protected/odata/") for r in server.requests)


@pytest.mark.parametrize("name", ["earth_search_l2a", "planetary_computer_l2a"])
def test_a_13_band_model_on_l2a_is_a_clear_error(loopback, tmp_path, capsys, name):
    root, server = loopback
    serve_catalog(root, server, name)
    out = tmp_path / "map.tif"
    code = main(["map", "predict", "--model", str(model_file(tmp_path, 13)), "--stac-bbox",
                 *map(str, BBOX), "--stac-datetime", "2020-01-01/2026-12-31", "--stac-provider",
                 CATALOGS[name][0], "--stac-url", f"{server.url}/stac", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "is Level-2A, which has no B10; this model takes the 13 L1C bands" in err
    assert not out.exists()


def test_cdse_token_is_obtained_with_the_users_password(loopback, tmp_path, monkeypatch):
    root, server = loopback
    monkeypatch.delenv("CDSE_ACCESS_TOKEN")
    serve_catalog(root, server, "cdse_l1c")
    section = {"bbox": BBOX, "datetime": "2020-01-01/2026-12-31", "provider": "cdse",
               "url": f"{server.url}/stac", "token_url": f"{server.url}/token"}
    logins = []

    def token(form: dict) -> dict:
        logins.append(form)
        return {"access_token": TOKEN, "expires_in": 600, "token_type": "Bearer"}

    server.post_routes["/token"] = token
    with pytest.raises(Exception, match="set CDSE_USERNAME and CDSE_PASSWORD"):
        predict_map(conv_predictor(), [], tmp_path / "map.tif", tile=32, overlap=8, stac=section)
    monkeypatch.setenv("CDSE_USERNAME", "researcher@example.org")
    monkeypatch.setenv("CDSE_PASSWORD", "secret")
    predict_map(conv_predictor(), [], tmp_path / "map.tif", tile=32, overlap=8, stac=section)
    assert logins == [{"grant_type": "password", "client_id": "cdse-public",
                       "username": "researcher@example.org", "password": "secret"}]
    assert (tmp_path / "map.tif").is_file()
    assert any(r[1].startswith("/protected/odata/") for r in server.requests)

