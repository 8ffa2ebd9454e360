"""A seeded synthetic world, written in the published on-disk layouts with their quirks.

The world itself (land cover, spectra, backscatter) is :mod:`cromss.data.scene`, the label noise
:mod:`cromss.data.label_noise`; both are re-exported here. This module names the products and
writes each dataset through the writer of its layout (:mod:`cromss.data.layouts`), which follows
the producers' conventions: the SSL4EO-S12 downloader's per-band origins, NoLDO labels on their
own grid and ``dw_complete_ids.csv`` in either form (even seeds headerless, odd seeds with a
header), ``s1_``/``s2_``/``dw_``/``osm_`` tile names with 12-band S2 tiles, DFC2020 patch names.

Every sample draws from its own generator ``default_rng([seed, stream, index])``, so a sample does
not change when the number of samples does.
"""

from __future__ import annotations

import datetime as dt
import os
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage  # noqa: F401 - re-exported for the world's users

from cromss.atomic import atomic_path
from cromss.config import section_schema, with_defaults
from cromss.constants import S2_BANDS, S2_NATIVE_RESOLUTION_M  # noqa: F401
from cromss.data.label_noise import (DW_CONFUSIONS, DW_EXPERT_CLOUD,  # noqa: F401
                                     DW_EXPERT_UNLABELED, SEASONAL_CONFUSIONS, confused_labels,
                                     expert_dw_codes, noisy_dw_labels, osm_codes, warp_labels)
from cromss.data.layouts import dfc2020, noldo, ssl4eo_s12
from cromss.data.layouts.rasters import write_tif
from cromss.data.scene import *  # noqa: F403 - the world's public names
from cromss.data.scene import (DW_SNOW, FINE_TO_DFC, SEMI_ARID, TEMPERATE, Climate, land_cover,
                               observe)
from cromss.errors import CromssError

if TYPE_CHECKING:
    from affine import Affine

SEASON_REFERENCE_DATES = (dt.date(2020, 12, 21), dt.date(2021, 3, 20), dt.date(2021, 6, 21),
                          dt.date(2021, 9, 22))
SSL4EO_NUM_IDS = 251079
STREAMS = ("nol", "dw_train", "dw_test", "osm_train", "osm_test", "dfc2020_train", "dfc2020_test")


# --- names, dates, grids ------------------------------------------------------------------------

def season_dates(rng: np.random.Generator) -> list[dt.datetime]:
    """Four acquisition times: the reference dates with one offset per location (+-15 days)."""
    offset = int(rng.integers(-15, 16))
    return [dt.datetime.combine(ref + dt.timedelta(days=offset - int(rng.integers(0, 15))),
                                dt.time(int(rng.integers(9, 12)), int(rng.integers(60)),
                                        int(rng.integers(60))))
            for ref in SEASON_REFERENCE_DATES]


