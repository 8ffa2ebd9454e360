"""SSL4EO-S12 v1 as its archives unpack: ``s1/`` and ``s2c/`` with one GeoTIFF per band.

Tree (``zhu-xlab/SSL4EO-S12``'s downloader, torchgeo's ``tests/data/ssl4eo/s12`` fixture)::

    <root>/s2c/<id:07d>/<S2 product id>/{B1,...,B8A,...,B12}.tif   uint16, native resolution
    <root>/s1/<id:07d>/<S1 product id>/{VV,VH}.tif                 float32 dB, 10 m

Quirks, from ``save_geotiff`` of ``src/download_data/ssl4eo_s12_downloader.py``:

- the 10 / 20 / 60 m bands have 264 / 132 / 44 px over the same patch, and every band is written
  with origin = first pixel centre - (its own pixel) / 2, so the 20 m and 60 m origins lie 0.5 and
  2.5 ten-metre pixels from B2's. Each band is resampled onto B2's grid by its transform
  (bilinear), accepted within one of its own pixels.
- CRS ``+proj=latlong`` (EPSG:4326); season folders are the products' ``system:index``; S1
  seasons have other names than S2 ones and are paired with them by acquisition date.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cromss.constants import S1_BANDS, S2_BANDS, S2_NATIVE_RESOLUTION_M
from cromss.data.layouts.rasters import Grid, bands_onto, read_bands, s2_digital_numbers, write_tif
from cromss.errors import CromssError

if TYPE_CHECKING:
    from affine import Affine

S2_DIR, S1_DIR = "s2c", "s1"
"""Folder names the v1 archives ``s2_l1c.tar.gz`` and ``s1_grd.tar.gz`` unpack to."""
FOLDERS = {"s2_l1c": S2_DIR, "s1_grd": S1_DIR}
S2_NAME = re.compile(r"^(\d{8}T\d{6})_\d{8}T\d{6}_T\d{2}[A-Z]{3}$")
S1_NAME = re.compile(r"^S1[ABCD]_IW_GRDH_1S[DS][VH]_(\d{8}T\d{6})_\d{8}T\d{6}_.+$")
DOWNLOADER_CRS = "+proj=latlong"


def acquisition_time(folder: str) -> dt.datetime:
    """Acquisition start of an S2 L1C or S1 GRD season folder name."""
    match = S2_NAME.match(folder) or S1_NAME.match(folder)
    if match is None:
        raise CromssError(f"{folder}: not an S1 GRD or S2 L1C product name")
    return dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%S")


def pair_by_date(s2_seasons: Sequence[str], s1_seasons: Sequence[str], where: Path) -> list[str]:
    """For each S2 season the S1 season closest in time (each S1 season used once)."""
    if len(s1_seasons) < len(s2_seasons):
        raise FileNotFoundError(f"{where}: {len(s1_seasons)} S1 season folders for "
                                f"{len(s2_seasons)} S2 seasons (a season folder is missing)")
    s1_times = {name: acquisition_time(name) for name in s1_seasons}
    paired: list[str] = []
    for s2_name in s2_seasons:
        s2_time = acquisition_time(s2_name)
        paired.append(min((n for n in s1_times if n not in paired),
                          key=lambda n: abs(s1_times[n] - s2_time)))
    return paired


def location_dir(root: Path, modality_dir: str, location: str) -> Path:
    """``<root>/<s1|s2c>/<id>``, accepting the downloader's 6-digit as well as 7-digit ids."""
    base = Path(root) / modality_dir
    if not base.is_dir():
        raise FileNotFoundError(
            f"{base}: folder not found; an SSL4EO-S12 v1 root holds {S1_DIR}/ and {S2_DIR}/ "
            f"(as s1.tar.gz / s2_l1c.tar.gz unpack), each with <id:07d>/<season>/<band>.tif")
    for name in (f"{int(location):07d}", f"{int(location):06d}"):
        if (base / name).is_dir():
            return base / name
    return base / f"{int(location):07d}"


def read_s2_seasons(folders: Sequence[Path]) -> list[tuple[np.ndarray, Grid, Path]]:
    """The 13 L1C band files of each season folder on the grid of its B2 (10 m); bands on the
    same grid are resampled together, across seasons too."""
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: season folder missing")
    paths = [folder / f"{band}.tif" for folder in folders for band in S2_BANDS]
    read = read_bands(paths)
    b2 = S2_BANDS.index("B2")
    grids = [(read[i + b2][1], paths[i + b2]) for i in range(0, len(paths), len(S2_BANDS))]
    targets = [grid for grid in grids for _ in S2_BANDS]
    bands = [s2_digital_numbers(band[None], path)[0]
             for band, path in zip(bands_onto(read, paths, targets), paths, strict=True)]
    return [(np.stack(bands[i * len(S2_BANDS):(i + 1) * len(S2_BANDS)]), grid, reference)
            for i, (grid, reference) in enumerate(grids)]


def read_s1_seasons(folders: Sequence[Path], grid: Grid, references: Sequence[Path]
                    ) -> list[np.ndarray]:
    """VV and VH of each season folder on the S2 grid (bilinear, NaN kept as no data), the
    S2 file of each season named in errors."""
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: season folder missing")
    paths = [folder / f"{band}.tif" for folder in folders for band in S1_BANDS]
    targets = [(grid, reference) for reference in references for _ in S1_BANDS]
    bands = bands_onto(read_bands(paths), paths, targets)
    return [np.stack(bands[i:i + len(S1_BANDS)]).astype(np.float32)
            for i in range(0, len(bands), len(S1_BANDS))]


def season_dirs(location: Path) -> list[str]:
    """The season folder names of one location."""
    return sorted(p.name for p in location.iterdir() if p.is_dir())


# --- writer (the downloader's conventions; for fixtures and the synthetic world) -----------------

def downloader_transform(first_centre: tuple[float, float], extent: tuple[float, float],
                         shape: tuple[int, int]) -> Affine:
    """``save_geotiff``: origin = coords[0] -/+ res/2, res = extent / pixels, per band."""
    from affine import Affine
    xres, yres = extent[0] / shape[1], extent[1] / shape[0]
    return (Affine.translation(first_centre[0] - xres / 2, first_centre[1] + yres / 2)
            @ Affine.scale(xres, -yres))


def write_season(folder: Path, bands: dict[str, np.ndarray], first_centre: tuple[float, float],
                 extent: tuple[float, float]) -> None:
    """One season folder as the downloader writes it: each band on its own transform."""
    for band, values in bands.items():
        write_tif(folder / f"{band}.tif", values, DOWNLOADER_CRS,
                  downloader_transform(first_centre, extent, values.shape))


def coarse_band(values: np.ndarray, band: str) -> np.ndarray:
    """A 10 m band at its native resolution, each coarse pixel centred as the downloader puts it.

    The downloader gives coarse pixel j the centre first_centre + j * (coarse pixel), so the
    block j averages the 10 m pixels around that centre (not the block starting at its corner).
    """
    from scipy import ndimage
    factor = S2_NATIVE_RESOLUTION_M[band] // 10
    if factor == 1:
        return values
    shifted = ndimage.shift(values, (factor - 1) / 2, order=1, mode="nearest")
    h, w = values.shape
    return shifted.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
