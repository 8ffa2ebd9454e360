"""The bands of a scene in its GeoTIFFs, read window by window on one 10 m grid.

A scene is given as files and/or folders (searched recursively for ``.tif``, ``.tiff`` and
``.jp2``). A band is recognised by

- the file name of a single-band file: ``..._B02.jp2``, ``B8A.tif``, ``T32UPU_..._B11_20m.tif``
  (S2) or ``..._VV.tif``, ``vh.tif`` (S1);
- the band descriptions of a multi-band file (``B1`` ... ``B12``, ``VV``, ``VH``);
- failing those, the band count of a multi-band file: 13 = the L1C bands in order, 2 = VV, VH.

The grid is the one of the finest band the model needs (10 m); every other band must be in the same
CRS and cover that grid, and is resampled onto it on the fly (bilinear, through a rasterio
``WarpedVRT``), so 20 m and 60 m band files need no preparation. Windows are read as they are
needed; the scene is never in memory as a whole. Nodata is the file's nodata value, NaN, and for
S2 digital numbers without a declared value the L1C ``NO_DATA`` value 0.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from cromss.constants import S1_BANDS, S2_BANDS
from cromss.errors import CromssError

log = logging.getLogger(__name__)

MODEL_RESOLUTION_M = 10.0
RESOLUTION_TOLERANCE = 0.05
S2_NAME = re.compile(r"(?:^|[_.-])B(0?[1-9]|1[0-2]|8A)(?:_\d+m)?$", re.IGNORECASE)
S1_NAME = re.compile(r"(?:^|[_.-])(VV|VH)$", re.IGNORECASE)
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")
S2_L1C_NODATA = 0
METRES_PER_DEGREE = 111_320.0


@dataclass(frozen=True)
class Band:
    """One band of the scene: its file, its 1-based index there and its modality; ``scale`` and
    ``offset`` map its values to the model's units (declared by a STAC item, see
    :mod:`cromss.sources.stac_bands`)."""

    name: str
    modality: str
    path: str
    index: int = 1
    scale: float = 1.0
    offset: float = 0.0


def band_from_name(text: str) -> tuple[str, str] | None:
    """(modality, band) named by a file stem or a band description, or None."""
    if match := S2_NAME.search(text):
        code = match.group(1).upper()
        return "s2", "B8A" if code == "8A" else f"B{int(code)}"
    if match := S1_NAME.search(text):
        return "s1", match.group(1).upper()
    return None


def _file_bands(path: str, count: int, descriptions: tuple[str | None, ...]) -> list[Band]:
    if count == 1:
        named = band_from_name(Path(path).stem) or band_from_name(descriptions[0] or "")
        return [Band(named[1], named[0], path)] if named else []
    described = [band_from_name(d or "") for d in descriptions]
    if all(described):
        return [Band(b, m, path, i) for i, (m, b) in enumerate(filter(None, described), start=1)]
    by_count = {len(S2_BANDS): ("s2", S2_BANDS), len(S1_BANDS): ("s1", S1_BANDS)}
    if count not in by_count:
        raise CromssError(f"{path}: {count} bands without band descriptions: cannot tell which "
                          f"they are (13 = S2 L1C B1..B12, 2 = S1 VV VH, or name them in the "
                          f"band descriptions)")
    modality, names = by_count[count]
    return [Band(b, modality, path, i) for i, b in enumerate(names, start=1)]


def raster_files(paths: Iterable[str | Path]) -> list[tuple[str, bool]]:
    """(file, given explicitly) for every file and every raster under every folder."""
    found = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found += [(str(p), False) for p in sorted(path.rglob("*"))
                      if p.suffix.lower() in RASTER_SUFFIXES and p.is_file()]
        elif path.is_file():
            found.append((str(path), True))
        else:
            raise FileNotFoundError(f"{path}: no such scene file or folder")
    return found


def find_bands(paths: Iterable[str | Path]) -> dict[str, Band]:
    """Band name -> where it is, over all files; a band found twice is an error."""
    bands: dict[str, Band] = {}
    for path, explicit in raster_files(paths):
        try:
            with rasterio.open(path) as src:
                found = _file_bands(path, src.count, src.descriptions)
        except rasterio.errors.RasterioError as err:
            raise CromssError(f"{path}: not a readable raster ({err})") from err
        if not found:
            if explicit:
                raise CromssError(f"{path}: cannot tell which band this is (name it like "
                                  f"..._B02.tif or ..._VV.tif, or set its band description)")
            log.debug("%s: not a band file, skipped", path)
        for band in found:
            if band.name in bands:
                raise CromssError(f"band {band.name} is in both {bands[band.name].path} and "
                                  f"{band.path}")
            bands[band.name] = band
    return bands


def pixel_metres(src: Any) -> float:
    """The pixel height in metres (geographic CRSs at the scene's centre latitude)."""
    size = abs(src.transform.e)
    if src.crs is not None and src.crs.is_geographic:
        return size * METRES_PER_DEGREE
    return size * (src.crs.linear_units_factor[1] if src.crs is not None else 1.0)


Grid = tuple[Any, Any, int, int]
"""(CRS, affine transform, width, height) of the grid a scene is read on."""


def _info(path: str) -> tuple:
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), rasterio.open(path) as src:
        if src.crs is None:
            raise CromssError(f"{path}: no coordinate reference system")
        return (src.crs, src.transform, src.width, src.height, src.bounds, pixel_metres(src),
                src.nodata, src.dtypes[0])


