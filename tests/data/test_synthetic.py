"""The synthetic world: real on-disk layouts, determinism, realistic noise, learnable signal."""

from __future__ import annotations

import csv
import datetime as dt
import re

import numpy as np
import pytest
import rasterio

from cromss.data import synthetic
from cromss.data.layouts import ssl4eo_s12
from cromss.data.store import open_arrays


def test_ssl4eo_and_noldo_layout(tiny_raw):
    ids = tiny_raw / "noldo/ssl4eo_s12_nol/dw_complete_ids.csv"
    rows = list(csv.reader(ids.read_text().splitlines()))
    assert rows[0] == ["ind", "ids", "sub1", "sub2", "sub3", "sub4"]  # odd seed: header form
    assert len(rows) == 7 and all(len(r) == 6 and r[1].isdigit() for r in rows[1:])
    location, seasons = f"{int(rows[1][1]):07d}", rows[1][2:]
    assert seasons == sorted(seasons) and all(ssl4eo_s12.S2_NAME.match(s) for s in seasons)
    s1_seasons = sorted(p.name for p in (tiny_raw / "ssl4eo_s12/s1" / location).iterdir())
    assert len(s1_seasons) == 4 and all(ssl4eo_s12.S1_NAME.match(s) for s in s1_seasons)
    for s2_name, s1_name in zip(seasons, ssl4eo_s12.pair_by_date(seasons, s1_seasons, tiny_raw)):
        gap = ssl4eo_s12.acquisition_time(s1_name) - ssl4eo_s12.acquisition_time(s2_name)
        assert abs(gap) < dt.timedelta(days=8)
    season = tiny_raw / "ssl4eo_s12/s2c" / location / seasons[0]
    expected = {10: 48, 20: 24, 60: 8}
    centres = {}
    for band, resolution in synthetic.S2_NATIVE_RESOLUTION_M.items():
        with rasterio.open(season / f"{band}.tif") as src:
            assert (src.count, src.height, src.dtypes[0]) == (1, expected[resolution], "uint16")
            assert src.crs.to_epsg() == 4326
            assert src.res[0] == pytest.approx(10 * resolution / 10 / 111_320 / np.cos(
                np.radians((src.bounds.top + src.bounds.bottom) / 2)), rel=1e-3)
            centres[band] = src.transform * (0.5, 0.5)
    # the downloader's save_geotiff: every band's first pixel centre is the same point
    for band, centre in centres.items():
        assert centre == pytest.approx(centres["B2"], abs=1e-9), band
    for tree in ("noldo/ssl4eo_s12_nol", "truth"):
        with rasterio.open(tiny_raw / tree / location / seasons[0] / "label.tif") as src:
            assert src.read().max() <= 8 and src.shape == (49, 49)  # on its own grid


def test_tile_and_dfc_layouts(tiny_raw):
    for task in ("dw", "osm"):
        for split, count in (("train", 3), ("test", 2)):
            base = tiny_raw / "noldo" / f"ssl4eo_s12_{task}" / f"{task}_{split}"
            keys = {sub: sorted(p.name.split("_", 1)[1] for p in (base / sub).iterdir())
                    for sub in ("image_s1", "image_s2", f"label_{task}")}
            assert len(keys["image_s2"]) == count
            assert keys["image_s1"] == keys["image_s2"] == keys[f"label_{task}"]
            assert all(p.name.startswith(f"{task}_") for p in (base / f"label_{task}").iterdir())
            # keys as in read_dw_data_to_lmdb.py: lon_lat-date, "p" decimals in the test splits
            decimal = r"p" if split == "test" else r"\."
            assert all(re.fullmatch(rf"-?\d+{decimal}\d{{10}}_-?\d+{decimal}\d{{10}}-\d{{8}}\.tif", k)
                       for k in keys["image_s2"])
            with rasterio.open(next((base / "image_s2").iterdir())) as src:
                assert src.count == 12  # L1C without B10, as the reference's tiles
    with rasterio.open(sorted((tiny_raw / "noldo/ssl4eo_s12_dw/dw_train/label_dw").iterdir())[0]
                       ) as src:
        assert set(np.unique(src.read())) <= set(range(11))
    assert src.crs.to_epsg() // 100 in (326, 327)
    for split, sub, count in (("validation", "validation", 3), ("test", "0", 2)):
        for kind, bands in (("s1", 2), ("s2", 13), ("dfc", 1)):
            path = (tiny_raw / "dfc2020" / f"ROIs0000_{split}" / f"{kind}_{sub}" /
                    f"ROIs0000_{split}_{kind}_0_p{count - 1}.tif")
            with rasterio.open(path) as src:
                assert (src.count, src.height) == (bands, 32)
                if kind == "dfc":
                    assert set(np.unique(src.read())) <= set(range(1, 11))


