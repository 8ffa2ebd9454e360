"""GeoTIFF reading onto a reference grid, shared by every layout.

Every reader puts its bands on the 10 m grid of the sample's S2 image (B2 for SSL4EO-S12 v1, the
S2 file for tiles) by each file's own transform, with rasterio's ``reproject``: bilinear for
images, nearest for class maps. A file is accepted when its CRS equals the grid's and its bounds
agree with the grid's to within one of its own pixels (the SSL4EO-S12 downloader shifts the 20 m /
60 m bands by half their pixel, see :mod:`cromss.data.layouts.ssl4eo_s12`); anything else is
refused with the file named. S2 values become L1C digital numbers (:func:`s2_digital_numbers`),
whatever type the producer wrote them in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cromss.constants import S2_DN_MAX
from cromss.errors import CromssError

LABEL_FILL = 255
"""Raw label value of pixels a label file does not cover (remapped to the ignore index)."""
S2_REFLECTANCE_MAX = 2.0
"""Float S2 whose finite values all lie in [0, 2] is top-of-atmosphere reflectance."""
S2_QUANTIFICATION = 10000
"""L1C digital number = reflectance x 10000 (the products' QUANTIFICATION_VALUE)."""


@dataclass(frozen=True)
class Grid:
    """Where a raster lies: EPSG code, GDAL geotransform, shape and bounds."""

    epsg: int
    transform: tuple[float, ...]
    shape: tuple[int, int]
    bounds: tuple[float, float, float, float]

    @property
    def pixel(self) -> float:
        return abs(self.transform[1])

    @property
    def affine(self):  # noqa: ANN201 - affine.Affine
        from affine import Affine
        return Affine.from_gdal(*self.transform)


@dataclass(frozen=True)
class Sample:
    """One sample on one grid: s1 (T, 2, H, W), s2 (T, 13, H, W), raw label codes (T, H, W)."""

    sample_id: str
    s1: np.ndarray
    s2: np.ndarray
    label: np.ndarray
    grid: Grid
    time: np.ndarray  # (T,) datetime64[s], NaT where unknown
    truth: np.ndarray | None = None
    label_paths: tuple[Path, ...] = ()
    s2_filled: tuple[str, ...] = ()  # S2 bands the file lacks, filled with the band mean


def _open(path: Path, count: int | Sequence[int] | None) -> tuple[Any, int]:
    """An open rasterio dataset of the GeoTIFF ``path`` and its EPSG code; CromssError naming
    the file unless it has ``count`` bands (any number: None) and an EPSG CRS."""
    import rasterio
    from rasterio.env import hasenv
    from rasterio.errors import RasterioError

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file not found")
    # rasterio.open enters a GDAL environment of its own for each file; inside one (ingest
    # keeps one for all files) that nested one is a third of the CPU of reading a band file
    opener = getattr(rasterio.open, "__wrapped__", rasterio.open) if hasenv() else rasterio.open
    try:
        src = opener(path)
    except RasterioError as err:
        raise CromssError(f"{path}: not a readable GeoTIFF ({err})") from err
    counts = (count,) if isinstance(count, int) else count
    problem, epsg = "", None
    if src.driver != "GTiff":
        problem = f"not a GeoTIFF (driver {src.driver})"
    elif counts is not None and src.count not in counts:
        problem = f"{src.count} bands, expected {' or '.join(map(str, counts))}"
    else:
        crs = src.crs
        epsg = None if crs is None else crs.to_epsg()
        problem = "no EPSG coordinate reference system"
    if epsg is None:  # a problem was found
        src.close()
        raise CromssError(f"{path}: {problem}")
    return src, epsg


def read_raster(path: Path, *, count: int | Sequence[int] | None = None
                ) -> tuple[np.ndarray, Grid]:
    """All bands of a GeoTIFF as ``(bands, H, W)`` and its grid; nodata becomes NaN in floats."""
    from rasterio.errors import RasterioError

    src, epsg = _open(path, count)
    with src:
        try:
            data = src.read()
        except RasterioError as err:
            raise CromssError(f"{path}: not a readable GeoTIFF ({err})") from err
        if src.nodata is not None and data.dtype.kind == "f":
            data[data == src.nodata] = np.nan
        return data, Grid(epsg=epsg, transform=tuple(src.transform.to_gdal()),
                          shape=(src.height, src.width), bounds=tuple(src.bounds))


def _close(a: Sequence[float], b: Sequence[float], tolerance: float) -> bool:
    """Every coordinate of ``a`` within ``tolerance`` of ``b`` (few numbers: no numpy)."""
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def check_on_grid(grid: Grid, other: Grid, grid_path: Path, other_path: Path) -> None:
    """Raise unless ``other`` has the CRS of ``grid`` and its bounds to within one own pixel."""
    if other.epsg != grid.epsg:
        raise CromssError(f"{other_path}: CRS EPSG:{other.epsg} differs from EPSG:{grid.epsg} "
                          f"of {grid_path}")
    tolerance = max(other.pixel, abs(other.transform[5])) * (1 + 1e-6)
    if not _close(other.bounds, grid.bounds, tolerance):
        raise CromssError(f"{other_path}: bounds {other.bounds} differ from {grid.bounds} of "
                          f"{grid_path} by more than one pixel of the file ({tolerance:.6g})")


def resample_onto(data: np.ndarray, source: Grid, grid: Grid, *, nearest: bool = False,
                  fill: float = 0) -> np.ndarray:
    """``data`` (bands, h, w) on ``source`` -> (bands, H, W) on ``grid`` by the transforms.

    The source is padded by one edge pixel first, so that a grid whose edge lies within one source
    pixel of the source's edge is fully covered; what lies farther out gets ``fill``. Between
    north-up grids of one CRS, nearest neighbour (the NoLDO labels) and bilinear of integer bands
    (the 20 m / 60 m S2 bands) are computed in numpy with GDAL's arithmetic, step for step, so
    the values are GDAL's bit for bit (a bilinear value that falls half-way between two digital
    numbers rounds as GDAL's does); everything else goes through GDAL's warper.
    """
    if source.epsg == grid.epsg and source.shape == grid.shape and _close(
            source.transform, grid.transform, grid.pixel * 1e-6):
        return data
    padded = np.pad(data, ((0, 0), (1, 1), (1, 1)), mode="edge")
    # floats warp as float64 (NaN = no data); integers as they are, into float64 for bilinear
    work = padded.astype(np.float64) if data.dtype.kind == "f" and not nearest else padded
    aligned = source.epsg == grid.epsg and _axis_aligned(source) and _axis_aligned(grid)
    out = None
    if aligned and nearest:
        out = nearest_axis_aligned(work, source.transform, grid, fill)
    elif aligned and work.dtype.kind in "ui":
        out = bilinear_axis_aligned(work, source.transform, grid)
    if out is None:
        out = _gdal_warp(work, source, grid, nearest, fill)
    if data.dtype.kind in "ui" and out.dtype.kind == "f":
        # bilinear weights are convex: values stay within the source's range and the fill
        out = np.rint(out, out=out)
    return out.astype(data.dtype)


def _axis_aligned(grid: Grid) -> bool:
    return grid.transform[2] == 0 and grid.transform[4] == 0


def _source_pixels(count: int, start: float, step: float, src_start: float, src_step: float,
                   src_count: int) -> np.ndarray:
    """Along one axis: the source pixel each output pixel centre falls in (-1 where outside)."""
    position = (start + (np.arange(count) + 0.5) * step - src_start) / src_step
    index = np.floor(position).astype(np.int64)
    return np.where((index >= 0) & (index < src_count), index, -1)


def nearest_axis_aligned(work: np.ndarray, source_transform: tuple[float, ...], grid: Grid,
                         fill: float) -> np.ndarray:
    """GDAL's nearest-neighbour warp between two north-up grids of one CRS: each output pixel
    takes the source pixel its centre falls in (``work`` padded by one pixel), ``fill`` outside."""
    x0, dx, _, y0, _, dy = source_transform
    rows = _source_pixels(grid.shape[0], grid.transform[3], grid.transform[5], y0 - dy, dy,
                          work.shape[-2])
    columns = _source_pixels(grid.shape[1], grid.transform[0], grid.transform[1], x0 - dx, dx,
                             work.shape[-1])
    out = work[:, rows[:, None], columns[None, :]]
    out[:, (rows[:, None] < 0) | (columns[None, :] < 0)] = fill
    return out


WARP_MEMORY = 32 << 20
"""Bytes of float64 source and output up to which GDAL warps in one chunk, the case that
:func:`bilinear_axis_aligned` reproduces (GDAL's default limit is 64 MB)."""


def _approx_columns(count: int, x0: float, dx: float, inverse: tuple[float, float]) -> np.ndarray:
    """Source columns of the output pixel centres as GDAL's approximate transformer gives them
    for a row: the first and last exactly, the others interpolated linearly between."""
    ends = [inverse[0] + (x0 + centre * dx) * inverse[1] for centre in (0.5, count - 0.5)]
    centres = np.arange(count) + 0.5
    return ends[0] + (ends[1] - ends[0]) / (count - 1.0) * (centres - 0.5)


def bilinear_axis_aligned(work: np.ndarray, source_transform: tuple[float, ...], grid: Grid
                          ) -> np.ndarray | None:
    """GDAL's bilinear warp of integer bands ``work`` (the source padded by one pixel) between
    two north-up grids of one CRS, as float64, bit for bit: the source pixel of each output pixel
    through the inverse geotransform (columns through the approximate transformer), the weights,
    sums and division of GDAL's ``GWKBilinearResample4Sample``. None where GDAL would do
    otherwise: a source finer than the grid (a wider kernel), an output pixel without its four
    source pixels, a row of up to 5 pixels (warped exactly), a warp GDAL splits into chunks."""
    bands, height, width = work.shape
    if grid.shape[1] <= 5 or 8 * bands * (height * width + grid.shape[0] * grid.shape[1]) > (
            WARP_MEMORY):
        return None
    from affine import Affine

    # the padded source's geotransform, composed as _gdal_warp passes it to GDAL
    x0, dx, _, y0, _, dy = (Affine.from_gdal(*source_transform)
                            @ Affine.translation(-1, -1)).to_gdal()
    columns = _approx_columns(grid.shape[1], grid.transform[0], grid.transform[1],
                              (-x0 / dx, 1.0 / dx))
    rows = -y0 / dy + (grid.transform[3] + (np.arange(grid.shape[0]) + 0.5)
                       * grid.transform[5]) * (1.0 / dy)
    ix, iy = np.floor(columns - 0.5).astype(np.int64), np.floor(rows - 0.5).astype(np.int64)
    finer = abs(dx) < abs(grid.transform[1]) or abs(dy) < abs(grid.transform[5])
    if finer or ix.min() < 0 or ix.max() + 1 >= width or iy.min() < 0 or iy.max() + 1 >= height:
        return None
    rx, ry = 1.5 - (columns - ix), (1.5 - (rows - iy))[:, None]
    weights = (rx * ry, (1.0 - rx) * ry, rx * (1.0 - ry), (1.0 - rx) * (1.0 - ry))
    columns_at = [np.take(work, ix + step, axis=2) for step in (0, 1)]  # (bands, h, W) each
    out = np.multiply(np.take(columns_at[0], iy, axis=1), weights[0])  # GDAL: 0 + the first term
    term = np.empty_like(out)
    for weight, (row, column) in zip(weights[1:], ((0, 1), (1, 0), (1, 1)), strict=True):
        np.multiply(np.take(columns_at[column], iy + row, axis=1), weight, out=term)
        out += term
    divisor = ((weights[0] + weights[1]) + weights[2]) + weights[3]
    inexact = divisor != 1.0
    out[:, inexact] /= divisor[inexact]
    return out


def _gdal_warp(work: np.ndarray, source: Grid, grid: Grid, nearest: bool, fill: float
               ) -> np.ndarray:
    """rasterio's ``reproject`` of ``work`` (the source padded by one pixel) onto ``grid``; bands
    holding NaN (no data) one at a time, since a multi-band warp voids a pixel missing in any band."""
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    src_nodata = np.nan if work.dtype.kind == "f" and not nearest else None
    split = src_nodata is not None and len(work) > 1 and np.isnan(work).any()
    groups = [work[i:i + 1] for i in range(len(work))] if split else [work]
    out_type = work.dtype if nearest else np.float64
    out = []
    for bands in groups:
        warped = np.full((bands.shape[0], *grid.shape), fill, dtype=out_type)
        reproject(bands, warped, src_transform=source.affine @ Affine.translation(-1, -1),
                  src_crs=CRS.from_epsg(source.epsg), dst_transform=grid.affine,
                  dst_crs=CRS.from_epsg(grid.epsg), src_nodata=src_nodata, dst_nodata=fill,
                  resampling=Resampling.nearest if nearest else Resampling.bilinear)
        out.append(warped)
    return np.concatenate(out)


def read_bands(paths: Sequence[Path]) -> list[tuple[np.ndarray, Grid]]:
    """Single-band GeoTIFFs, each as ``(1, H, W)`` with its grid."""
    return [read_raster(path, count=1) for path in paths]


def bands_onto(read: Sequence[tuple[np.ndarray, Grid]], paths: Sequence[Path],
               targets: Sequence[tuple[Grid, Path]], *, fill: float = 0) -> list[np.ndarray]:
    """Bands read by :func:`read_bands` from ``paths``, each checked against its target
    ``(grid, path of the grid's file)`` and resampled onto it (bilinear), in order. Bands that
    share their grid, target and type are resampled in one call."""
    groups: dict[tuple, list[int]] = {}
    for i, ((data, source), path, (grid, grid_path)) in enumerate(
            zip(read, paths, targets, strict=True)):
        check_on_grid(grid, source, grid_path, path)
        groups.setdefault((source, grid, data.dtype.str), []).append(i)
    out: list[np.ndarray] = [np.empty(0)] * len(read)
    for (source, grid, _), members in groups.items():
        stack = resample_onto(np.concatenate([read[i][0] for i in members]), source, grid,
                              fill=fill)
        for i, band in zip(members, stack, strict=True):
            out[i] = band
    return out


def read_label_onto(path: Path, grid: Grid, grid_path: Path, *, min_overlap: float = 0.5,
                    band: int = 0) -> np.ndarray:
    """A class map on its own grid -> ``grid`` (nearest); uncovered pixels get ``LABEL_FILL``.

    Labels may lie on another grid or CRS than the image (the NoLDO labels are exported on their
    own); a label covering less than ``min_overlap`` of the patch is refused.
    """
    from rasterio.crs import CRS
    from rasterio.warp import transform_bounds

    data, source = read_raster(path, count=None)
    left, bottom, right, top = transform_bounds(CRS.from_epsg(source.epsg),
                                                CRS.from_epsg(grid.epsg), *source.bounds)
    g_left, g_bottom, g_right, g_top = grid.bounds
    width = max(0.0, min(right, g_right) - max(left, g_left))
    height = max(0.0, min(top, g_top) - max(bottom, g_bottom))
    share = width * height / ((g_right - g_left) * (g_top - g_bottom))
    if share < min_overlap:
        raise CromssError(f"{path}: the label covers {share:.0%} of the patch of {grid_path} "
                          f"(bounds {source.bounds} in EPSG:{source.epsg}); it belongs elsewhere")
    return resample_onto(data[band:band + 1], source, grid, nearest=True, fill=LABEL_FILL)[0]


def check_codes(label: np.ndarray, valid: Sequence[int], path: Path) -> None:
    """Raise if ``label`` holds values outside the class codes ``valid`` (and the fill)."""
    bad = np.setdiff1d(np.unique(label), np.asarray([*valid, LABEL_FILL]))
    if bad.size:
        raise CromssError(f"{path}: label values {bad.tolist()} outside the class codes "
                          f"{min(valid)}..{max(valid)}")


def write_tif(path: Path, data: np.ndarray, crs: str | int, transform: Any,
              nodata: float | None = None, **profile: Any) -> None:
    """Write a (bands, H, W) or (H, W) array as a GeoTIFF."""
    import rasterio
    data = data[None] if data.ndim == 2 else data
    path.parent.mkdir(parents=True, exist_ok=True)
    crs = f"EPSG:{crs}" if isinstance(crs, int) else crs
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2],
                       count=data.shape[0], dtype=data.dtype, crs=crs, transform=transform,
                       nodata=nodata, **profile) as dst:
        dst.write(data)