def mgrs_tile(rng: np.random.Generator, lat: float, lon: float) -> str:
    """A Sentinel-2 tile id such as ``T15QXA`` for a position."""
    zone = int((lon + 180) // 6) + 1
    band = "CDEFGHJKLMNPQRSTUVWX"[int(np.clip((lat + 80) // 8, 0, 19))]
    letters = "".join(rng.choice(list(string.ascii_uppercase.replace("I", "").replace("O", "")), 2))
    return f"T{zone:02d}{band}{letters}"


def s2_product_name(rng: np.random.Generator, when: dt.datetime, tile: str) -> str:
    """``20200323T162931_20200323T163750_T15QXA``: datatake start, granule start, tile."""
    granule = when + dt.timedelta(seconds=int(rng.integers(60, 900)))
    return f"{when:%Y%m%dT%H%M%S}_{granule:%Y%m%dT%H%M%S}_{tile}"


def s1_product_name(rng: np.random.Generator, s2_time: dt.datetime) -> str:
    """``S1A_IW_GRDH_1SDV_<start>_<stop>_<orbit>_<datatake>_<crc>`` a few days off the S2 date."""
    start = dt.datetime.combine(s2_time.date() + dt.timedelta(days=int(rng.integers(-6, 7))),
                                dt.time(int(rng.choice([5, 17])), int(rng.integers(60)),
                                        int(rng.integers(60))))
    stop = start + dt.timedelta(seconds=25)
    return (f"S1{rng.choice(['A', 'B'])}_IW_GRDH_1SDV_{start:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_"
            f"{int(rng.integers(1, 45000)):06d}_{int(rng.integers(0, 2**24)):06X}_"
            f"{int(rng.integers(0, 2**16)):04X}")


def geographic_transform(lat: float, lon: float, size: int, pixel_m: float) -> Affine:
    """EPSG:4326 geotransform of a ``size`` x ``size`` patch centred on (lat, lon)."""
    from rasterio.transform import from_origin
    dy = pixel_m / 111_320
    dx = dy / np.cos(np.radians(lat))
    return from_origin(lon - size / 2 * dx, lat + size / 2 * dy, dx, dy)


def utm_grid(rng: np.random.Generator, climate: Climate) -> tuple[int, Any]:
    """A UTM EPSG code and a 10 m geotransform somewhere in the climate's region."""
    from rasterio.transform import from_origin
    lat, lon = rng.uniform(*climate.lat), rng.uniform(*climate.lon)
    zone = int((lon + 180) // 6) + 1
    epsg = (32600 if lat >= 0 else 32700) + zone
    north = lat * 110_574 + (0 if lat >= 0 else 10_000_000)
    return epsg, from_origin(round(rng.uniform(200_000, 800_000), -1), round(north, -1), 10, 10)


def _rng(settings: dict[str, Any], stream: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(settings["seed"]), STREAMS.index(stream), index])


def _scene(rng: np.random.Generator, size: int,
           climate: Climate) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    fine, parcel_index, elevation = land_cover(rng, size, climate)
    return fine, parcel_index, elevation, rng.random() < climate.p_cold_winter

# --- the datasets -------------------------------------------------------------------------------

def write_ssl4eo_location(out: Path, settings: dict[str, Any], index: int, location_id: int
                          ) -> list[str]:
    """One SSL4EO-S12 v1 location (S1 and S2 trees) with its noisy and true DW labels.

    Returns the four S2 season folder names (a row of ``dw_complete_ids.csv``).
    """
    rng = _rng(settings, "nol", index)
    size = int(settings["pretrain_size"])
    if size % 6:
        raise CromssError(f"pretrain_size must be a multiple of 6 (60 m bands), not {size}")
    lat, lon = rng.uniform(*TEMPERATE.lat), rng.uniform(*TEMPERATE.lon)
    tile = mgrs_tile(rng, lat, lon)
    fine, parcel_index, elevation, cold = _scene(rng, size, TEMPERATE)
    grid = geographic_transform(lat, lon, size, 10.0)
    first_centre = grid * (0.5, 0.5)
    extent = (size * grid.a, size * -grid.e)
    loc = f"{location_id:07d}"
    s2_names = []
    for season, when in enumerate(season_dates(rng)):
        scene = observe(rng, fine, parcel_index, elevation, season, TEMPERATE, cold,
                        float(settings["cloud_fraction"]))
        s2_name = s2_product_name(rng, when, tile)
        s2_names.append(s2_name)
        bands = {band: np.round(ssl4eo_s12.coarse_band(values, band)).astype(np.uint16)
                 for band, values in zip(S2_BANDS, scene.s2)}
        ssl4eo_s12.write_season(out / "ssl4eo_s12" / ssl4eo_s12.S2_DIR / loc / s2_name, bands,
                                first_centre, extent)
        ssl4eo_s12.write_season(
            out / "ssl4eo_s12" / ssl4eo_s12.S1_DIR / loc / s1_product_name(rng, when),
            dict(zip(("VV", "VH"), scene.s1)), first_centre, extent)
        rate = float(np.clip(settings["label_noise"] * rng.uniform(0.5, 1.5), 0, 0.9))
        noisy = noisy_dw_labels(rng, scene.dw_truth, scene.cloud, season, rate)
        for tree, label in (("noldo/" + noldo.NOL_DIR, noisy), ("truth", scene.dw_truth)):
            write_label_off_grid(out / tree / loc / s2_name / "label.tif", label, grid)
    return s2_names


def write_label_off_grid(path: Path, label: np.ndarray, grid) -> None:  # noqa: ANN001
    """A DW label exported on its own grid: one pixel larger, origin 0.3 px off the image's."""
    from affine import Affine
    own = grid @ Affine.translation(0.3, 0.3)
    write_tif(path, np.pad(label, ((0, 1), (0, 1)), mode="edge"), "EPSG:4326", own)


def write_tile(out: Path, settings: dict[str, Any], stream: str, index: int) -> None:
    """One SSL4EO-S12@DW/@OSM tile or one DFC2020 patch (a single season)."""
    rng = _rng(settings, stream, index)
    is_dfc = stream.startswith("dfc2020")
    climate = SEMI_ARID if is_dfc else TEMPERATE
    size = int(settings["dfc_size" if is_dfc else "tile_size"])
    fine, parcel_index, elevation, cold = _scene(rng, size, climate)
    season = int(rng.integers(4))
    cloud_fraction = 0.0 if is_dfc else float(settings["cloud_fraction"])
    scene = observe(rng, fine, parcel_index, elevation, season, climate, cold, cloud_fraction)
    epsg, transform = utm_grid(rng, climate)
    s2 = np.round(scene.s2).astype(np.uint16)
    task, split = stream.split("_")
    if is_dfc:
        label = np.where(scene.dw_truth == DW_SNOW, 8, FINE_TO_DFC[fine]).astype(np.uint8)
        dfc2020.write_patch(out / "dfc2020", "validation" if split == "train" else "test", index,
                            scene.s1, s2, label, epsg, transform)
        return
    label = (expert_dw_codes(rng, scene.dw_truth, scene.cloud) if task == "dw"
             else osm_codes(rng, fine, parcel_index))
    lat, lon = rng.uniform(*climate.lat), rng.uniform(*climate.lon)
    when = SEASON_REFERENCE_DATES[season] + dt.timedelta(days=int(rng.integers(-15, 16)))
    key = noldo.tile_key(lon, lat, f"{when:%Y%m%d}", decimal="p" if split == "test" else ".")
    noldo.write_tile(out / "noldo" / f"ssl4eo_s12_{task}" / stream, task, key, scene.s1, s2,
                     label, epsg, transform)


def resolve_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The ``data.synthetic`` settings (given alone or inside a whole config) completed with the
    schema's defaults (per key, also inside ``tiles``)."""
    if "data" in settings:
        settings = settings["data"].get("synthetic") or {}
    unknown = set(settings) - set(section_schema("synthetic")["properties"])
    unknown |= {f"tiles.{k}" for k in set(settings.get("tiles") or ()) - set(STREAMS[1:])}
    if unknown:
        raise CromssError(f"unknown data.synthetic settings: {', '.join(sorted(unknown))}")
    return with_defaults(settings, "synthetic")

def synthesise(out: str | os.PathLike, settings: dict[str, Any]) -> Path:
    """Write the whole synthetic world under ``out`` (replaced atomically)."""
    settings = resolve_settings(settings)
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        id_rng = np.random.default_rng([int(settings["seed"]), len(STREAMS)])
        count = int(settings["pretrain_locations"])
        ids = np.sort(id_rng.choice(SSL4EO_NUM_IDS, count, replace=False))
        rows = [(int(location_id), write_ssl4eo_location(tmp, settings, index, int(location_id)))
                for index, location_id in enumerate(ids)]
        form = ("headerless", "header")[int(settings["seed"]) % 2]
        noldo.write_ids(tmp / "noldo" / noldo.NOL_DIR / noldo.IDS_CSV, rows, form)
        for stream in STREAMS[1:]:
            for index in range(int(settings["tiles"][stream])):
                write_tile(tmp, settings, stream, index)
    return out
