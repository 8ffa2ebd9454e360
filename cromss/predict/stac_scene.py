"""An area from a STAC API as a scene for `cromss predict`, read straight from the assets.

The area (``bbox`` in lon/lat) gets a 10 m grid in the UTM zone of its centre (aligned to
10 m like the patches of :func:`cromss.sources.stac.patch_grid`). In the date window
the most recent S2 item covering the area under ``max_cloud`` % (and, for a model that needs S1,
the most recent S1 item) is chosen with the STAC source's own search; its band assets
(cloud-optimised GeoTIFFs) are warped window by window onto the grid, so only the windows being
predicted are ever downloaded.
"""

from __future__ import annotations

import math
from typing import Any

from rasterio.transform import from_origin

from cromss.predict.scene import Band, Grid
from cromss.sources import stac

STAC_MODALITIES = {"s2": ("s2_collection", "s2_assets"), "s1": ("s1_collection", "s1_assets")}


def area_grid(bbox: list[float]) -> tuple[int, Grid]:
    """EPSG code and the 10 m UTM grid covering ``bbox``."""
    from rasterio.warp import transform_bounds

    lon0, lat0, lon1, lat1 = bbox
    if not (lon0 < lon1 and lat0 < lat1):
        raise ValueError(f"STAC bbox {bbox} must be [lon_min, lat_min, lon_max, lat_max]")
    epsg = stac.utm_epsg((lon0 + lon1) / 2, (lat0 + lat1) / 2)
    left, bottom, right, top = transform_bounds("EPSG:4326", f"EPSG:{epsg}", lon0, lat0, lon1, lat1)
    left = math.floor(left / stac.RESOLUTION_M) * stac.RESOLUTION_M
    top = math.ceil(top / stac.RESOLUTION_M) * stac.RESOLUTION_M
    width = math.ceil((right - left) / stac.RESOLUTION_M)
    height = math.ceil((top - bottom) / stac.RESOLUTION_M)
    transform = from_origin(left, top, stac.RESOLUTION_M, stac.RESOLUTION_M)
    return epsg, (f"EPSG:{epsg}", transform, width, height)


def stac_scene(section: dict[str, Any], needs: dict[str, list[str]]
               ) -> tuple[dict[str, Band], Grid, str]:
    """(bands, grid, S1 units) of an area: ``section`` has ``bbox``, ``datetime`` (start/end),
    optionally ``provider``, ``url``, ``max_cloud``."""
    from rasterio.crs import CRS

    provider = section.get("provider", "earth_search")
    if provider not in stac.PROVIDERS:
        raise ValueError(f"STAC provider must be one of {sorted(stac.PROVIDERS)}, not {provider!r}")
    config = {**stac.PROVIDERS[provider], "max_cloud": 20.0, **section}
    epsg, grid = area_grid(config["bbox"])
    client = stac.open_client(config)
    sign = stac.sas_signer(config)
    bounds = tuple(config["bbox"])
    window = config["datetime"].split("/")
    bands: dict[str, Band] = {}
    for modality in needs:
        collection_key, assets_key = STAC_MODALITIES[modality]
        items = stac.search_season(client, config[collection_key], config["bbox"], window)
        item = stac.pick_item(items, bounds, config["max_cloud"] if modality == "s2" else None)
        if item is None:
            raise ValueError(f"no {config[collection_key]} item covers {list(bounds)} in "
                             f"{config['datetime']}" + (f" under {config['max_cloud']} % cloud"
                                                         if modality == "s2" else ""))
        for band in needs[modality]:
            asset = item.assets.get(config[assets_key].get(band, ""))
            if asset is not None:
                bands[band] = Band(band, modality, sign(asset.href, item.collection_id))
    return bands, (CRS.from_epsg(epsg), *grid[1:]), config.get("s1_units", "db")
