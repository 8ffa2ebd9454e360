"""Ingest: every store from the real layouts, label remaps, and every kind of bad input."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cromss.cli import main
from cromss.constants import IGNORE_INDEX
from cromss.data.layouts import noldo, ssl4eo_s12
from cromss.data.ingest import STORES, ingest, remap_labels
from cromss.data.store import open_arrays, open_store
from helpers.ingest import DW_TILES, assert_fails_cleanly, rewrite



def first_location(raw: Path) -> tuple[str, list[str]]:
    return noldo.read_ids(raw / "noldo/ssl4eo_s12_nol/dw_complete_ids.csv")[0]


def test_every_store_has_the_layout(tiny_world):
    sizes = {"nol": (6, 4, 48), "dw_train": (3, 1, 48), "dw_test": (2, 1, 48),
             "osm_train": (3, 1, 48), "osm_test": (2, 1, 48), "dfc2020_train": (3, 1, 32),
             "dfc2020_test": (2, 1, 32)}
    assert set(tiny_world) == set(STORES)
    for name, (n, t, size) in sizes.items():
        ds = open_store(tiny_world[name])
        assert ds["s1"].shape == (n, t, 2, size, size) and ds["s1"].dtype == np.float32
        assert ds["s2"].shape == (n, t, 13, size, size) and ds["s2"].dtype == np.uint16
        assert ds["label"].shape == (n, t, size, size)
        labels = set(np.unique(ds["label"].values)) - {IGNORE_INDEX}
        assert labels <= set(range(ds.attrs["num_classes"]))
        assert np.isfinite(ds["s1"].values).all()
        assert ("truth" in ds) == (name == "nol")
        assert ds.attrs["label_remap"] == {str(k): v for k, v in STORES[name].remap.items()}


def test_nol_store_matches_the_raw_files(tiny_world, tiny_raw):
    ds = open_store(tiny_world["nol"])
    location, seasons = first_location(tiny_raw)
    assert ds["sample"].values[0] == location
    expected = [np.datetime64(ssl4eo_s12.acquisition_time(s), "ns") for s in seasons]
    assert list(ds["time"].values[0]) == expected
    with rasterio.open(tiny_raw / "ssl4eo_s12/s2c" / location / seasons[2] / "B3.tif") as src:
        assert (ds["s2"].values[0, 2, 2] == src.read(1)).all()  # 10 m bands pass unchanged
        assert ds["crs"].values[0] == 4326
        assert tuple(ds["transform"].values[0]) == pytest.approx(src.transform.to_gdal())
    with rasterio.open(tiny_raw / "ssl4eo_s12/s2c" / location / seasons[2] / "B1.tif") as src:
        coarse = src.read(1).astype(float)  # 60 m: 8 px, first pixel centre = B2's
    # resampled by transform: 10 m pixel 6j lies on the centre of 60 m pixel j (a naive resize
    # would put it 2.5 px away)
    np.testing.assert_allclose(ds["s2"].values[0, 2, 0][::6, ::6], coarse, atol=1)
    with rasterio.open(tiny_raw / "truth" / location / seasons[1] / "label.tif") as src:
        # the label lies 0.3 px off the image grid and one pixel larger: nearest picks pixel i
        assert src.shape == (49, 49)
        assert (ds["truth"].values[0, 1] == src.read(1)[:48, :48]).all()


def test_expert_codes_are_remapped(tiny_world, tiny_raw):
    ds = open_store(tiny_world["dw_train"])
    name = ds["sample"].values[0]
    with rasterio.open(tiny_raw / DW_TILES / "label_dw" / f"dw_{name}.tif") as src:
        codes = src.read(1)
    label = ds["label"].values[0, 0]
    assert (label[(codes == 0) | (codes == 10)] == IGNORE_INDEX).all()
    inner = (codes > 0) & (codes < 10)
    assert (label[inner] == codes[inner] - 1).all()


def test_remap_hand_computed():
    raw = np.array([[0, 1, 2], [3, 8, 10]])
    assert remap_labels(raw, {1: 1, 2: 5, 10: 0}).tolist() == [[255, 1, 5], [255, 255, 0]]


def test_pair_by_date_picks_the_closest_s1_season():
    s2 = ["20201221T101010_20201221T101500_T32UQT", "20210320T101010_20210320T101500_T32UQT"]
    s1 = ["S1A_IW_GRDH_1SDV_20210318T050000_20210318T050025_000001_000001_0001",
          "S1B_IW_GRDH_1SDV_20201225T170000_20201225T170025_000002_000002_0002"]
    assert ssl4eo_s12.pair_by_date(s2, s1, Path("x")) == [s1[1], s1[0]]
    with pytest.raises(FileNotFoundError, match="season folder is missing"):
        ssl4eo_s12.pair_by_date(s2, s1[:1], Path("x"))


def test_truncated_file(raw, tmp_path):
    location, seasons = first_location(raw)
    band = raw / "ssl4eo_s12/s2c" / location / seasons[0] / "B4.tif"
    band.write_bytes(band.read_bytes()[:600])
    assert_fails_cleanly("nol", raw, tmp_path, ValueError, "B4.tif")


def test_not_a_geotiff(raw, tmp_path):
    tile = sorted((raw / DW_TILES / "image_s2").iterdir())[1]
    tile.write_text("<html>404 not found</html>")
    assert_fails_cleanly("dw_train", raw, tmp_path, ValueError, f"{tile.name}: not a readable")


def test_wrong_band_count(raw, tmp_path):
    tile = sorted((raw / DW_TILES / "image_s2").iterdir())[0]
    with rasterio.open(tile) as src:
        rewrite(tile, src.read()[:11])
    assert_fails_cleanly("dw_train", raw, tmp_path, ValueError, "11 bands, expected 12 or 13")


def test_s1_on_another_grid(raw, tmp_path):
    tile = sorted((raw / DW_TILES / "image_s1").iterdir())[0]
    with rasterio.open(tile) as src:
        shifted = src.transform @ src.transform.translation(5, 0)
    rewrite(tile, transform=shifted)
    assert_fails_cleanly("dw_train", raw, tmp_path, ValueError, f"{tile.name}: bounds")


def test_s1_in_another_crs(raw, tmp_path):
    location, _ = first_location(raw)
    season = sorted((raw / "ssl4eo_s12/s1" / location).iterdir())[0]
    rewrite(season / "VH.tif", crs="EPSG:3857")
    assert_fails_cleanly("nol", raw, tmp_path, ValueError, "VH.tif: CRS EPSG:3857 differs")


def test_label_values_outside_the_codes(raw, tmp_path):
    tile = sorted((raw / "noldo/ssl4eo_s12_osm/osm_test/label_osm").iterdir())[0]
    with rasterio.open(tile) as src:
        label = src.read()
    label[0, 0, 0] = 20
    rewrite(tile, label)
    assert_fails_cleanly("osm_test", raw, tmp_path, ValueError,
                         f"{tile.name}: label values \\[20\\] outside the class codes 0..13")


def test_missing_season_folder(raw, tmp_path):
    location, seasons = first_location(raw)
    shutil.rmtree(raw / "ssl4eo_s12/s2c" / location / seasons[3])
    assert_fails_cleanly("nol", raw, tmp_path, FileNotFoundError,
                         f"{seasons[3]}: season folder missing")


def test_missing_s1_season_folder(raw, tmp_path):
    location, _ = first_location(raw)
    shutil.rmtree(sorted((raw / "ssl4eo_s12/s1" / location).iterdir())[0])
    assert_fails_cleanly("nol", raw, tmp_path, FileNotFoundError, "a season folder is missing")


def test_listed_location_without_images(raw, tmp_path):
    ids = raw / "noldo/ssl4eo_s12_nol/dw_complete_ids.csv"
    _, seasons = first_location(raw)
    with open(ids, "a", newline="") as handle:  # the tiny world's csv has the header form
        csv.writer(handle).writerow(["6", "250999", *seasons])
    assert_fails_cleanly("nol", raw, tmp_path, FileNotFoundError,
                         "location 0250999 is listed in dw_complete_ids.csv but has no images")


def test_s1_nan_and_nodata_are_masked_and_recorded(raw, tmp_path):
    tiles = sorted((raw / DW_TILES / "image_s1").iterdir())
    with rasterio.open(tiles[0]) as src:
        s1 = src.read()
    s1[:, :4, :5] = np.nan  # 20 pixels
    rewrite(tiles[0], s1)
    s1[:, :4, :5] = -9999.0  # 20 pixels marked by the nodata value
    rewrite(tiles[1], np.nan_to_num(s1, nan=-9999.0), nodata=-9999.0)
    counts = ingest("dw_train", raw, tmp_path / "dw.zarr")
    group = open_arrays(tmp_path / "dw.zarr")
    flagged = group["s1_nodata"][:]
    assert flagged[0, 0, :4, :5].all() and flagged[1, 0, :4, :5].all()
    assert counts["s1_nodata_pixels"] == group.attrs["s1_nodata_pixels"] == flagged.sum()
    assert flagged.sum() >= 40 and np.isfinite(group["s1"][:]).all()
    assert group["s1"][:].min() > -100


def test_cli_reports_bad_input_without_traceback(raw, tmp_path, capsys):
    location, seasons = first_location(raw)
    shutil.rmtree(raw / "noldo/ssl4eo_s12_nol" / location / seasons[0])
    out = tmp_path / "nol.zarr"
    assert main(["data", "ingest", "nol", "--raw", str(raw), "--out", str(out)]) == 2
    assert "label.tif: file not found" in capsys.readouterr().err and not out.exists()
    assert main(["data", "ingest", "dfc2020_test", "--raw", str(raw), "--out", str(out)]) == 0
    assert "2 samples" in capsys.readouterr().out and out.is_dir()


def test_reading_processes_write_the_same_store(tiny_raw, tmp_path):
    one = ingest("nol", tiny_raw, tmp_path / "one.zarr", shard_samples=2)
    two = ingest("nol", tiny_raw, tmp_path / "two.zarr", shard_samples=2, workers=2)
    assert one == two
    a, b = open_arrays(tmp_path / "one.zarr"), open_arrays(tmp_path / "two.zarr")
    for name in ("s1", "s2", "label", "truth", "s1_nodata", "s2_nodata"):
        assert np.array_equal(np.asarray(a[name][:]), np.asarray(b[name][:])), name
    assert dict(a.attrs) == dict(b.attrs)


def test_a_bad_file_read_by_a_worker_fails_cleanly(raw, tmp_path):
    location, seasons = first_location(raw)
    path = raw / "ssl4eo_s12/s2c" / location / seasons[0] / "B5.tif"
    path.write_bytes(path.read_bytes()[:200])
    out = tmp_path / "data" / "nol.zarr"
    with pytest.raises(ValueError, match="B5.tif"):
        ingest("nol", raw, out, shard_samples=2, workers=2)
    assert not out.exists() and list(out.parent.iterdir()) == []
