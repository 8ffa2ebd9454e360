"""NoLDO-S12 (``vikki23/NoLDO-S12``) as its zips unpack: the NoL labels and the @DW/@OSM tiles.

Tree::

    <root>/ssl4eo_s12_nol/dw_complete_ids.csv
    <root>/ssl4eo_s12_nol/<id:07d>/<S2 season>/label.tif            DW class 0..8, own grid
    <root>/ssl4eo_s12_{dw,osm}/{dw,osm}_{train,test}/image_s1/s1_<key>.tif   2 bands, float32 dB
                                                    /image_s2/s2_<key>.tif   12 or 13 bands, uint16
                                                    /label_dw/dw_<key>.tif  or label_osm/osm_<key>.tif

Quirks, from the CromSS data-preparation scripts (``zhu-xlab/CromSS``, ``data_prepare/``):

- ``dw_complete_ids.csv``: ``write_images_to_lmdb.py`` reads it without a header as
  ``ids, sub1..sub4``; ``write_labels_to_lmdb.py`` reads it with a header and uses the columns
  ``ids``, ``ind``, ``sub1..sub4``. Both are accepted: by column name when there is a header, and
  without one as 5 (``ids, sub1..sub4``) or 6 (``ind, ids, sub1..sub4``, as that script's comment
  names them) columns.
- the labels are not on the 264 px image grid (the scripts resize them, bicubic); here they are
  read by their own transform and put on the S2 grid by nearest neighbour.
- tiles are paired by the key after the prefix (``read_dw_data_to_lmdb.py``: ``f[3:]``); keys look
  like ``-0.0520777954_32.9493499204-20190816`` (``p`` for the decimal point in some test tiles).
- the S2 tiles hold 12 bands (that script prints ``(510, 510, 12) uint16``; the reference's band
  table ``BANDS[12]`` is L1C without B10): B10 is filled with its mean and recorded in the store.
  A DW label with more than one band holds the class map in its second band (``img[1]``).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from cromss.constants import S1_BANDS, S2_BANDS, S2_MEAN
from cromss.data.layouts import ssl4eo_s12
from cromss.data.layouts.rasters import (Sample, check_on_grid, read_label_onto, read_raster,
                                         resample_onto, s2_digital_numbers, write_tif)
from cromss.errors import CromssError

SEASONS = 4
NOL_DIR = "ssl4eo_s12_nol"
IDS_CSV = "dw_complete_ids.csv"
SEASON_COLUMNS = tuple(f"sub{i}" for i in range(1, SEASONS + 1))
TILE_PREFIX = {"s1": "s1_", "s2": "s2_", "dw": "dw_", "osm": "osm_"}
S2_TILE_BANDS = tuple(b for b in S2_BANDS if b != "B10")  # the reference's BANDS[12]


# --- dw_complete_ids.csv -------------------------------------------------------------------------

def _location(value: str, where: str) -> str:
    try:
        return f"{int(float(value)):07d}"
    except ValueError:
        raise CromssError(f"{where}: location id {value!r} is not an integer") from None


def read_ids(csv_path: Path) -> list[tuple[str, list[str]]]:
    """Rows of ``dw_complete_ids.csv`` in either published form: (location id, four S2 seasons)."""
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: file not found")
    with open(csv_path, newline="") as handle:
        rows = [[cell.strip() for cell in row] for row in csv.reader(handle) if any(row)]
    if not rows:
        return []
    if "ids" in rows[0]:
        header = rows[0]
        missing = [c for c in ("ids", *SEASON_COLUMNS) if c not in header]
        if missing:
            raise CromssError(f"{csv_path}: header {header} lacks the columns {missing} "
                              "(expected ids, sub1..sub4, optionally ind)")
        columns = [header.index(c) for c in ("ids", *SEASON_COLUMNS)]
        body, first_line = rows[1:], 2
    elif len(rows[0]) in (1 + SEASONS, 2 + SEASONS) and rows[0][0].replace(".", "").isdigit():
        offset = len(rows[0]) - SEASONS - 1  # 6 columns: ind, ids, sub1..sub4
        columns = [offset, *range(offset + 1, offset + 1 + SEASONS)]
        body, first_line = rows, 1
    else:
        raise CromssError(f"{csv_path}: first row {rows[0]} is neither a header naming ids and "
                          "sub1..sub4 nor a data row of 5 (ids, sub1..sub4) or 6 "
                          "(ind, ids, sub1..sub4) columns")
    out = []
    for line, row in enumerate(body, start=first_line):
        if len(row) <= max(columns):
            raise CromssError(f"{csv_path}:{line}: {len(row)} columns, expected "
                              f"{max(columns) + 1}: {row}")
        out.append((_location(row[columns[0]], f"{csv_path}:{line}"),
                    [row[c] for c in columns[1:]]))
    return out


def write_ids(csv_path: Path, rows: Sequence[tuple[int, Sequence[str]]], form: str) -> None:
    """``dw_complete_ids.csv`` in the headerless (write_images) or header (write_labels) form."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        if form == "header":
            writer.writerow(["ind", "ids", *SEASON_COLUMNS])
            writer.writerows([i, loc, *seasons] for i, (loc, seasons) in enumerate(rows))
        elif form == "headerless":
            writer.writerows([loc, *seasons] for loc, seasons in rows)
        else:
            raise CromssError(f"dw_complete_ids.csv form must be header or headerless, not {form!r}")


