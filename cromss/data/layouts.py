"""Readers of the real on-disk layouts (``shared/data.md``); the synthetic world uses the same ones.

Every reader returns :class:`Sample` objects on the 10 m grid of the sample's S2 image, after
checking that S1, S2 and the labels share that grid (CRS and bounds; shapes after resampling the
20 m / 60 m bands and the NoLDO labels). Any problem raises ``ValueError`` or
``FileNotFoundError`` naming the file.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cromss.constants import S1_BANDS, S2_BANDS
from cromss.data.store import s2_digital_numbers

S2_NAME = re.compile(r"^(\d{8}T\d{6})_\d{8}T\d{6}_T\d{2}[A-Z]{3}$")
S1_NAME = re.compile(r"^S1[ABCD]_IW_GRDH_1S[DS][VH]_(\d{8}T\d{6})_\d{8}T\d{6}_.+$")
SEASONS = 4


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


def read_raster(path: Path, *, count: int | None = None, out_shape: tuple[int, int] | None = None,
                nearest: bool = False) -> tuple[np.ndarray, Grid]:
    """Read all bands of a GeoTIFF as ``(bands, H, W)``, optionally resampled to ``out_shape``.

    Resampling is bilinear for images and nearest for labels (``nearest=True``); nodata becomes NaN
    in float rasters.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with rasterio.open(path) as src:
            if src.driver != "GTiff":
                raise ValueError(f"{path}: not a GeoTIFF (driver {src.driver})")
            if count is not None and src.count != count:
                raise ValueError(f"{path}: {src.count} bands, expected {count}")
            if src.crs is None or src.crs.to_epsg() is None:
                raise ValueError(f"{path}: no EPSG coordinate reference system")
            shape = out_shape or (src.height, src.width)
            data = src.read(out_shape=(src.count, *shape),
                            resampling=Resampling.nearest if nearest else Resampling.bilinear)
            if src.nodata is not None and data.dtype.kind == "f":
                data[data == src.nodata] = np.nan
            transform = src.transform @ src.transform.scale(src.width / shape[1],
                                                             src.height / shape[0])
            grid = Grid(epsg=int(src.crs.to_epsg()), transform=tuple(transform.to_gdal()),
                        shape=tuple(shape), bounds=tuple(src.bounds))
    except RasterioError as err:
        raise ValueError(f"{path}: not a readable GeoTIFF ({err})") from err
    return data, grid


def check_same_grid(reference: Grid, other: Grid, reference_path: Path, other_path: Path) -> None:
    """Raise unless ``other`` has the reference's CRS, shape and bounds (to half a pixel)."""
    if other.epsg != reference.epsg:
        raise ValueError(f"{other_path}: CRS EPSG:{other.epsg} differs from EPSG:{reference.epsg} "
                         f"of {reference_path}")
    if other.shape != reference.shape:
        raise ValueError(f"{other_path}: shape {other.shape} differs from {reference.shape} "
                         f"of {reference_path}")
    if not np.allclose(other.bounds, reference.bounds, rtol=0, atol=reference.pixel / 2):
        raise ValueError(f"{other_path}: bounds {other.bounds} differ from {reference.bounds} "
                         f"of {reference_path}")


def check_codes(label: np.ndarray, valid: Sequence[int], path: Path) -> None:
    """Raise if ``label`` holds values outside the class codes ``valid``."""
    bad = np.setdiff1d(np.unique(label), np.asarray(valid))
    if bad.size:
        raise ValueError(f"{path}: label values {bad.tolist()} outside the class codes "
                         f"{min(valid)}..{max(valid)}")


# --- SSL4EO-S12 v1 and NoLDO ---------------------------------------------------------------------

def acquisition_time(folder: str) -> dt.datetime:
    """Acquisition start of an S2 L1C or S1 GRD season folder name."""
    match = S2_NAME.match(folder) or S1_NAME.match(folder)
    if match is None:
        raise ValueError(f"{folder}: not an S1 GRD or S2 L1C product name")
    return dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%S")


