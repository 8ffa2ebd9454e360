"""S2 values as ingest accepts them, and one validating open of every store by every stage."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from cromss.cli import main
from cromss.constants import IGNORE_INDEX, S2_BANDS
from cromss.data.ingest import ingest
from cromss.data.layouts.noldo import S2_TILE_BANDS
from cromss.data.layouts.rasters import s2_digital_numbers
from cromss.data.store import open_arrays
from cromss.training.datasets import SegmentationDataset
from helpers.ingest import DW_TILES, assert_fails_cleanly, rewrite
from helpers.stores import write_store


def s2_tiles(raw: Path) -> list[Path]:
    return sorted((raw / DW_TILES / "image_s2").iterdir())


def read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read()


def test_reflectance_is_scaled_and_nan_is_masked_and_ignored(raw, tmp_path):
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
def test_data_that_cannot_be_l1c_is_refused_with_the_file_named(raw, tmp_path, case, message):
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
        (path / "label" / "c" / "0" / "0" / "0" / "0").unlink()  # the one shard of 16 samples
        return r"label has 1 of 1 shards missing"
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
    assert all(group[name]._nshards_initialized == group[name]._nshards == 1  # 3 samples
               for name in ("s1", "s2", "label", "s1_nodata", "s2_nodata"))
    assert isinstance(group, zarr.Group)


def damage_shard(store: Path, kind: str) -> None:
    shard = store / "s2" / "c" / "0" / "0" / "0" / "0" / "0"  # the shard of samples 0-15
    data = bytearray(shard.read_bytes())
    if kind == "bit flip":  # in inner chunk 1, found by the shard index at the end
        index = np.frombuffer(bytes(data[-(16 * 16 + 4):-4]), "<u8").reshape(16, 2)
        data[int(index[1, 0] + index[1, 1] // 2)] ^= 0x10  # zstd alone decodes this to other values
    else:
        data = data[:len(data) // 2]
    shard.write_bytes(bytes(data))


DAMAGED = (r"array s2, chunk c/1/0/0/0/0 \(in shard file c/0/0/0/0/0\): cannot be read"
           r".*the store is damaged, ingest it again")


def test_a_cut_shard_names_store_array_and_chunk(store):
    damage_shard(store, "truncated")
    with pytest.raises(ValueError, match=rf"{store}: {DAMAGED}"):
        SegmentationDataset(store, modality="s2")[1]


def test_a_flipped_bit_inside_a_shard_fails_its_chunk_checksum(store):
    from cromss.data.store import read_selections

    damage_shard(store, "bit flip")
    array = zarr.open_group(str(store), mode="r")["s2"]  # zarr-python's codec pipeline
    read_selections([(array, (0,))])  # an intact chunk of the shard reads
    with pytest.raises(ValueError, match=r"checksum do not match.*the store is damaged"):
        read_selections([(array, (1,))])


def test_the_loaders_zarrs_reader_finds_a_flipped_bit_inside_a_shard(store):
    # zarrs skips the crc32c of a chunk read from inside a shard; the zstd checksum catches it
    damage_shard(store, "bit flip")
    with pytest.raises(ValueError, match=DAMAGED):
        SegmentationDataset(store, modality="s2")[1]


def test_labels_outside_the_classes_name_store_array_and_chunk(tmp_path, capsys):
    from helpers.settings import FINETUNE_SETTINGS as SETTINGS

    store = write_store(tmp_path / "train.zarr", samples=4, seasons=1, size=32, classes=8,
                        names=tuple(f"c{i}" for i in range(8)))
    label = zarr.open_array(str(store / "label"), mode="r+")
    label[2, 0, 5, 5] = 12
    with pytest.raises(ValueError, match=rf"{store}: array label, chunk c/2/0/0/0 "
                                         r"\(in shard file c/0/0/0/0\): label values "
                                         r"\[12\] are not classes of this store \(0..7, 255"):
        SegmentationDataset(store, modality="s1")[2]
    code = main(["finetune", "run", "--task", "dfc2020", "--modality", "s1", "--encoder", "random",
                 "--setting", "finetuned", "--seed", "0", "--train", str(store),
                 "--settings", json.dumps(SETTINGS), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "array label, chunk c/2/0/0/0" in err


EARLIER_CODECS = {  # the pixel arrays' codecs inside the shards of stores written before
    "zstd alone (before the checksums)": lambda: (zarr.codecs.ZstdCodec(level=3),),
    "zstd and crc32c (before the byte shuffle)": lambda: (
        zarr.codecs.ZstdCodec(level=3, checksum=True), zarr.codecs.Crc32cCodec()),
}


@pytest.mark.parametrize("earlier", EARLIER_CODECS)
def test_stores_written_with_earlier_codecs_open_and_hold_the_same_values(tmp_path, monkeypatch,
                                                                          earlier):
    from cromss.data import store as store_module

    checked = write_store(tmp_path / "new.zarr", samples=3, seasons=2, size=32)
    plain_encoding = store_module._encoding

    def earlier_encoding(batch, *args):
        return {name: {**entry, "compressors": EARLIER_CODECS[earlier]()}
                if "compressors" in entry else entry
                for name, entry in plain_encoding(batch, *args).items()}

    monkeypatch.setattr(store_module, "_encoding", earlier_encoding)
    legacy = write_store(tmp_path / "old.zarr", samples=3, seasons=2, size=32)
    codecs = {path.name: [c["name"] for c in json.loads((path / "s2" / "zarr.json").read_text())
                          ["codecs"][0]["configuration"]["codecs"]]
              for path in (checked, legacy)}  # inside the shards
    assert codecs["new.zarr"] == ["bytes", "numcodecs.shuffle", "zstd", "crc32c"]
    assert codecs["old.zarr"] == ["bytes", *(c.to_dict()["name"] for c in EARLIER_CODECS[earlier]())]
    new, old = open_arrays(checked), open_arrays(legacy)
    assert sorted(new.array_keys()) == sorted(old.array_keys())
    for name in new.array_keys():
        np.testing.assert_array_equal(new[name][:], old[name][:], err_msg=name)
    for path in (checked, legacy):
        dataset = SegmentationDataset(path, modality="s2")
        assert dataset[2]["image"].shape[0] == 13
    np.testing.assert_array_equal(SegmentationDataset(checked, modality="s2")[2]["image"],
                                  SegmentationDataset(legacy, modality="s2")[2]["image"])


def test_snakemakes_timestamp_in_a_store_leaves_the_logs_clean(store):
    # Snakemake writes .snakemake_timestamp into every directory() output; zarr warned about it
    # in 35 of 59 job logs. A stranger file is still reported.
    (store / ".snakemake_timestamp").write_text("")
    code = ("import sys; from cromss.data.store import open_store, open_arrays; "
            "open_arrays(sys.argv[1]); open_store(sys.argv[1])")
    clean = subprocess.run([sys.executable, "-c", code, str(store)], capture_output=True,
                           text=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
    assert "snakemake_timestamp" not in clean.stderr
    assert "Numcodecs codecs" not in clean.stderr  # the byte shuffle's codec, on every open
    (store / "notes.txt").write_text("")
    other = subprocess.run([sys.executable, "-c", code, str(store)], capture_output=True,
                           text=True, timeout=120)
    assert "Object at notes.txt is not recognized" in other.stderr
