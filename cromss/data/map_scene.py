"""A large synthetic scene to map: one acquisition of the synthetic world, far larger than a tile.

The scene is drawn by the same world as the training data (:mod:`cromss.data.synthetic`: land
cover, phenology, S2 endmember mixing, S1 backscatter with speckle) and written as a user would
have it:

- ``S2/<tile>_<time>_B01.tif`` ... ``_B12.tif``: the 13 L1C bands as separate files at their
  native 10 / 20 / 60 m resolution (named like the ``IMG_DATA`` files of an L1C product; GeoTIFF
  instead of JPEG 2000), uint16 digital numbers, in a UTM zone;
- ``S1/<product>_VV.tif``, ``_VH.tif``: terrain-corrected backscatter in dB on the 10 m grid,
  float32, NaN without data;
- ``truth/{dw,osm,dfc2020}.tif``: the true map of each task's classes (class indices, 255 =
  no class), for the error of a map against it.

To stay fast at thousands of pixels the land cover is drawn at ``1 / land_cover_scale`` of the
size and enlarged (parcels, lakes and towns are that much larger); the sensors then see every
10 m pixel with its own texture and speckle. S2 is computed in strips of rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cromss.atomic import atomic_path
from cromss.constants import DFC_REMAP, NOISY_DW_REMAP, OSM_REMAP, S2_BANDS, S2_NATIVE_RESOLUTION_M
from cromss.data import synthetic as world  # the world's scene functions and the writers
from cromss.errors import CromssError
from cromss.settings import Scene

STRIP_ROWS = 256


def check_scene(scene: Scene) -> None:
    """Refuse a scene whose side is not a whole number of land-cover cells."""
    if scene.size < 32 or scene.size % scene.land_cover_scale:
        raise CromssError(f"scene size {scene.size} must be at least 32 px and a multiple of "
                          f"land_cover_scale {scene.land_cover_scale}")


def _enlarge(array: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(array, scale, axis=0), scale, axis=1)


def _native(band: np.ndarray, factor: int) -> np.ndarray:
    """A 10 m band at ``factor`` x coarser pixels; the last row and column of coarse pixels
    reach past the 10 m grid where its size is not a multiple (they average the edge)."""
    pad = -band.shape[0] % factor, -band.shape[1] % factor
    padded = np.pad(band, ((0, pad[0]), (0, pad[1])), mode="edge")
    h, w = padded.shape  # an L1C coarse pixel covers the factor x factor 10 m pixels at its corner
    blocks = padded.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    return np.round(blocks).astype(np.uint16)


def _class_indices(codes: np.ndarray, remap: dict[int, int]) -> np.ndarray:
    table = np.full(256, 255, np.uint8)
    table[list(remap)] = list(remap.values())
    return table[codes]


def _s2_strips(rng: np.random.Generator, fine: np.ndarray, vf: np.ndarray, snow: np.ndarray,
               cloud: np.ndarray) -> np.ndarray:
    """S2 reflectance (13, H, W) uint16, computed ``STRIP_ROWS`` rows at a time."""
    out = np.empty((len(S2_BANDS), *fine.shape), np.uint16)
    for top in range(0, fine.shape[0], STRIP_ROWS):
        rows = slice(top, top + STRIP_ROWS)
        out[:, rows] = np.round(world.s2_reflectance(rng, fine[rows], vf[rows], snow[rows],
                                                     cloud[rows], world.TEMPERATE))
    return out


def write_scene(out: str | os.PathLike, scene: Scene) -> Path:
    """Write one synthetic scene under ``out`` (replaced atomically); returns ``out``."""
    check_scene(scene)
    size, scale, season = scene.size, scene.land_cover_scale, scene.season
    rng = np.random.default_rng([scene.seed, len(world.STREAMS) + 1])
    climate = world.TEMPERATE
    fine, parcel_index, elevation = (_enlarge(a, scale)
                                     for a in world.land_cover(rng, size // scale, climate))
    when = world.season_dates(rng)[season]
    epsg, transform = world.utm_grid(rng, climate)
    tile = f"{epsg % 100:02d}" + world.mgrs_tile(rng, float(np.mean(climate.lat)),
                                                       float(np.mean(climate.lon)))[3:]  # its zone
    snow = world.snow_cover(rng, elevation, season, climate, False) & (fine != world.RIVER)
    dw = np.where(snow, world.DW_SNOW, world.FINE_TO_DW[fine]).astype(np.uint8)
    vf = world.vegetation_fraction(rng, fine, parcel_index, season, climate)
    cloud = world.cloud_opacity(rng, size, float(scene.cloud_fraction))
    s2 = _s2_strips(rng, fine, vf, snow, cloud)
    s1 = world.s1_backscatter(rng, fine, vf, snow, elevation, season, climate)
    out = Path(out)
    with atomic_path(out) as tmp:
        stamp = f"{when:%Y%m%dT%H%M%S}"
        for band, values in zip(S2_BANDS, s2):
            factor = S2_NATIVE_RESOLUTION_M[band] // 10
            coarse = _native(values, factor)
            name = f"T{tile}_{stamp}_B{band[1:]:0>2}.tif" if band != "B8A" else \
                f"T{tile}_{stamp}_B8A.tif"
            world.write_tif(tmp / "S2" / name, coarse, epsg,
                            transform @ transform.scale(factor, factor))
        product = world.s1_product_name(rng, when)
        for band, values in zip(("VV", "VH"), s1):
            world.write_tif(tmp / "S1" / f"{product}_{band}.tif", values, epsg, transform,
                            nodata=float("nan"))
        truths = {"dw": _class_indices(dw, NOISY_DW_REMAP),
                  "osm": _class_indices(world.FINE_TO_OSM[fine], OSM_REMAP),
                  "dfc2020": _class_indices(np.where(snow, 8, world.FINE_TO_DFC[fine]),
                                            DFC_REMAP)}
        for task, truth in truths.items():
            world.write_tif(tmp / "truth" / f"{task}.tif", truth, epsg, transform, nodata=255)
    return out
