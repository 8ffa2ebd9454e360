#!/usr/bin/env python3
"""Write the small, seeded fixtures of the published layouts (torchgeo style): ``python generate.py``.

One tree per layout, named and georeferenced as its producers write it, not as our readers read it:

- ``ssl4eo_s12/``: torchgeo's ``tests/data/ssl4eo/s12`` geometry (36 / 18 / 6 px and its three
  transforms, which follow the SSL4EO-S12 downloader's ``save_geotiff``: every band's first pixel
  centre is the same point) with its location and season names; ``s1/`` and ``s2c/``.
- ``noldo/``: ``ssl4eo_s12_nol`` (``dw_complete_ids.csv`` with the header of
  ``write_labels_to_lmdb.py``, labels one pixel larger and 0.3 px off the image grid, one location's
  label in another CRS) and ``ssl4eo_s12_{dw,osm}`` tiles named ``s1_/s2_/dw_/osm_<key>.tif``
  (keys as in ``read_dw_data_to_lmdb.py``; 12-band S2 as that script prints, one 13-band split, one
  two-band DW label).
- ``dfc2020/``: ``ROIs0000_{validation,test}`` patches.

Pixel values are functions of the position (``ramp``) or simple patterns, so a test can say exactly
what a correct reader must return.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

ROOT = Path(__file__).resolve().parent
SIZE = 36
WGS84 = "EPSG:4326"
# torchgeo tests/data/ssl4eo/s12/data.py: the 10 m, 20 m and 60 m transforms of its fixture
TRANSFORM = {
    10: Affine(9.221577104649252e-05, 0.0, -91.84569595740037, 0.0, -8.79720059797404e-05,
               18.588102959877993),
    20: Affine(0.00018443154209298504, 0.0, -91.84574206528589, 0.0, -0.0001759440119594808,
               18.588146945880982),
    60: Affine(0.0005532946262789551, 0.0, -91.84592649682799, 0.0, -0.0005278320358784425,
               18.588322889892943),
}
S2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
RESOLUTION = {"B1": 60, "B9": 60, "B10": 60, "B5": 20, "B6": 20, "B7": 20, "B8A": 20, "B11": 20,
              "B12": 20}
LOCATIONS = {  # torchgeo's fixture names: S2 seasons and S1 seasons of locations 0 and 1
    "0000000": (["20200323T162931_20200323T163750_T15QXA", "20200621T162901_20200621T164746_T15QXA",
                 "20200924T162929_20200924T164434_T15QXA", "20201228T163711_20201228T164519_T15QXA"],
                ["S1A_IW_GRDH_1SDV_20200329T001515_20200329T001540_031883_03AE27_9BAF",
                 "S1A_IW_GRDH_1SDV_20201230T001523_20201230T001548_035908_04349D_C91E",
                 "S1B_IW_GRDH_1SDV_20200627T001449_20200627T001514_022212_02A27E_2A09",
                 "S1B_IW_GRDH_1SDV_20200928T120105_20200928T120130_023575_02CCB0_F035"]),
    "0000001": (["20201104T135121_20201104T135117_T21KXT", "20210123T135111_20210123T135113_T21KXT",
                 "20210508T135109_20210508T135519_T21KXT", "20210811T135121_20210811T135115_T21KXT"],
                ["S1B_IW_GRDH_1SDV_20201101T091054_20201101T091119_024069_02DC0F_F189",
                 "S1B_IW_GRDH_1SDV_20210205T091050_20210205T091115_025469_0308CB_AA25",
                 "S1B_IW_GRDH_1SDV_20210430T091051_20210430T091116_026694_03303D_69B6",
                 "S1B_IW_GRDH_1SDV_20210804T091057_20210804T091122_028094_0359FE_6D9D"]),
}
TILES = {  # split -> (keys, S2 band count, DW label bands)
    "dw_train": (["-0.0520777954_32.9493499204-20190816", "10.2540012345_47.1100000000-20190402"], 12, 1),
    "dw_test": (["-0p6481384406_6p8231873947-20190226"], 12, 2),
    "osm_train": (["-75.1378532186_19.9946367890-20190107"], 12, 1),
    "osm_test": (["8p5000000000_47p3000000000-20190611"], 13, 1),
}


def ramp(rows: np.ndarray, cols: np.ndarray, band: int, season: int) -> np.ndarray:
    """The value at a position given in 10 m pixels from B2's first pixel centre."""
    return 1000 + 100 * band + 10 * season + 7 * cols + 3 * rows


