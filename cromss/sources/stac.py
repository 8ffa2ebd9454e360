"""Sentinel-1/2 for a user's own area through a STAC API, cut into SSL4EO-S12-style patches.

The area (``bbox`` in lon/lat) is tiled into ``patch_size`` x ``patch_size`` patches on a 10 m grid
in the UTM zone of its centre. For each season window the most recent S2 scene under
``max_cloud`` % and the most recent S1 scene that cover a patch are read band by band through a
rasterio ``WarpedVRT`` onto the patch grid (bilinear) and written as
``<out>/ssl4eo_s12/{s1,s2c}/<id:07d>/<season>/<band>.tif``; patches without a scene in every
season are skipped. ``<out>/stac_patches.json`` lists each patch's grid and season names, the input
of ``cromss data fetch dynamicworld``. S1 is written in dB (``s1_units`` says how the host stores it);
S2 bands a collection lacks (B10 in L2A) are written as zeros and listed in the manifest.
"""

from __future__ import annotations

import json
import logging
import math
import os
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import requests

from cromss.atomic import atomic_path
from cromss.constants import S1_BANDS, S2_BANDS
from cromss.data.layouts.ssl4eo_s12 import FOLDERS
from cromss.errors import CromssError
from cromss.settings import Real
from cromss.sources.stac_bands import ItemBand, item_bands

log = logging.getLogger(__name__)

RESOLUTION_M = 10.0
PROVIDERS: dict[str, dict[str, Any]] = {
    "earth_search": {
        "url": "https://earth-search.aws.element84.com/v1",
        "s2_collection": "sentinel-2-l1c", "s1_collection": "sentinel-1-grd",
        "s1_assets": {"VV": "vv", "VH": "vh"}, "s1_units": "amplitude",
    },
    "planetary_computer": {
        "url": "https://planetarycomputer.microsoft.com/api/stac/v1",
        "s2_collection": "sentinel-2-l2a", "s1_collection": "sentinel-1-rtc",
        "s1_assets": {"VV": "vv", "VH": "vh"}, "s1_units": "linear",
        "sas_url": "https://planetarycomputer.microsoft.com/api/sas/v1/token/{collection}",
    },
    "cdse": {
        "url": "https://stac.dataspace.copernicus.eu/v1",
        "s2_collection": "sentinel-2-l1c", "s1_collection": "sentinel-1-grd",
        "s1_assets": {"VV": "vv", "VH": "vh"}, "s1_units": "linear",
        "token_url": "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/"
                     "openid-connect/token",
        "client_id": "cdse-public",
    },
}
"""Catalogs by name; the S2 bands of an item are found by its band metadata
(:mod:`cromss.sources.stac_bands`), so any S2 collection of any catalog can be chosen
(``s2_collection``, ``url``)."""
SAS_HOST_SUFFIX = ".blob.core.windows.net"
"""Planetary Computer's storage: only hrefs there get its SAS token."""
DEFAULT_SEASONS = (("2020-12-06", "2021-01-05"), ("2021-03-05", "2021-04-04"),
                   ("2021-06-06", "2021-07-06"), ("2021-09-07", "2021-10-07"))
"""SSL4EO-S12's reference dates +-15 days (without its random per-location shift)."""


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 UTM zone containing a point."""
    zone = min(int((lon + 180) // 6) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


def patch_grid(bbox: list[float], patch_size: int) -> tuple[int, list[tuple[float, float]]]:
    """UTM EPSG code and the upper-left corners of the patches that tile ``bbox`` (lon/lat)."""
    from rasterio.warp import transform_bounds

    lon0, lat0, lon1, lat1 = bbox
    if not (lon0 < lon1 and lat0 < lat1):
        raise CromssError(f"data.real.stac.bbox {bbox} must be [lon_min, lat_min, lon_max, lat_max]")
    epsg = utm_epsg((lon0 + lon1) / 2, (lat0 + lat1) / 2)
    left, bottom, right, top = transform_bounds("EPSG:4326", f"EPSG:{epsg}", lon0, lat0, lon1, lat1)
    left = math.floor(left / RESOLUTION_M) * RESOLUTION_M
    top = math.ceil(top / RESOLUTION_M) * RESOLUTION_M
    side = patch_size * RESOLUTION_M
    cols, rows = math.ceil((right - left) / side), math.ceil((top - bottom) / side)
    return epsg, [(left + c * side, top - r * side) for r in range(rows) for c in range(cols)]


def patch_bounds_lonlat(epsg: int, corner: tuple[float, float], patch_size: int) -> tuple[float, ...]:
    """Lon/lat bounds of one patch."""
    from rasterio.warp import transform_bounds

    side = patch_size * RESOLUTION_M
    return transform_bounds(f"EPSG:{epsg}", "EPSG:4326", corner[0], corner[1] - side,
                            corner[0] + side, corner[1])


def covers(item_bbox: list[float], bounds: tuple[float, ...]) -> bool:
    """Whether an item's lon/lat bbox contains ``bounds``."""
    return (item_bbox[0] <= bounds[0] and item_bbox[1] <= bounds[1]
            and item_bbox[2] >= bounds[2] and item_bbox[3] >= bounds[3])