def s2_digital_numbers(data: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """The S2 bands ``(band, y, x)`` read from ``path`` as L1C digital numbers (uint16 from
    integer files, as they are; float32 with NaN where there is no data from float files);
    ValueError naming the file for data that cannot be L1C.

    - integers: negative values are refused (a signed type holding a nodata code or wrapped
      values is not L1C; write uint16 with nodata 0, or float with NaN)
    - floats: NaN (and the raster's nodata) = no data, flagged per pixel in ``s2_nodata``; finite
      values all in [0, 2] are reflectance and become ``round(reflectance x 10000)``; otherwise
      they are digital numbers; negative values or values above 65535 are refused
    - a band without a single finite value is refused (nothing to learn from, not a cloud)
    """
    data = np.asarray(data)
    if data.dtype.kind not in "uif":
        raise CromssError(f"{path}: S2 of type {data.dtype} is not numeric")
    if data.dtype == np.uint16:
        return data
    values = data.astype(np.float32)
    finite = np.isfinite(values)
    empty = [i for i in range(values.shape[0]) if not finite[i].any()]
    if empty:
        raise CromssError(f"{path}: S2 band(s) {empty} (0-based) hold no finite value")
    low, high = float(values[finite].min()), float(values[finite].max())
    if low < 0:
        raise CromssError(f"{path}: S2 holds negative values (min {low:g}, type {data.dtype}); "
                          "L1C digital numbers are 0..65535 (reflectance 0..2 for floats)")
    if data.dtype.kind == "f" and high <= S2_REFLECTANCE_MAX:
        return np.rint(values * S2_QUANTIFICATION)
    if high > S2_DN_MAX:
        raise CromssError(f"{path}: S2 values up to {high:g} exceed 65535, the uint16 range of L1C")
    return values if data.dtype.kind == "f" else data.astype(np.uint16)