# --- SSL4EO-S12@NoL: images from SSL4EO-S12 v1, noisy labels from NoLDO -------------------------

def read_nol_location(ssl4eo_root: Path, noldo_root: Path, location: str,
                      seasons: Sequence[str], truth_root: Path | None = None) -> Sample:
    """One NoL location: S1 and S2 from SSL4EO-S12 v1, noisy DW labels (and truth, if given)."""
    s2_root = ssl4eo_s12.location_dir(ssl4eo_root, ssl4eo_s12.S2_DIR, location)
    s1_root = ssl4eo_s12.location_dir(ssl4eo_root, ssl4eo_s12.S1_DIR, location)
    for root in (s2_root, s1_root):
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: location {location} is listed in {IDS_CSV} "
                                    "but has no images")
    s1_seasons = ssl4eo_s12.pair_by_date(seasons, ssl4eo_s12.season_dirs(s1_root), s1_root)
    label_root = noldo_root / NOL_DIR / location
    s2_seasons = ssl4eo_s12.read_s2_seasons([s2_root / name for name in seasons])
    grid = s2_seasons[0][1]  # every season on the first one's grid
    s2 = []
    for image, season_grid, reference in s2_seasons:
        check_on_grid(grid, season_grid, s2_root, reference)
        s2.append(resample_onto(image, season_grid, grid))
    references = [reference for _, _, reference in s2_seasons]
    s1 = ssl4eo_s12.read_s1_seasons([s1_root / name for name in s1_seasons], grid, references)
    labels, truths, label_paths = [], [], []
    for s2_name, reference in zip(seasons, references, strict=True):
        label_paths.append(label_root / s2_name / "label.tif")
        labels.append(read_label_onto(label_paths[-1], grid, reference))
        if truth_root is not None:
            truths.append(read_label_onto(truth_root / location / s2_name / "label.tif", grid,
                                          reference))
    times = np.array([np.datetime64(ssl4eo_s12.acquisition_time(n), "s") for n in seasons])
    return Sample(sample_id=location, s1=np.stack(s1), s2=np.stack(s2), label=np.stack(labels),
                  grid=grid, time=times, truth=np.stack(truths) if truths else None,
                  label_paths=tuple(label_paths))


def iter_nol(ssl4eo_root: Path, noldo_root: Path, truth_root: Path | None = None
             ) -> tuple[int, Iterator[Callable[[], Sample]]]:
    """The number of NoL locations and a reader for each, in ``dw_complete_ids.csv`` order."""
    rows = read_ids(Path(noldo_root) / NOL_DIR / IDS_CSV)
    return len(rows), (partial(read_nol_location, Path(ssl4eo_root), Path(noldo_root), loc,
                               seasons, truth_root) for loc, seasons in rows)


# --- SSL4EO-S12@DW / @OSM tiles ------------------------------------------------------------------

def tile_folders(split_dir: Path, task: str) -> dict[str, Path]:
    return {"s1": split_dir / "image_s1", "s2": split_dir / "image_s2",
            task: split_dir / f"label_{task}"}