def pair_by_date(s2_seasons: Sequence[str], s1_seasons: Sequence[str], where: Path) -> list[str]:
    """For each S2 season the S1 season closest in time (each S1 season used once)."""
    if len(s1_seasons) < len(s2_seasons):
        raise FileNotFoundError(f"{where}: {len(s1_seasons)} S1 season folders for "
                                f"{len(s2_seasons)} S2 seasons (a season folder is missing)")
    s1_times = {name: acquisition_time(name) for name in s1_seasons}
    paired = []
    for s2_name in s2_seasons:
        s2_time = acquisition_time(s2_name)
        best = min((n for n in s1_times if n not in paired),
                   key=lambda n: abs(s1_times[n] - s2_time))
        paired.append(best)
    return paired


def read_noldo_ids(csv_path: Path) -> list[tuple[str, list[str]]]:
    """Rows of ``dw_complete_ids.csv`` (no header): location id and its four S2 season names."""
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: file not found")
    rows = []
    with open(csv_path, newline="") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            if len(row) != 1 + SEASONS or not row[0].strip().isdigit():
                raise ValueError(f"{csv_path}:{line}: expected 'id,sub1,sub2,sub3,sub4', got {row}")
            rows.append((f"{int(row[0]):07d}", [s.strip() for s in row[1:]]))
    return rows


def read_s2_season(folder: Path) -> tuple[np.ndarray, Grid, Path]:
    """The 13 L1C band files of one season folder on the grid of B2 (10 m), bilinear."""
    reference = folder / "B2.tif"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: season folder missing")
    _, grid = read_raster(reference, count=1)
    bands = []
    for band in S2_BANDS:
        path = folder / f"{band}.tif"
        data, band_grid = read_raster(path, count=1, out_shape=grid.shape)
        check_same_grid(grid, band_grid, reference, path)
        bands.append(s2_digital_numbers(data, path)[0])
    return np.stack(bands), grid, reference


