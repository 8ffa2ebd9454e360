"""Each published layout, from the fixtures of tests/fixtures (written as the producers write them),
ingested end to end and compared with the store a correct reader must give."""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cromss.constants import DFC_REMAP, IGNORE_INDEX, S2_BANDS, S2_MEAN
from cromss.data.ingest import ingest, remap_labels
from cromss.data.layouts import Roots, noldo, ssl4eo_s12
from cromss.data.store import open_store

DATA = Path(__file__).parents[1] / "fixtures"
_spec = importlib.util.spec_from_file_location("fixture_generator", DATA / "generate.py")
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)
FIXTURE = Roots(ssl4eo_s12=DATA / "ssl4eo_s12", noldo=DATA / "noldo", dfc2020=DATA / "dfc2020")


@pytest.fixture
def trees(tmp_path) -> Roots:
    """A private copy of the fixture trees to damage."""
    shutil.copytree(DATA, tmp_path / "data", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return Roots(**{part: tmp_path / "data" / part for part in ("ssl4eo_s12", "noldo", "dfc2020")})


def rewrite(path: Path, data: np.ndarray | None = None, **profile) -> None:
    with rasterio.open(path) as src:
        meta, array = src.profile, src.read() if data is None else data
    meta.update(count=array.shape[0], dtype=array.dtype, **profile)
    with rasterio.open(path, "w", **meta) as dst:
        dst.write(array)


def test_fixtures_are_what_the_generator_writes(tmp_path):
    fresh = generate.generate(tmp_path)
    committed = sorted(p.relative_to(DATA) for p in DATA.rglob("*.tif"))
    assert committed == sorted(p.relative_to(fresh) for p in fresh.rglob("*.tif"))
    for name in committed[::7]:
        with rasterio.open(DATA / name) as a, rasterio.open(fresh / name) as b:
            assert a.transform == b.transform and a.crs == b.crs
            np.testing.assert_array_equal(a.read(), b.read())


def test_ssl4eo_s12_v1_bands_are_resampled_by_their_transforms(tmp_path):
    out = tmp_path / "nol.zarr"
    assert ingest("nol", FIXTURE, out)["samples"] == 2
    ds = open_store(out)
    assert list(ds["sample"].values) == ["0000000", "0000001"]
    assert ds["s2"].shape == (2, 4, 13, 36, 36) and ds["crs"].values.tolist() == [4326, 4326]
    assert tuple(ds["transform"].values[0]) == pytest.approx(generate.TRANSFORM[10].to_gdal())
    rows, cols = np.mgrid[:36, :36]
    for loc in range(2):
        for season in range(4):
            for b, band in enumerate(S2_BANDS):
                expected = generate.ramp(rows, cols, b, season + 4 * loc)
                got = ds["s2"].values[loc, season, b].astype(float)
                if band == "B2" or generate.RESOLUTION.get(band, 10) == 10:
                    np.testing.assert_array_equal(got, expected)
                else:  # exact where the coarse pixels' centres surround the 10 m pixel
                    np.testing.assert_allclose(got[:31, :31], expected[:31, :31], atol=1)
    seasons, s1_seasons = generate.LOCATIONS["0000000"]
    assert list(ds["time"].values[0]) == [np.datetime64(ssl4eo_s12.acquisition_time(s), "ns")
                                          for s in seasons]
    with rasterio.open(DATA / "ssl4eo_s12/s1/0000000" / s1_seasons[0] / "VV.tif") as src:
        np.testing.assert_array_equal(ds["s1"].values[0, 0, 0], src.read(1))  # 03-29 with 03-23


def test_noldo_labels_come_from_their_own_grid(tmp_path):
    ingest("nol", FIXTURE, tmp_path / "nol.zarr")
    label = open_store(tmp_path / "nol.zarr")["label"].values
    rows, cols = np.mgrid[:36, :36]
    for season in range(4):
        np.testing.assert_array_equal(label[0, season], generate.label_pattern(rows, cols, 9))
    assert (label[1] == 3).all()  # the Web Mercator label, put on the patch by nearest


def test_a_band_elsewhere_is_refused_naming_it(trees, tmp_path):
    season = trees.ssl4eo_s12 / "s2c/0000000" / generate.LOCATIONS["0000000"][0][0]
    with rasterio.open(season / "B5.tif") as src:
        rewrite(season / "B5.tif", transform=src.transform @ src.transform.translation(2, 0))
    with pytest.raises(ValueError, match="B5.tif: bounds .* by more than one pixel"):
        ingest("nol", trees, tmp_path / "nol.zarr")
    rewrite(season / "B5.tif", transform=generate.TRANSFORM[20])
    rewrite(season / "B9.tif", crs="EPSG:3857")
    with pytest.raises(ValueError, match="B9.tif: CRS EPSG:3857 differs from EPSG:4326"):
        ingest("nol", trees, tmp_path / "nol.zarr")
    assert not (tmp_path / "nol.zarr").exists()


def test_a_label_off_the_patch_is_refused(trees, tmp_path):
    label = trees.noldo / "ssl4eo_s12_nol/0000000" / generate.LOCATIONS["0000000"][0][1] / "label.tif"
    with rasterio.open(label) as src:
        rewrite(label, transform=src.transform @ src.transform.translation(0, 100))
    with pytest.raises(ValueError, match="label.tif: the label covers 0% of the patch"):
        ingest("nol", trees, tmp_path / "nol.zarr")


@pytest.mark.parametrize("text", [
    "0,20200323T162931_20200323T163750_T15QXA,s2,s3,s4\n1,a,b,c,d\n",  # write_images_to_lmdb
    "0,0,20200323T162931_20200323T163750_T15QXA,s2,s3,s4\n1,1,a,b,c,d\n",  # ind, ids, sub1..4
    "ids,ind,sub1,sub2,sub3,sub4\n0,0,20200323T162931_20200323T163750_T15QXA,s2,s3,s4\n1,1,a,b,c,d\n",
    ",ind,sub1,ids,sub2,sub3,sub4\n0,5,20200323T162931_20200323T163750_T15QXA,0,s2,s3,s4\n1,6,a,1,b,c,d\n",
])
def test_both_forms_of_the_id_list(tmp_path, text):
    path = tmp_path / "dw_complete_ids.csv"
    path.write_text(text)
    assert noldo.read_ids(path) == [
        ("0000000", ["20200323T162931_20200323T163750_T15QXA", "s2", "s3", "s4"]),
        ("0000001", ["a", "b", "c", "d"])]


@pytest.mark.parametrize("text, match", [
    ("0,a,b,c\n", r"first row \['0', 'a', 'b', 'c'\] is neither a header"),
    ("id,sub1,sub2,sub3,sub4\n1,a,b,c,d\n", "is neither a header naming ids"),
    ("ids,sub1,sub2,sub3\n1,a,b,c\n", r"lacks the columns \['sub4'\]"),
    ("1,a,b,c,d\n2,a,b\n", r":2: 3 columns, expected 5"),
])
def test_an_id_list_of_neither_form_is_refused(tmp_path, text, match):
    path = tmp_path / "dw_complete_ids.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        noldo.read_ids(path)


def test_dw_and_osm_tiles_pair_by_key_and_record_the_filled_band(tmp_path):
    for split, (keys, s2_count, label_bands) in generate.TILES.items():
        task = split.split("_")[0]
        ingest(split, FIXTURE, tmp_path / f"{split}.zarr")
        ds = open_store(tmp_path / f"{split}.zarr")
        assert list(ds["sample"].values) == sorted(keys)
        base = DATA / "noldo" / f"ssl4eo_s12_{task}" / split
        key = sorted(keys)[0]
        with rasterio.open(base / "image_s2" / f"s2_{key}.tif") as src:
            s2 = src.read()
            assert ds["crs"].values[0] == 32633
            assert tuple(ds["transform"].values[0]) == pytest.approx(src.transform.to_gdal())
        with rasterio.open(base / f"label_{task}" / f"{task}_{key}.tif") as src:
            codes = src.read()[label_bands - 1]  # a two-band DW label holds the map in band 2
        stored = ds["s2"].values[0, 0]
        b10 = S2_BANDS.index("B10")
        if s2_count == 12:
            assert ds.attrs["s2_filled_bands"] == ["B10"]
            assert (stored[b10] == round(S2_MEAN[b10])).all()
            np.testing.assert_array_equal(np.delete(stored, b10, axis=0), s2)
        else:
            assert ds.attrs["s2_filled_bands"] == []
            np.testing.assert_array_equal(stored, s2)
        expected = codes.astype(int) - 1
        expected[(codes == 0) | ((codes == 10) & (task == "dw"))] = IGNORE_INDEX
        np.testing.assert_array_equal(ds["label"].values[0, 0], expected)


def test_a_tile_without_its_pair_is_refused(trees, tmp_path):
    key = generate.TILES["dw_train"][0][0]
    (trees.noldo / "ssl4eo_s12_dw/dw_train/label_dw" / f"dw_{key}.tif").unlink()
    with pytest.raises(FileNotFoundError, match=f"dw_{key}.tif: file not found"):
        ingest("dw_train", trees, tmp_path / "dw.zarr")


def test_dfc2020_patches(tmp_path):
    for store, split, sub in (("dfc2020_train", "validation", "validation"),
                              ("dfc2020_test", "test", "0")):
        ingest(store, FIXTURE, tmp_path / f"{store}.zarr")
        ds = open_store(tmp_path / f"{store}.zarr")
        assert list(ds["sample"].values) == ["p1", "p2"] and ds["crs"].values[0] == 32735
        with rasterio.open(DATA / "dfc2020" / f"ROIs0000_{split}" / f"dfc_{sub}" /
                           f"ROIs0000_{split}_dfc_0_p2.tif") as src:
            np.testing.assert_array_equal(ds["label"].values[1, 0],
                                          remap_labels(src.read(1), DFC_REMAP))


def test_a_wrong_tree_names_what_is_expected(tmp_path):
    (tmp_path / "s1_grd").mkdir()
    with pytest.raises(FileNotFoundError, match=r"s2c: folder not found; an SSL4EO-S12 v1 root "
                                                r"holds s1/ and s2c/"):
        ingest("nol", Roots(ssl4eo_s12=tmp_path, noldo=DATA / "noldo", dfc2020=tmp_path),
               tmp_path / "nol.zarr")
    with pytest.raises(FileNotFoundError, match="ROIs0000_validation/s2_validation: folder not found"):
        ingest("dfc2020_train", Roots.under(tmp_path), tmp_path / "dfc.zarr")


def test_north_up_nearest_resampling_is_what_gdal_computes():
    """Labels onto the image grid in numpy give GDAL's nearest-neighbour values exactly, for
    coarser, finer and shifted label grids."""
    from cromss.data.layouts.rasters import Grid, _gdal_warp, resample_onto

    rng = np.random.default_rng(7)
    grid = Grid(32632, (500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0), (36, 36), (0, 0, 0, 0))
    for factor in (0.5, 1, 2, 6):
        size = int(36 / factor)
        shift = rng.uniform(-0.6, 0.6, 2) * 10 * factor
        source = Grid(32632, (500000.0 + shift[0], 10.0 * factor, 0.0, 4000000.0 + shift[1], 0.0,
                              -10.0 * factor), (size, size), (0, 0, 0, 0))
        data = rng.integers(0, 11, (1, size, size)).astype(np.uint8)
        padded = np.pad(data, ((0, 0), (1, 1), (1, 1)), mode="edge")
        expected = _gdal_warp(padded, source, grid, True, 255)
        assert np.array_equal(resample_onto(data, source, grid, nearest=True, fill=255), expected)


def test_north_up_bilinear_of_integer_bands_is_what_gdal_computes():
    """20 m and 60 m bands onto the 10 m grid in numpy give GDAL's bilinear float64 values bit
    for bit (the stores hold their rounding, so a half-way value must round as GDAL's does); a
    shifted band of the grid's resolution too, and a finer band is left to GDAL."""
    from cromss.data.layouts.rasters import Grid, _gdal_warp, bilinear_axis_aligned, resample_onto

    rng = np.random.default_rng(3)
    size = 264
    for pixel, origin in ((9.0e-5, (4.99, 51.65)), (10.0, (500000.0, 4000000.0))):
        grid = Grid(4326, (origin[0], pixel, 0.0, origin[1], 0.0, -pixel), (size, size),
                    (0, 0, 0, 0))
        for factor in (2, 6):
            own = pixel * factor  # the downloader's origin: first centre - own pixel / 2
            source = Grid(4326, (origin[0] + pixel / 2 - own / 2, own, 0.0,
                                 origin[1] - pixel / 2 + own / 2, 0.0, -own),
                          (size // factor, size // factor), (0, 0, 0, 0))
            data = rng.integers(0, 5000, (3, size // factor, size // factor)).astype(np.uint16)
            padded = np.pad(data, ((0, 0), (1, 1), (1, 1)), mode="edge")
            ours = bilinear_axis_aligned(padded, source.transform, grid)
            assert ours is not None
            assert np.array_equal(ours, _gdal_warp(padded, source, grid, False, 0))
            # as the stores were warped before: float64 with NaN as no data
            float_warp = _gdal_warp(padded.astype(np.float64), source, grid, False, 0)
            assert np.array_equal(ours, float_warp)
    for factor, ours_too in ((1, True), (0.5, False)):
        size, own = 32, 10.0 * factor
        grid = Grid(32632, (500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0), (32, 32), (0, 0, 0, 0))
        source = Grid(32632, (500000.0 + 0.3 * own, own, 0.0, 4000000.0 - 0.2 * own, 0.0, -own),
                      (int(size / factor),) * 2, (0, 0, 0, 0))
        data = rng.integers(0, 5000, (2, *source.shape)).astype(np.uint16)
        padded = np.pad(data, ((0, 0), (1, 1), (1, 1)), mode="edge")
        assert (bilinear_axis_aligned(padded, source.transform, grid) is not None) == ours_too
        gdal = _gdal_warp(padded.astype(np.float64), source, grid, False, 0)
        assert np.array_equal(resample_onto(data, source, grid), np.rint(gdal).astype(np.uint16))


@pytest.mark.parametrize("in_env", [False, True], ids=["alone", "in-one-gdal-env"])
def test_a_bad_raster_is_refused_naming_the_file_and_its_problem(tmp_path, in_env):
    """Each problem of a file, named with the file, whether or not a GDAL environment is active
    (ingest keeps one open; read_raster then skips rasterio's own per-file one)."""
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    from cromss.data.layouts.rasters import read_raster, write_tif
    from cromss.errors import CromssError

    data = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    good = tmp_path / "good.tif"
    write_tif(good, data, 32632, from_origin(500000, 4000000, 10, 10))
    no_crs = tmp_path / "no_crs.tif"
    with rasterio.open(no_crs, "w", driver="GTiff", height=8, width=8, count=1, dtype="uint16",
                       transform=from_origin(0, 8, 1, 1)) as dst:
        dst.write(data[:1])
    local_crs = tmp_path / "local_crs.tif"
    with rasterio.open(local_crs, "w", driver="GTiff", height=8, width=8, count=1,
                       dtype="uint16", crs=CRS.from_wkt('LOCAL_CS["site",UNIT["metre",1]]'),
                       transform=from_origin(0, 8, 1, 1)) as dst:
        dst.write(data[:1])
    png = tmp_path / "band.tif"
    with rasterio.open(png, "w", driver="PNG", height=8, width=8, count=1, dtype="uint16") as dst:
        dst.write(data[:1])
    text = tmp_path / "text.tif"
    text.write_text("<html>404 not found</html>")
    cases = [(tmp_path / "missing.tif", 1, FileNotFoundError, "file not found"),
             (text, 1, CromssError, "not a readable GeoTIFF"),
             (png, 1, CromssError, r"not a GeoTIFF \(driver PNG\)"),
             (good, (1, 3), CromssError, "2 bands, expected 1 or 3"),
             (no_crs, 1, CromssError, "no EPSG coordinate reference system"),
             (local_crs, 1, CromssError, "no EPSG coordinate reference system")]
    with rasterio.Env() if in_env else contextlib.nullcontext():
        for path, count, error, problem in cases:
            with pytest.raises(error, match=f"{path.name}: {problem}"):
                read_raster(path, count=count)
        values, grid = read_raster(good, count=2)
    assert np.array_equal(values, data)
    assert (grid.epsg, grid.shape, grid.transform) == (32632, (8, 8),
                                                       (500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0))
    assert grid.bounds == (500000.0, 3999920.0, 500080.0, 4000000.0)