def label_pattern(rows: np.ndarray, cols: np.ndarray, classes: int) -> np.ndarray:
    return ((rows // 6 + cols // 5) % classes).astype(np.uint8)


def write(path: Path, data: np.ndarray, crs: str, transform: Affine) -> None:
    data = data[None] if data.ndim == 2 else data
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2],
                       count=data.shape[0], dtype=data.dtype, crs=crs, transform=transform) as dst:
        dst.write(data)


def ssl4eo_s12(root: Path) -> None:
    for loc_index, (location, (s2_seasons, s1_seasons)) in enumerate(LOCATIONS.items()):
        for season, name in enumerate(s2_seasons):
            for b, band in enumerate(S2_BANDS):
                resolution = RESOLUTION.get(band, 10)
                n = SIZE * 10 // resolution
                rows, cols = np.mgrid[:n, :n] * (resolution // 10)  # centres in 10 m pixels
                write(root / "s2c" / location / name / f"{band}.tif",
                      ramp(rows, cols, b, season + 4 * loc_index).astype(np.uint16), WGS84,
                      TRANSFORM[resolution])
        rng = np.random.default_rng(int(location))
        for name in s1_seasons:
            for band in ("VV", "VH"):
                write(root / "s1" / location / name / f"{band}.tif",
                      rng.normal(-15, 3, (SIZE, SIZE)).astype(np.float32), WGS84, TRANSFORM[10])


def noldo(root: Path) -> None:
    nol = root / "ssl4eo_s12_nol"
    nol.mkdir(parents=True, exist_ok=True)
    with open(nol / "dw_complete_ids.csv", "w", newline="") as handle:  # write_labels_to_lmdb form
        writer = csv.writer(handle)
        writer.writerow(["ids", "ind", "sub1", "sub2", "sub3", "sub4"])
        for i, (location, (s2_seasons, _)) in enumerate(LOCATIONS.items()):
            writer.writerow([int(location), i, *s2_seasons])
    own = TRANSFORM[10] @ Affine.translation(0.3, 0.3)
    for location, (s2_seasons, _) in LOCATIONS.items():
        for name in s2_seasons:
            path = nol / location / name / "label.tif"
            if location == "0000000":  # one pixel larger, 0.3 px off the image grid
                rows, cols = np.mgrid[:SIZE + 1, :SIZE + 1]
                write(path, label_pattern(rows, cols, 9), WGS84, own)
            else:  # another CRS (Web Mercator), covering the patch: one class everywhere
                write(path, np.full((60, 60), 3, np.uint8), "EPSG:3857",
                      Affine(10.0, 0, -10224330.0, 0, -10.0, 2106610.0))
    rng = np.random.default_rng(10)
    utm = Affine(10.0, 0, 500000.0, 0, -10.0, 4000000.0)
    for split, (keys, s2_count, label_bands) in TILES.items():
        task = split.split("_")[0]
        base = root / f"ssl4eo_s12_{task}" / split
        for key in keys:
            s2 = rng.integers(0, 10000, (s2_count, 16, 16)).astype(np.uint16)
            write(base / "image_s2" / f"s2_{key}.tif", s2, "EPSG:32633", utm)
            write(base / "image_s1" / f"s1_{key}.tif",
                  rng.normal(-15, 3, (2, 16, 16)).astype(np.float32), "EPSG:32633", utm)
            rows, cols = np.mgrid[:16, :16]
            label = label_pattern(rows, cols, 11 if task == "dw" else 14)
            if label_bands == 2:
                label = np.stack([np.zeros_like(label), label])
            write(base / f"label_{task}" / f"{task}_{key}.tif", label, "EPSG:32633", utm)


def dfc2020(root: Path) -> None:
    rng = np.random.default_rng(20)
    utm = Affine(10.0, 0, 300000.0, 0, -10.0, 6000000.0)
    for split, sub in (("validation", "validation"), ("test", "0")):
        for number in (1, 2):
            base = root / f"ROIs0000_{split}"
            name = f"ROIs0000_{split}_{{kind}}_0_p{number}.tif"
            write(base / f"s1_{sub}" / name.format(kind="s1"),
                  rng.normal(-15, 3, (2, 16, 16)).astype(np.float32), "EPSG:32735", utm)
            write(base / f"s2_{sub}" / name.format(kind="s2"),
                  rng.integers(0, 10000, (13, 16, 16)).astype(np.uint16), "EPSG:32735", utm)
            rows, cols = np.mgrid[:16, :16]
            write(base / f"dfc_{sub}" / name.format(kind="dfc"), label_pattern(rows, cols, 10) + 1,
                  "EPSG:32735", utm)


def generate(root: Path = ROOT) -> Path:
    """Write every fixture tree under ``root``."""
    ssl4eo_s12(root / "ssl4eo_s12")
    noldo(root / "noldo")
    dfc2020(root / "dfc2020")
    return root


if __name__ == "__main__":
    generate()