def tile_keys(split_dir: Path) -> list[str]:
    """Keys of the tiles of one split folder: S2 file names without ``s2_`` and ``.tif``."""
    folder = split_dir / "image_s2"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    names = sorted(p.name for p in folder.glob("*.tif"))
    strays = [n for n in names if not n.startswith(TILE_PREFIX["s2"])]
    if strays:
        raise CromssError(f"{folder / strays[0]}: an S2 tile must be named s2_<key>.tif")
    return [n[len(TILE_PREFIX["s2"]):-len(".tif")] for n in names]


def full_s2(s2: np.ndarray, path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """A 12-band tile (no B10) as 13 bands, B10 filled with its mean; 13 bands pass unchanged."""
    if s2.shape[0] == len(S2_BANDS):
        return s2, ()
    b10 = S2_BANDS.index("B10")
    fill = np.full((1, *s2.shape[1:]), round(S2_MEAN[b10]), s2.dtype)
    return np.concatenate([s2[:b10], fill, s2[b10:]]), ("B10",)


def read_tile(sample_id: str, s1_path: Path, s2_path: Path, label_path: Path,
              s2_counts: Sequence[int] = (len(S2_BANDS),), label_band: int = 0) -> Sample:
    """One single-season tile; S1 and the label are put on the S2 grid by their transforms."""
    s2, grid = read_raster(s2_path, count=s2_counts)
    s2, filled = full_s2(s2_digital_numbers(s2, s2_path), s2_path)
    s1, s1_grid = read_raster(s1_path, count=len(S1_BANDS))
    check_on_grid(grid, s1_grid, s2_path, s1_path)
    s1 = resample_onto(s1, s1_grid, grid)
    label, label_grid = read_raster(label_path, count=None)
    check_on_grid(grid, label_grid, s2_path, label_path)
    band = label_band if label.shape[0] > 1 else 0
    label = resample_onto(label[band:band + 1], label_grid, grid, nearest=True, fill=255)
    return Sample(sample_id=sample_id, s1=s1[None].astype(np.float32), s2=s2[None], label=label,
                  grid=grid, time=np.array([np.datetime64("NaT", "s")]),
                  label_paths=(label_path,), s2_filled=filled)


def iter_tiles(split_dir: Path, task: str) -> tuple[int, Iterator[Callable[[], Sample]]]:
    """The tiles of one split folder (``dw_train`` ...), paired by key after the prefix: their
    number and a reader for each."""
    folders = tile_folders(split_dir, task)
    keys = tile_keys(split_dir)

    def samples() -> Iterator[Callable[[], Sample]]:
        for key in keys:
            paths = {kind: folder / f"{TILE_PREFIX[kind]}{key}.tif"
                     for kind, folder in folders.items()}
            missing = [str(p) for p in paths.values() if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"{', '.join(missing)}: file not found (the pair of "
                                        f"{paths['s2'].name})")
            yield partial(read_tile, key, paths["s1"], paths["s2"], paths[task],
                          s2_counts=(len(S2_TILE_BANDS), len(S2_BANDS)),
                          label_band=1 if task == "dw" else 0)

    return len(keys), samples()


def tile_key(lon: float, lat: float, date: str, decimal: str = ".") -> str:
    """``-0.0520777954_32.9493499204-20190816`` (``decimal="p"``: ``-0p0520777954_...``)."""
    return f"{lon:.10f}_{lat:.10f}-{date}".replace(".", decimal)


def write_tile(split_dir: Path, task: str, key: str, s1: np.ndarray, s2: np.ndarray,
               label: np.ndarray, crs: int | str, transform) -> None:  # noqa: ANN001
    """One @DW/@OSM tile as NoLDO ships it: prefixed names, S2 without B10."""
    folders = tile_folders(split_dir, task)
    keep = [S2_BANDS.index(b) for b in S2_TILE_BANDS]
    for kind, data in (("s1", s1.astype(np.float32)), ("s2", s2[keep]), (task, label)):
        write_tif(folders[kind] / f"{TILE_PREFIX[kind]}{key}.tif", data, crs, transform)