def pick_item(items: list[Any], bounds: tuple[float, ...], max_cloud: float | None) -> Any | None:
    """The most recent item covering ``bounds`` (under ``max_cloud`` % cloud when given)."""
    candidates = [item for item in items if covers(item.bbox, bounds) and (
        max_cloud is None or item.properties.get("eo:cloud_cover", 100.0) <= max_cloud)]
    return max(candidates, key=lambda item: item.datetime, default=None)


def season_name(modality: str, item: Any) -> str:
    """A v1-style season folder name that starts (S2) or continues (S1) with the acquisition time."""
    if modality == "s1_grd":
        return item.id if item.id.startswith("S1") else f"S1X_IW_GRDH_1SDV_{item.datetime:%Y%m%dT%H%M%S}"
    props = item.properties
    parts = (props.get("mgrs:utm_zone"), props.get("mgrs:latitude_band"), props.get("mgrs:grid_square"))
    tile = props.get("s2:mgrs_tile") or ("".join(map(str, parts)) if all(parts) else "")
    stamp = f"{item.datetime:%Y%m%dT%H%M%S}"
    return f"{stamp}_{stamp}_T{tile}" if tile else f"{stamp}_{stamp}"


def to_db(values: np.ndarray, units: str) -> np.ndarray:
    """S1 backscatter in dB from linear power, amplitude or dB; zeros (no data) become NaN."""
    values = values.astype(np.float32)
    if units == "db":
        return values
    factor = {"linear": 10.0, "amplitude": 20.0}.get(units)
    if factor is None:
        raise CromssError(f"data.real.stac.s1_units must be linear, amplitude or db, not {units!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values > 0, factor * np.log10(values), np.nan).astype(np.float32)


def read_on_grid(href: str, epsg: int, corner: tuple[float, float], patch_size: int) -> np.ndarray:
    """One band of a (cloud-optimised) GeoTIFF resampled onto the patch grid."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin
    from rasterio.vrt import WarpedVRT

    transform = from_origin(corner[0], corner[1], RESOLUTION_M, RESOLUTION_M)
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), rasterio.open(href) as src, WarpedVRT(
            src, crs=f"EPSG:{epsg}", transform=transform, width=patch_size, height=patch_size,
            resampling=Resampling.bilinear) as vrt:
        return vrt.read(1)


def write_band(path: Path, pixels: np.ndarray, epsg: int, corner: tuple[float, float]) -> None:
    """A single-band GeoTIFF on the patch grid."""
    import rasterio
    from rasterio.transform import from_origin

    profile = {"driver": "GTiff", "count": 1, "dtype": pixels.dtype.name, "height": pixels.shape[0],
               "width": pixels.shape[1], "crs": f"EPSG:{epsg}",
               "transform": from_origin(corner[0], corner[1], RESOLUTION_M, RESOLUTION_M)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels, 1)


def sas_signer(section: dict[str, Any]):  # noqa: ANN201 - href, collection -> href
    """How this catalog's assets are read: Planetary Computer hrefs signed with a collection SAS
    token, Copernicus Data Space ones with a bearer token given to GDAL, others as they are."""
    tokens: dict[str, str] = {}
    if section.get("token_url"):
        os.environ["GDAL_HTTP_HEADERS"] = f"Authorization: Bearer {access_token(section)}"

    def sign(href: str, collection: str) -> str:
        template = section.get("sas_url")
        if not template or not urlsplit(href).netloc.endswith(SAS_HOST_SUFFIX):
            return href
        if collection not in tokens:
            answer = requests.get(template.format(collection=collection), timeout=60)
            answer.raise_for_status()
            tokens[collection] = answer.json()["token"]
        return f"{href}{'&' if '?' in href else '?'}{tokens[collection]}"
    return sign


def access_token(section: dict[str, Any]) -> str:
    """A bearer token for a catalog with an OpenID token endpoint (``token_url``):
    ``CDSE_ACCESS_TOKEN``, or the password grant with ``CDSE_USERNAME`` and ``CDSE_PASSWORD``."""
    if token := os.environ.get("CDSE_ACCESS_TOKEN"):
        return token
    user, password = os.environ.get("CDSE_USERNAME"), os.environ.get("CDSE_PASSWORD")
    if not (user and password):
        raise CromssError(f"{section['url']}: its assets need an account; set CDSE_USERNAME and "
                          "CDSE_PASSWORD (or CDSE_ACCESS_TOKEN)")
    answer = requests.post(section["token_url"], timeout=60, data={
        "grant_type": "password", "client_id": section["client_id"],
        "username": user, "password": password})
    if answer.status_code in (400, 401, 403):
        raise CromssError(f"{section['token_url']}: login refused (HTTP {answer.status_code}); "
                          "check CDSE_USERNAME and CDSE_PASSWORD")
    answer.raise_for_status()
    return answer.json()["access_token"]


def open_client(section: dict[str, Any]):  # noqa: ANN201 - pystac_client.Client
    """The STAC API client; a clear message when pystac-client is missing."""
    try:
        from pystac_client import Client
    except ImportError as err:
        raise CromssError("the STAC source needs pystac-client: pip install 'cromss[stac]'") from err
    return Client.open(section["url"])


def search_season(client: Any, collection: str, bbox: list[float], window: list[str]) -> list[Any]:
    """All items of ``collection`` over ``bbox`` acquired within the season ``window``."""
    search = client.search(collections=[collection], bbox=bbox, datetime=f"{window[0]}/{window[1]}")
    return list(search.items())


def s1_bands(item: Any, keys: dict[str, str]) -> dict[str, ItemBand]:
    """VV and VH of an S1 item by their asset keys (any case)."""
    assets = {key.lower(): asset for key, asset in item.assets.items()}
    return {band: ItemBand(band, key, assets[key.lower()].href)
            for band, key in keys.items() if key.lower() in assets}


def write_patch(out: Path, location: int, scenes: dict[str, list[Any]], section: dict[str, Any],
                epsg: int, corner: tuple[float, float], sign) -> dict[str, Any]:  # noqa: ANN001
    """Write every band of every season of one patch; return its manifest entry."""
    size = section["patch_size"]
    entry: dict[str, Any] = {"id": location, "epsg": epsg, "origin": list(corner), "size": size,
                             "missing_bands": []}
    for modality, bands in (("s2_l1c", S2_BANDS), ("s1_grd", S1_BANDS)):
        with atomic_path(out / "ssl4eo_s12" / FOLDERS[modality] / f"{location:07d}") as tmp:
            names = []
            for item in scenes[modality]:
                season = tmp / season_name(modality, item)
                season.mkdir(parents=True)
                names.append(season.name)
                found = (item_bands(item.to_dict()) if modality == "s2_l1c"
                         else s1_bands(item, section["s1_assets"]))
                for band in bands:
                    if band not in found:
                        entry["missing_bands"].append(f"{item.id}:{band}")
                        pixels = np.zeros((size, size), np.uint16)
                    else:
                        pixels = read_on_grid(sign(found[band].href, item.collection_id), epsg,
                                              corner, size)
                        pixels = (to_db(pixels, section["s1_units"]) if modality == "s1_grd" else
                                  np.clip(np.rint(pixels * found[band].scale + found[band].offset),
                                          0, np.iinfo(np.uint16).max).astype(np.uint16))
                    write_band(season / f"{band}.tif", pixels, epsg, corner)
            entry[modality] = names
    return entry


def fetch_stac(real: Real, out: Path, *, progress: bool = True) -> Path:
    """Search, cut and write the patches of the configured area; return the manifest path."""
    given = real.stac
    provider = given["provider"]
    if provider not in PROVIDERS:
        raise CromssError(f"data.real.stac.provider must be one of {sorted(PROVIDERS)}, not {provider!r}")
    if "bbox" not in given:
        raise CromssError("data.real.stac.bbox is required: [lon_min, lat_min, lon_max, lat_max]")
    section = {**PROVIDERS[provider], "seasons": [list(s) for s in DEFAULT_SEASONS], **given}
    client = open_client(section)
    sign = sas_signer(section)
    epsg, corners = patch_grid(section["bbox"], section["patch_size"])
    found = {modality: [search_season(client, section[f"{key}_collection"], section["bbox"], window)
                        for window in section["seasons"]]
             for modality, key in (("s2_l1c", "s2"), ("s1_grd", "s1"))}
    manifest = []
    for n, corner in enumerate(corners):
        bounds = patch_bounds_lonlat(epsg, corner, section["patch_size"])
        scenes = {modality: [pick_item(items, bounds, section["max_cloud"] if modality == "s2_l1c" else None)
                             for items in per_season] for modality, per_season in found.items()}
        if any(item is None for chosen in scenes.values() for item in chosen):
            log.warning("patch %d: no scene in every season; skipped", n)
            continue
        manifest.append(write_patch(out, section["first_id"] + n, scenes, section, epsg, corner, sign))
    if not manifest:
        raise CromssError(f"no patch of bbox {section['bbox']} has S1 and S2 scenes in all "
                          f"{len(section['seasons'])} seasons; widen the season windows or max_cloud")
    target = out / "stac_patches.json"
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps({"provider": provider, "created": datetime.now().isoformat(),
                                   "patches": manifest}, indent=1))
    return target
