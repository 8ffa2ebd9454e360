"""An area from a STAC API as a scene for `cromss map predict`, read straight from the assets.

The area (``bbox`` in lon/lat) gets a 10 m grid in the UTM zone of its centre (aligned to
10 m like the patches of :func:`cromss.sources.stac.patch_grid`). In the date window
the most recent S2 item covering the area under ``max_cloud`` % (and, for a model that needs S1,
the most recent S1 item) is chosen with the STAC source's own search; its band assets, found by
the item's band metadata with their declared offsets removed (:mod:`cromss.sources.stac_bands`),
are warped window by window onto the grid, so only the windows being predicted are downloaded.
An L2A item is refused for a model that needs B10 and gives a domain-shift warning otherwise.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from rasterio.transform import from_origin

from cromss.config import with_defaults
from cromss.errors import CromssError
from cromss.predict.scene import Band, Grid
from cromss.sources import stac, stac_bands

log = logging.getLogger(__name__)

STAC_COLLECTION = {"s2": "s2_collection", "s1": "s1_collection"}
L2A_BANDS_MISSING = ("B10",)
"""L1C bands that L2A products do not have (the cirrus band is dropped by Sen2Cor)."""


def area_grid(bbox: list[float]) -> tuple[int, Grid]:
    """EPSG code and the 10 m UTM grid covering ``bbox``."""
    from rasterio.warp import transform_bounds

    lon0, lat0, lon1, lat1 = bbox
    if not (lon0 < lon1 and lat0 < lat1):
        raise CromssError(f"STAC bbox {bbox} must be [lon_min, lat_min, lon_max, lat_max]")
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
    optionally ``provider``, ``url``, ``s2_collection``, ``max_cloud`` (absent or None: the
    defaults of ``data.real.stac`` in the schema)."""
    from rasterio.crs import CRS

    given = {key: value for key, value in section.items() if value is not None}
    area = with_defaults({"stac": given}, "real")["stac"]
    provider = area["provider"]
    if provider not in stac.PROVIDERS:
        raise CromssError(f"STAC provider must be one of {sorted(stac.PROVIDERS)}, not {provider!r}")
    config = {**stac.PROVIDERS[provider], **area}
    epsg, grid = area_grid(config["bbox"])
    client = stac.open_client(config)
    bounds = tuple(config["bbox"])
    window = config["datetime"].split("/")
    items: dict[str, Any] = {}
    for modality in needs:
        collection = config[STAC_COLLECTION[modality]]
        candidates = stac.search_season(client, collection, config["bbox"], window)
        items[modality] = stac.pick_item(candidates, bounds,
                                         config["max_cloud"] if modality == "s2" else None)
        if items[modality] is None:
            cloud = f" under {config['max_cloud']} % cloud" if modality == "s2" else ""
            raise CromssError(f"no {collection} item covers {list(bounds)} in "
                              f"{config['datetime']}{cloud}")
    sign = stac.sas_signer(config)
    bands: dict[str, Band] = {}
    for modality, item in items.items():
        if modality == "s2":
            check_level(item.to_dict(), needs["s2"], config["s2_collection"])
        found = (stac_bands.item_bands(item.to_dict()) if modality == "s2"
                 else stac.s1_bands(item, config["s1_assets"]))
        for band in needs[modality]:
            if band in found:
                bands[band] = Band(band, modality, sign(found[band].href, item.collection_id),
                                   scale=found[band].scale, offset=found[band].offset)
        missing = [band for band in needs[modality] if band not in found]
        if missing:
            raise CromssError(f"STAC item {item.id} ({item.collection_id}): no asset declares the "
                              f"bands {', '.join(missing)} the model needs (found: "
                              f"{', '.join(sorted(found)) or 'none'})")
    return bands, (CRS.from_epsg(epsg), *grid[1:]), config.get("s1_units", "db")


def check_level(item: dict[str, Any], needs: list[str], collection: str) -> None:
    """Refuse an L2A item for a model that needs a band L2A lacks; warn of the domain shift of an
    L1C-trained model on L2A (bottom-of-atmosphere) reflectance otherwise."""
    if stac_bands.product_level(item) != "L2A":
        return
    lacking = [band for band in L2A_BANDS_MISSING if band in needs]
    if lacking:
        raise CromssError(f"STAC item {item['id']} of {collection} is Level-2A, which has no "
                          f"{', '.join(lacking)}; this model takes the {len(needs)} L1C bands "
                          "including it. Choose an L1C collection (e.g. --stac-provider "
                          "earth_search or cdse, --stac-collection sentinel-2-l1c) or a model of "
                          "9 bands")
    log.warning("STAC item %s of %s is Level-2A (surface reflectance) but the model was trained on "
                "Level-1C (top-of-atmosphere) data: expect a domain shift and lower accuracy; "
                "prefer an L1C collection", item["id"], collection)