def test_same_seed_same_world_and_samples_independent_of_count(tmp_path):
    small = {"pretrain_locations": 2, "pretrain_size": 12, "tile_size": 12, "dfc_size": 12,
             "tiles": dict.fromkeys(synthetic.STREAMS[1:], 1)}
    a = synthetic.synthesise(tmp_path / "a", small)
    b = synthetic.synthesise(tmp_path / "b", {**small, "tiles": {"dw_train": 2}})
    c = synthetic.synthesise(tmp_path / "c", {**small, "seed": 1})
    tiles = {w: next((w / "noldo/ssl4eo_s12_dw/dw_train/image_s2").iterdir()) for w in (a, b, c)}
    assert tiles[a].read_bytes() == tiles[b].read_bytes()
    assert tiles[a].read_bytes() != tiles[c].read_bytes()
    assert not (a / "noldo/ssl4eo_s12_nol/dw_complete_ids.csv").read_text().startswith("ind")
    assert (c / "noldo/ssl4eo_s12_nol/dw_complete_ids.csv").read_text().startswith("ind,ids")
    assert sorted(p.name for p in (a / "ssl4eo_s12/s2c").iterdir()) == sorted(
        p.name for p in (b / "ssl4eo_s12/s2c").iterdir())


def test_bad_settings_leave_nothing(tmp_path):
    with pytest.raises(ValueError, match="multiple of 6"):
        synthetic.synthesise(tmp_path / "raw", {"pretrain_size": 50, "pretrain_locations": 1})
    with pytest.raises(ValueError, match="unknown data.synthetic settings: colour"):
        synthetic.synthesise(tmp_path / "raw", {"colour": 1})
    assert list(tmp_path.iterdir()) == []


def test_whole_config_is_read_through_its_data_synthetic_section():
    resolved = synthetic.resolve_settings({"data": {"synthetic": {"seed": 3}}, "pretrain": {}})
    schema = synthetic.section_schema("synthetic")["properties"]
    assert resolved["seed"] == 3 and resolved["tiles"] == schema["tiles"]["default"]
    assert resolved == {key: 3 if key == "seed" else sub["default"] for key, sub in schema.items()}


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3, 0.6])
def test_noisy_labels_have_exactly_the_asked_error_rate(rate):
    rng = np.random.default_rng(0)
    fine, parcels, elevation = synthetic.land_cover(rng, 64, synthetic.TEMPERATE)
    truth = synthetic.FINE_TO_DW[fine]
    noisy = synthetic.noisy_dw_labels(rng, truth, np.zeros((64, 64)), season=2, rate=rate)
    assert (noisy != truth).sum() == round(rate * truth.size)
    wrong = noisy != truth
    similar = np.zeros_like(wrong)
    for cls, options in synthetic.DW_CONFUSIONS.items():
        seasonal = synthetic.SEASONAL_CONFUSIONS[2]
        allowed = [*options, *([seasonal[cls]] if cls in seasonal else [])]
        similar |= (truth == cls) & np.isin(noisy, allowed)
    nearby = np.zeros_like(wrong)  # a shifted boundary: the label's class lies close by
    for cls in np.unique(truth):
        nearby |= (noisy == cls) & synthetic.ndimage.maximum_filter(truth == cls, 25)
    assert not (wrong & ~similar & ~nearby).any()


def test_clouds_attract_label_errors():
    rng = np.random.default_rng(1)
    truth = np.full((64, 64), 4, np.uint8)  # all crops
    cloud = np.zeros((64, 64))
    cloud[:8] = 1.0  # 512 cloudy pixels, fewer than the 819 errors of rate 0.2
    noisy = synthetic.noisy_dw_labels(rng, truth, cloud, season=2, rate=0.2)
    assert (noisy[:8] == synthetic.DW_SNOW).all()  # thick cloud reads as snow, as in DW
    assert (noisy[8:] != truth[8:]).sum() == round(0.2 * truth.size) - 512


def test_each_modality_separates_some_classes(tiny_world):
    nol = open_arrays(tiny_world["nol"])
    truth, s1, s2 = nol["truth"][:], nol["s1"][:], nol["s2"][:].astype(float)
    vv = s1[:, :, 0]
    b4, b8 = s2[:, :, 3], s2[:, :, 7]
    ndvi = (b8 - b4) / (b8 + b4)
    clear = s2[:, :, 10] < 100  # B10 (cirrus) is dark outside clouds
    water, trees, built = truth == 0, truth == 1, truth == 6
    assert vv[built].mean() - vv[water].mean() > 5  # S1: water dark, towns bright
    assert ndvi[trees & clear].mean() - ndvi[water & clear].mean() > 0.3  # S2: vegetation
    assert (~clear).any() and clear.mean() > 0.5  # some clouds, mostly clear


def test_dfc_region_is_a_shifted_domain():
    def shares(climate):
        rng = np.random.default_rng(5)
        fine = np.concatenate([synthetic.land_cover(rng, 48, climate)[0] for _ in range(20)])
        return np.bincount(fine.ravel(), minlength=len(synthetic.FINE_CLASSES)) / fine.size

    temperate, arid = shares(synthetic.TEMPERATE), shares(synthetic.SEMI_ARID)
    assert arid[synthetic.SAVANNA] > 0.05 and temperate[synthetic.SAVANNA] == 0
    assert arid[synthetic.SHRUB] > 2 * temperate[synthetic.SHRUB]
    assert (synthetic.SEMI_ARID.soil[3] > synthetic.TEMPERATE.soil[3])
