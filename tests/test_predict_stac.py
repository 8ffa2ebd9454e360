"""`cromss predict` on an area from a loopback STAC API: assets read window by window."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from sources_server import LoopbackServer
from test_predict import conv_predictor

from cromss.constants import S2_BANDS
from cromss.predict.mapping import predict_map
from cromss.predict.stac_scene import area_grid
from cromss.sources.stac import PROVIDERS

BBOX = [15.0, 45.0, 15.006, 45.004]  # about 470 m x 445 m


def test_an_area_from_stac_is_mapped_on_its_utm_grid(tmp_path: Path):
    epsg, (_, grid_transform, width, height) = area_grid(BBOX)
    assert epsg == 32633 and grid_transform.a == 10.0
    root = tmp_path / "remote"
    (root / "cogs").mkdir(parents=True)
    origin = (grid_transform.c - 200, grid_transform.f + 200)  # the asset reaches past the area
    size = max(width, height) + 40
    rng = np.random.default_rng(0)
    for band in S2_BANDS:
        with rasterio.open(root / "cogs" / f"{band}.tif", "w", driver="GTiff", count=1,
                           dtype="uint16", width=size, height=size, crs="EPSG:32633",
                           transform=from_origin(*origin, 10, 10), tiled=True, blockxsize=32,
                           blockysize=32) as dst:
            dst.write(rng.integers(500, 3000, (1, size, size)).astype(np.uint16))
    bounds = list(transform_bounds("EPSG:32633", "EPSG:4326", origin[0], origin[1] - 10 * size,
                                   origin[0] + 10 * size, origin[1]))
    with LoopbackServer(root) as server:
        assets = {key: {"href": f"{server.url}/cogs/{band}.tif", "type": "image/tiff"}
                  for band, key in PROVIDERS["earth_search"]["s2_assets"].items()}
        item = {"type": "Feature", "stac_version": "1.0.0", "stac_extensions": [],
                "id": "S2_area", "collection": "sentinel-2-l1c", "bbox": bounds, "links": [],
                "geometry": {"type": "Polygon", "coordinates": [[
                    [bounds[0], bounds[1]], [bounds[2], bounds[1]], [bounds[2], bounds[3]],
                    [bounds[0], bounds[3]], [bounds[0], bounds[1]]]]},
                "properties": {"datetime": "2021-06-20T10:00:00Z", "eo:cloud_cover": 3.0},
                "assets": assets}
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
        summary = predict_map(conv_predictor(), [], tmp_path / "map.tif", tile=32, overlap=8,
                              stac={"bbox": BBOX, "datetime": "2021-06-01/2021-06-30",
                                    "url": f"{server.url}/stac"})
        ranges = [r for r in server.requests if r[1].endswith("/B4.tif") and r[2]]
    assert (summary["width"], summary["height"]) == (width, height)
    with rasterio.open(tmp_path / "map.tif") as out:
        assert out.crs.to_epsg() == 32633 and out.transform == grid_transform
        assert (out.read(1) < 4).all()
    assert ranges  # the asset was read in byte ranges, not downloaded whole
