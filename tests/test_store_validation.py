"""S2 values as ingest accepts them, and one validating open of every store by every stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from cromss.cli import main
from cromss.constants import IGNORE_INDEX, S2_BANDS
from cromss.data.ingest import ingest
from cromss.data.layouts.noldo import S2_TILE_BANDS
from cromss.data.store import open_arrays, s2_digital_numbers
from cromss.training.datasets import SegmentationDataset
from test_datasets import write_store
from test_ingest import DW_TILES, assert_fails_cleanly, raw, rewrite  # noqa: F401 (fixture)


def s2_tiles(raw: Path) -> list[Path]:  # noqa: F811
    return sorted((raw / DW_TILES / "image_s2").iterdir())


def read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read()


def test_reflectance_is_scaled_and_nan_is_masked_and_ignored(raw, tmp_path):  # noqa: F811
    tiles = s2_tiles(raw)
    dn = read(tiles[0])
    reflectance = dn.astype(np.float32) / 10000
    reflectance[3, :4, :5] = np.nan  # 20 pixels without data in one band
    rewrite(tiles[0], reflectance)
    counts = ingest("dw_train", raw, tmp_path / "dw.zarr")
    group = open_arrays(tmp_path / "dw.zarr")
    stored = group["s2"][0, 0][[S2_BANDS.index(b) for b in S2_TILE_BANDS]]  # the file's 12
    mask = group["s2_nodata"][:]
    assert mask[0, 0, :4, :5].all() and counts["s2_nodata_pixels"] == mask.sum() == 20
    assert (stored[3, :4, :5] == 0).all()
    stored[3, :4, :5] = dn[3, :4, :5]
    assert np.abs(stored.astype(int) - dn.astype(int)).max() <= 1  # x 10000, rounded
    label = SegmentationDataset(tmp_path / "dw.zarr", modality="s2")[0]["label"].numpy()
    assert (label[:4, :5] == IGNORE_INDEX).all()


@pytest.mark.parametrize("case,message", [
    ("int16 negative", r"negative values \(min -100, type int16\)"),
    ("all-NaN band", r"band\(s\) \[7\] \(0-based\) hold no finite value"),
    ("float above uint16", r"values up to 70000 exceed 65535"),
])
def test_data_that_cannot_be_l1c_is_refused_with_the_file_named(raw, tmp_path, case, message):  # noqa: F811
    tile = s2_tiles(raw)[1]
    data = read(tile)
    if case == "int16 negative":
        data = data.astype(np.int16)
        data[0, 0, 0] = -100
    elif case == "all-NaN band":
        data = data.astype(np.float32)
        data[7] = np.nan
    else:
        data = data.astype(np.float32)
        data[0, 0, 0] = 70000
    rewrite(tile, data)
    assert_fails_cleanly("dw_train", raw, tmp_path, ValueError, f"{tile.name}: S2 .*{message}")


def test_integer_digital_numbers_pass_unchanged():
    data = np.array([[[0, 1, 65535]]], dtype=np.uint16)
    assert s2_digital_numbers(data, "x.tif").tolist() == [[[0, 1, 65535]]]
    assert s2_digital_numbers(np.array([[[0.5, 1.0]]]), "x.tif").tolist() == [[[5000, 10000]]]


@pytest.fixture
def store(tmp_path) -> Path:
    return write_store(tmp_path / "train.zarr", samples=3, seasons=1, size=32)


def damage(path: Path, kind: str) -> str:
    if kind == "missing array":
        shutil.rmtree(path / "s2")
        return r"arrays \['s2'\] missing"
    if kind == "missing chunk":
        chunk = sorted(p for p in (path / "label").rglob("*") if p.is_file() and p.name != "zarr.json")[1]
        chunk.unlink()
        return r"label has 1 of 3 chunks missing"
    if kind == "shape":
        meta = json.loads((path / "label" / "zarr.json").read_text())
        meta["shape"][-1] = 16
        (path / "label" / "zarr.json").write_text(json.dumps(meta))
        return r"s1 is float32 \(3, 1, 2, 32, 32\), expected float32 \(3, 1, 2, 32, 16\)"
    meta = json.loads((path / "zarr.json").read_text())
    del meta["attributes"]["num_classes"]
    (path / "zarr.json").write_text(json.dumps(meta))
    return r"attributes \['num_classes'\] missing"


@pytest.mark.parametrize("kind", ["missing array", "missing chunk", "shape", "attributes"])
def test_every_stage_refuses_a_damaged_store(store, tmp_path, capsys, kind):
    message = damage(store, kind)
    with pytest.raises(ValueError, match=rf"{store}: {message}"):
        SegmentationDataset(store, modality="s1")
    assert main(["data", "inspect", str(store)]) == 2
    assert message.replace("\\", "") in capsys.readouterr().err.replace("\\", "")


def test_a_complete_store_passes_and_has_every_chunk(store):
    group = open_arrays(store)
    assert all(group[name].nchunks_initialized == group[name].nchunks
               for name in ("s1", "s2", "label", "s1_nodata", "s2_nodata"))
    assert isinstance(group, zarr.Group)