def read_s1_season(folder: Path, grid: Grid, reference: Path) -> np.ndarray:
    """VV and VH of one season folder, checked against the S2 grid."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: season folder missing")
    bands = []
    for band in S1_BANDS:
        path = folder / f"{band}.tif"
        data, band_grid = read_raster(path, count=1)
        check_same_grid(grid, band_grid, reference, path)
        bands.append(data[0].astype(np.float32))
    return np.stack(bands)


def read_label(path: Path, grid: Grid, reference: Path) -> np.ndarray:
    """A single-band class map resampled (nearest) onto ``grid`` and checked against it."""
    data, label_grid = read_raster(path, count=1, out_shape=grid.shape, nearest=True)
    check_same_grid(grid, label_grid, reference, path)
    return data[0]


def read_nol_location(raw: Path, location: str, seasons: Sequence[str]) -> Sample:
    """One NoLDO location: S1, S2 and noisy DW labels (and the truth if the tree has one)."""
    s2_root = raw / "ssl4eo_s12" / "s2_l1c" / location
    s1_root = raw / "ssl4eo_s12" / "s1_grd" / location
    for root in (s2_root, s1_root):
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: location {location} is listed in "
                                    "dw_complete_ids.csv but has no images")
    s1_seasons = pair_by_date(seasons, sorted(p.name for p in s1_root.iterdir() if p.is_dir()),
                              s1_root)
    label_root = raw / "noldo" / "ssl4eo_s12_nol" / location
    truth_root = raw / "truth" / location
    s1, s2, labels, truths, label_paths = [], [], [], [], []
    grid = None
    for s2_name, s1_name in zip(seasons, s1_seasons):
        image, season_grid, reference = read_s2_season(s2_root / s2_name)
        if grid is not None:
            check_same_grid(grid, season_grid, s2_root, reference)
        grid = season_grid
        s2.append(image)
        s1.append(read_s1_season(s1_root / s1_name, grid, reference))
        label_paths.append(label_root / s2_name / "label.tif")
        labels.append(read_label(label_paths[-1], grid, reference))
        if (raw / "truth").is_dir():
            truths.append(read_label(truth_root / s2_name / "label.tif", grid, reference))
    times = np.array([np.datetime64(acquisition_time(n), "s") for n in seasons])
    return Sample(sample_id=location, s1=np.stack(s1), s2=np.stack(s2), label=np.stack(labels),
                  grid=grid, time=times, truth=np.stack(truths) if truths else None,
                  label_paths=tuple(label_paths))


def iter_nol(raw: Path) -> tuple[int, Iterator[Sample]]:
    """The number of NoLDO locations and an iterator over them, in ``dw_complete_ids.csv`` order."""
    rows = read_noldo_ids(raw / "noldo" / "ssl4eo_s12_nol" / "dw_complete_ids.csv")
    return len(rows), (read_nol_location(raw, loc, seasons) for loc, seasons in rows)


# --- single-season tiles: SSL4EO-S12@DW/@OSM and DFC2020 ---------------------------------------

def read_tile(sample_id: str, s1_path: Path, s2_path: Path, label_path: Path) -> Sample:
    """One single-season tile from its S1 (2 bands), S2 (13 bands) and label files."""
    s2, grid = read_raster(s2_path, count=len(S2_BANDS))
    s2 = s2_digital_numbers(s2, s2_path)
    s1, s1_grid = read_raster(s1_path, count=len(S1_BANDS))
    check_same_grid(grid, s1_grid, s2_path, s1_path)
    label, label_grid = read_raster(label_path, count=1)
    check_same_grid(grid, label_grid, s2_path, label_path)
    return Sample(sample_id=sample_id, s1=s1[None].astype(np.float32), s2=s2[None],
                  label=label, grid=grid, time=np.array([np.datetime64("NaT", "s")]),
                  label_paths=(label_path,))


def _require(paths: dict[str, Path]) -> dict[str, Path]:
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)}: file not found")
    return paths


def _listing(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    return sorted(p.name for p in folder.glob("*.tif"))


def iter_tiles(split_dir: Path, task: str) -> tuple[int, Iterator[Sample]]:
    """SSL4EO-S12@DW/@OSM tiles of one split folder (``dw_train`` ...), paired by file name."""
    folders = {"s1": split_dir / "image_s1", "s2": split_dir / "image_s2",
               "label": split_dir / f"label_{task}"}
    names = _listing(folders["s2"])

    def samples() -> Iterator[Sample]:
        for name in names:
            paths = _require({kind: folder / name for kind, folder in folders.items()})
            yield read_tile(Path(name).stem, paths["s1"], paths["s2"], paths["label"])

    return len(names), samples()


def dfc_patch_number(name: str) -> int:
    """``ROIs0000_test_s2_0_p12.tif`` -> 12."""
    match = re.search(r"_p(\d+)\.tif$", name)
    if match is None:
        raise ValueError(f"{name}: not a DFC2020 patch file name")
    return int(match.group(1))


def iter_dfc(root: Path, split: str) -> tuple[int, Iterator[Sample]]:
    """DFC2020 patches of ``ROIs0000_validation`` (split ``validation``) or ``ROIs0000_test``."""
    sub = "validation" if split == "validation" else "0"
    base = root / f"ROIs0000_{split}"
    folders = {kind: base / f"{kind}_{sub}" for kind in ("s1", "s2", "dfc")}
    s2_names = sorted(_listing(folders["s2"]), key=dfc_patch_number)
    names = {kind: [n.replace("_s2_", f"_{kind}_") for n in s2_names] for kind in folders}

    def samples() -> Iterator[Sample]:
        for i, s2_name in enumerate(s2_names):
            paths = _require({kind: folders[kind] / names[kind][i] for kind in folders})
            yield read_tile(f"p{dfc_patch_number(s2_name)}", paths["s1"], paths["s2"], paths["dfc"])

    return len(s2_names), samples()