class SceneReader:
    """Windows of the bands a model needs, on the grid of the finest of them.

    ``needs``: modality -> band names in the model's order. ``bands`` and ``grid`` replace the
    search of ``paths`` and the finest band's grid (an area from STAC). Use as a context manager.
    """

    def __init__(self, paths: Iterable[str | Path], needs: dict[str, list[str]],
                 s1_units: str = "db", bands: dict[str, Band] | None = None,
                 grid: Grid | None = None) -> None:
        self.paths = list(paths)
        self.needs = needs
        self.s1_units = s1_units
        bands = find_bands(self.paths) if bands is None else bands
        missing = [b for m in needs for b in needs[m] if b not in bands]
        if missing:
            seen = ", ".join(sorted(bands)) or "none"
            where = ", ".join(map(str, self.paths)) or "from STAC"
            raise CromssError(f"scene {where}: the model needs the bands {', '.join(missing)}, "
                              f"which are missing (bands found: {seen})")
        self.bands = {b: bands[b] for m in needs for b in needs[m]}
        self._infos = {path: _info(path) for path in {band.path for band in self.bands.values()}}
        if grid is None:
            self._check_grid()
        else:  # a grid chosen for the area (STAC): every band is warped onto it
            self.reference: str | None = None
            self.crs, self.transform, self.width, self.height = grid
        self._open: dict[str, Any] = {}
        self._stack: contextlib.ExitStack | None = None

    def _check_grid(self) -> None:
        infos = self._infos
        self.reference = min(infos, key=lambda p: (infos[p][5], p))
        crs, transform, width, height, bounds, metres = infos[self.reference][:6]
        if abs(metres / MODEL_RESOLUTION_M - 1) > RESOLUTION_TOLERANCE:
            raise CromssError(f"{self.reference}: {metres:g} m pixels; the model was trained on "
                              f"{MODEL_RESOLUTION_M:g} m pixels (resample the scene to 10 m)")
        for path, (other_crs, _, _, _, other_bounds, other_metres, *_) in infos.items():
            if other_crs != crs:
                raise CromssError(f"{path}: CRS {other_crs.to_string()} differs from "
                                  f"{crs.to_string()} of {self.reference} (reproject it first)")
            slack = other_metres / metres * abs(transform.a) / 2
            if (other_bounds.left > bounds.left + slack or other_bounds.top < bounds.top - slack
                    or other_bounds.right < bounds.right - slack
                    or other_bounds.bottom > bounds.bottom + slack):
                raise CromssError(f"{path}: bounds {tuple(other_bounds)} do not cover the grid "
                                  f"{tuple(bounds)} of {self.reference}")
        self.crs, self.transform, self.width, self.height = crs, transform, width, height

    def nodata(self, path: str, modality: str) -> float | None:
        nodata, dtype = self._infos[path][6], self._infos[path][7]
        if nodata is None and modality == "s2" and np.dtype(dtype).kind in "ui":
            return S2_L1C_NODATA
        return nodata

    def __enter__(self) -> SceneReader:
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"))
        for band in self.bands.values():
            if band.path in self._open:
                continue
            src = self._stack.enter_context(rasterio.open(band.path))
            if band.path != self.reference and (src.crs, src.transform, src.width, src.height) != (
                    self.crs, self.transform, self.width, self.height):
                nodata = self.nodata(band.path, band.modality)
                src = self._stack.enter_context(WarpedVRT(
                    src, crs=self.crs, transform=self.transform, width=self.width,
                    height=self.height, resampling=Resampling.bilinear, src_nodata=nodata,
                    nodata=nodata))
            self._open[band.path] = src
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stack is not None:
            self._stack.close()
        self._open, self._stack = {}, None

    def read(self, window: Window) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Raw bands per modality (bands, h, w) float32, NaN where nodata, and the valid mask
        (every band of every modality has data)."""
        if not self._open:
            raise RuntimeError("SceneReader.read outside its `with` block")
        raw, valid = {}, np.ones((int(window.height), int(window.width)), bool)
        for modality, names in self.needs.items():
            planes = []
            for name in names:
                band = self.bands[name]
                data = self._open[band.path].read(band.index, window=window).astype(np.float32)
                nodata = self.nodata(band.path, modality)
                if nodata is not None and not math.isnan(nodata):
                    data[data == nodata] = np.nan
                if (band.scale, band.offset) != (1.0, 0.0):  # digital numbers are never negative
                    data = np.maximum(data * band.scale + band.offset, 0.0)
                planes.append(data)
            stack = np.stack(planes)
            if modality == "s1" and self.s1_units != "db":
                from cromss.sources.stac import to_db

                stack = to_db(stack, self.s1_units)
            valid &= np.isfinite(stack).all(axis=0)
            raw[modality] = stack
        return raw, valid
