"""NoLDO-S12, weights, SSL4EO-S12 (v1 parts and v1.1 shards) and DFC2020 through `cromss data fetch`,
against a loopback server that serves the Hugging Face URL layout."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cromss.cli import main
from cromss.data.layouts import ssl4eo_s12
from cromss.sources.dfc2020 import MIRROR
from helpers.loopback import LoopbackServer


def _hf_file(root: Path, repo: str, revision: str, name: str, data: bytes) -> str:
    path = root / "datasets" / repo / "resolve" / revision / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.md5(data).hexdigest()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def _fetch(source: str, settings: dict, out: Path) -> int:
    return main(["data", "fetch", source, "--settings", json.dumps(settings), "--out", str(out), "--quiet"])


@pytest.fixture()
def remote(tmp_path: Path):
    root = tmp_path / "remote"
    root.mkdir()
    with LoopbackServer(root) as server:
        yield server


def _base(server: LoopbackServer, tmp_path: Path) -> dict:
    return {"huggingface_url": server.url, "download_dir": str(tmp_path / "downloads"),
            "retry": {"attempts": 2, "backoff_s": 0.01, "timeout_s": 5}}


def test_noldo_zips_are_verified_and_unpacked(remote: LoopbackServer, tmp_path: Path) -> None:
    nol = _zip({"ssl4eo_s12_nol/dw_complete_ids.csv": "7,a,b,c,d\n",
                "ssl4eo_s12_nol/0000007/a/label.tif": "L"})
    dw = _zip({"dw_train/image_s1/1.tif": "S1", "dw_train/label_dw/1.tif": "D"})
    md5 = {name: _hf_file(remote.root, "vikki23/NoLDO-S12", "main", name, data)
           for name, data in (("ssl4eo_s12_nol.zip", nol), ("ssl4eo_s12_dw.zip", dw))}
    settings = {**_base(remote, tmp_path),
                "noldo": {"files": list(md5), "md5": md5}}
    out = tmp_path / "raw"
    assert _fetch("noldo", settings, out) == 0
    assert (out / "noldo/ssl4eo_s12_nol/dw_complete_ids.csv").read_text() == "7,a,b,c,d\n"
    assert (out / "noldo/ssl4eo_s12_nol/0000007/a/label.tif").read_text() == "L"
    assert (out / "noldo/ssl4eo_s12_dw/dw_train/label_dw/1.tif").read_text() == "D"
    # a second run finds everything in place and downloads nothing
    seen = len(remote.requests)
    assert _fetch("noldo", settings, out) == 0
    assert len(remote.requests) == seen


def test_noldo_wrong_md5_fails_cleanly(remote: LoopbackServer, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    _hf_file(remote.root, "vikki23/NoLDO-S12", "main", "ssl4eo_s12_nol.zip", _zip({"a": "b"}))
    settings = {**_base(remote, tmp_path),
                "noldo": {"files": ["ssl4eo_s12_nol.zip"], "md5": {"ssl4eo_s12_nol.zip": "f" * 32}}}
    assert _fetch("noldo", settings, tmp_path / "raw") == 2
    assert "does not match the expected " + "f" * 32 in capsys.readouterr().err
    assert not (tmp_path / "raw" / "noldo").exists()
    assert not any((tmp_path / "downloads").rglob("*.zip*"))


def test_weights_are_downloaded_on_request(remote: LoopbackServer, tmp_path: Path) -> None:
    name = "weights-cromss-9B-midFusion-epoch=199.ckpt"
    _hf_file(remote.root, "vikki23/NoLDO-S12", "main", name, b"ckpt")
    settings = {**_base(remote, tmp_path), "weights": {"files": [name]}}
    assert _fetch("weights", settings, tmp_path / "raw") == 0
    assert (tmp_path / "raw" / "weights" / name).read_bytes() == b"ckpt"


def _ssl4eo_parts(root: Path, modality: str, ids: list[int], part_bytes: int) -> dict[str, str]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for location in ids:
            name = f"{modality}/{location:07d}/20200323T162931_20200323T163750_T15QXA/B2.tif"
            info = tarfile.TarInfo(name)
            info.size = 7
            bundle.addfile(info, io.BytesIO(f"{location:07d}".encode()))
    data = buffer.getvalue()
    md5 = {}
    for i, start in enumerate(range(0, len(data), part_bytes)):
        suffix = "a" + "abcdefghijklmnopqrstuvwxyz"[i]
        md5[suffix] = _hf_file(root, "wangyi111/SSL4EO-S12", "rev", f"{modality}/{modality}.tar.gz.part{suffix}",
                               data[start:start + part_bytes])
    return md5


def test_ssl4eo_v1_parts_keep_only_the_nol_subset(remote: LoopbackServer, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    ids_csv = out / "noldo/ssl4eo_s12_nol/dw_complete_ids.csv"
    ids_csv.parent.mkdir(parents=True)
    ids_csv.write_text("3,a,b,c,d\n1,a,b,c,d\n4,a,b,c,d\n")
    parts = _ssl4eo_parts(remote.root, "s1_grd", [0, 1, 2, 3, 4], part_bytes=64)
    assert len(parts) > 1
    settings = {**_base(remote, tmp_path), "ssl4eo": {
        "format": "v1", "locations": "nol", "max_locations": 2, "modalities": ["s1_grd"],
        "v1": {"repo": "wangyi111/SSL4EO-S12", "revision": "rev", "parts": {"s1_grd": parts}}}}
    assert _fetch("ssl4eo", settings, out) == 0
    kept = sorted(p.relative_to(out / "ssl4eo_s12/s1").parts[0]
                  for p in (out / "ssl4eo_s12/s1").rglob("B2.tif"))
    assert kept == ["0000001", "0000003"]  # the first two NoL ids, in id order
    assert (out / "ssl4eo_s12/s1/0000003/20200323T162931_20200323T163750_T15QXA/B2.tif"
            ).read_text() == "0000003"


def test_ssl4eo_nol_needs_the_id_list(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _fetch("ssl4eo", {"ssl4eo": {"locations": "nol"}}, tmp_path / "raw") == 2
    assert "run `cromss data fetch noldo` first" in capsys.readouterr().err


V11_S1 = "datasets/embed2scale/SSL4EO-S12-v1.1-Zarr/resolve/main/train/S1GRD"


S2_STAMPS = ("20200320T100000", "20200621T100000", "20200922T100000", "20201221T100000")


def _v11_shard(path: Path, ids: list[str], product: str = "S1GRD", seasons: int = 2) -> None:
    """A shard as the v1.1 README prints one: bands(sample, time, band, y, x) (S1 float16, S2
    int16), integer time/x/y indices, per-sample crs, x_/y_ pixel centres, time_ and file_id."""
    import xarray as xr

    n, t = len(ids), seasons
    if product == "S1GRD":
        names, dtype = ["vv", "vh"], np.float16
        file_ids = [[f"S1A_IW_GRDH_1SDV_{stamp}_{stamp}_031883_03AE27_9BA{i}"
                     for stamp in S2_STAMPS[:t]] for i in range(n)]
    else:
        names, dtype = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09",
                        "B10", "B11", "B12"], np.int16
        file_ids = [[f"{stamp}_{stamp}_T33SWC" for stamp in S2_STAMPS[:t]] for _ in range(n)]
    pixels = (np.arange(n * t * len(names) * 16) % 2000 + 1000).astype(dtype).reshape(
        n, t, len(names), 4, 4)
    times = np.array([[np.datetime64(f"{st[:4]}-{st[4:6]}-{st[6:8]}T10:00:00") for st in S2_STAMPS[:t]]] * n,
                     dtype="datetime64[ns]")
    ds = xr.Dataset(
        {"bands": (("sample", "time", "band", "y", "x"), pixels),
         "crs": (("sample",), np.full(n, 32633, np.int64)),
         "x_": (("sample", "x"), 500005.0 + 10 * np.arange(4)[None].repeat(n, 0)),
         "y_": (("sample", "y"), 3999995.0 - 10 * np.arange(4)[None].repeat(n, 0)),
         "time_": (("sample", "time"), times),
         "file_id": (("sample", "time"), np.array(file_ids)),
         "center_lat": (("sample",), np.full(n, 36.1)), "center_lon": (("sample",), np.full(n, 15.0))},
        coords={"sample": ids, "band": names, "time": np.arange(t), "x": np.arange(4),
                "y": np.arange(4)})
    folder = path.with_suffix(".dir")
    ds.to_zarr(folder, zarr_format=2, consolidated=True)
    with zipfile.ZipFile(path, "w") as bundle:  # how the released shards are packed
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                bundle.write(file, file.relative_to(folder).as_posix())


def test_converted_v11_tree_is_ingested(tmp_path: Path) -> None:
    import rasterio

    from cromss.data.ingest import ingest
    from cromss.data.layouts import Roots
    from cromss.data.store import open_store
    from cromss.sources.ssl4eo import convert_zarr_shard

    raw = tmp_path / "raw"
    for product, modality in (("S1GRD", "s1_grd"), ("S2L1C", "s2_l1c")):
        shard = tmp_path / f"{product}.zarr.zip"
        _v11_shard(shard, ["0000005"], product, seasons=4)
        folder = raw / "ssl4eo_s12" / ssl4eo_s12.FOLDERS[modality]
        assert convert_zarr_shard(shard, modality, folder, None, s2_offset=1000) == 1
    seasons = [f"{stamp}_{stamp}_T33SWC" for stamp in S2_STAMPS]
    nol = raw / "noldo/ssl4eo_s12_nol"
    for season in seasons:  # DW labels fetched for the v1.1 dates, on the patch grid
        (nol / "0000005" / season).mkdir(parents=True)
        with rasterio.open(nol / "0000005" / season / "label.tif", "w", driver="GTiff", width=4,
                           height=4, count=1, dtype="uint8", crs="EPSG:32633",
                           transform=rasterio.transform.from_origin(500000, 4000000, 10, 10)) as dst:
            dst.write(np.full((1, 4, 4), 2, np.uint8))
    (nol / "dw_complete_ids.csv").write_text(",".join(["5", *seasons]) + "\n")
    ingest("nol", Roots.under(raw), tmp_path / "nol.zarr")
    ds = open_store(tmp_path / "nol.zarr")
    assert ds["crs"].values[0] == 32633 and ds["transform"].values[0].tolist()[:3] == [500000, 10, 0]
    expected = (np.arange(4 * 13 * 16) % 2000 + 1000).reshape(4, 13, 4, 4) - 1000
    np.testing.assert_array_equal(ds["s2"].values[0], expected)  # the +1000 offset removed
    assert str(ds["time"].values[0, 1])[:10] == "2020-06-21" and (ds["label"].values == 2).all()


def test_ssl4eo_v11_shards_become_geotiffs(remote: LoopbackServer, tmp_path: Path) -> None:
    import rasterio

    shard = remote.root / V11_S1 / "ssl4eos12_train_seasonal_data_000001.zarr.zip"
    shard.parent.mkdir(parents=True)
    _v11_shard(shard, ["0000005", "0000009"])
    settings = {**_base(remote, tmp_path), "ssl4eo": {
        "format": "v1.1", "locations": "all", "max_locations": 10, "modalities": ["s1_grd"]}}
    out = tmp_path / "raw"
    assert _fetch("ssl4eo", settings, out) == 0
    season = out / "ssl4eo_s12/s1/0000009/S1A_IW_GRDH_1SDV_20200621T100000_20200621T100000_031883_03AE27_9BA1"
    with rasterio.open(season / "VH.tif") as src:
        # sample 1, season 1, band 1 of the arange cube, float16 -> float32
        expected = (np.arange(2 * 2 * 2 * 16) % 2000 + 1000).astype(np.float16).reshape(
            2, 2, 2, 4, 4)[1, 1, 1]
        np.testing.assert_array_equal(src.read(1), expected.astype(np.float32))
        assert src.dtypes[0] == "float32" and src.crs.to_epsg() == 32633
        assert src.transform.c == 500000.0 and src.transform.f == 4000000.0 and src.transform.a == 10
    assert sorted(p.name for p in (out / "ssl4eo_s12/s1").iterdir()) == ["0000005", "0000009"]
    assert ssl4eo_s12.acquisition_time(season.name).month == 6  # a v1 season name


def test_ssl4eo_v11_converting_nothing_fails(remote: LoopbackServer, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    shard = remote.root / V11_S1 / "ssl4eos12_train_seasonal_data_000001.zarr.zip"
    shard.parent.mkdir(parents=True)
    _v11_shard(shard, ["0000005"])
    ids = tmp_path / "raw/noldo/ssl4eo_s12_nol/dw_complete_ids.csv"
    ids.parent.mkdir(parents=True)
    ids.write_text("ids,sub1,sub2,sub3,sub4\n77,a,b,c,d\n")  # the header form
    settings = {**_base(remote, tmp_path), "ssl4eo": {
        "format": "v1.1", "locations": "nol", "modalities": ["s1_grd"], "v1_1": {"shards": 1}}}
    assert _fetch("ssl4eo", settings, tmp_path / "raw") == 2
    assert "no sample converted" in capsys.readouterr().err
    assert not (tmp_path / "raw/ssl4eo_s12/s1").exists()


def test_dfc2020_mirror_is_converted_to_the_original_layout(remote: LoopbackServer, tmp_path: Path) -> None:
    files = {"dfc2020/dfc-train-new.csv": "dfc_a.tif\n", "dfc2020/dfc-val-new.csv": "dfc_b.tif\n",
             "dfc2020/dfc-test-new.csv": "dfc_c.tif\n"}
    for name in "abc":
        files.update({f"dfc2020/{kind}/{kind}_{name}.tif": f"{kind}{name}" for kind in ("s1", "s2", "dfc")})
    data = _zip(files)
    _hf_file(remote.root, MIRROR["repo"], MIRROR["revision"], MIRROR["file"], data)
    settings = {**_base(remote, tmp_path),
                "dfc2020": {"mode": "mirror", "md5": hashlib.md5(data).hexdigest()}}
    out = tmp_path / "raw"
    assert _fetch("dfc2020", settings, out) == 0
    dfc = out / "dfc2020"
    assert (dfc / "ROIs0000_validation/s2_validation/ROIs0000_validation_s2_0_p1.tif").read_text() == "s2b"
    assert (dfc / "ROIs0000_test/dfc_0/ROIs0000_test_dfc_0_p1.tif").read_text() == "dfca"
    assert (dfc / "ROIs0000_test/s1_0/ROIs0000_test_s1_0_p2.tif").read_text() == "s1c"
    assert "test,2,test,dfc_c.tif" in (dfc / "mirror_manifest.csv").read_text()


def test_dfc2020_manual_says_where_to_put_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "raw"
    assert _fetch("dfc2020", {"dfc2020": {"mode": "manual"}}, out) == 2
    err = capsys.readouterr().err
    assert f"put it at {out / 'dfc2020' / 'DFC_Public_Dataset.zip'}" in err
    assert "ieee-dataport.org" in err


def test_dfc2020_manual_zip_is_unpacked(tmp_path: Path) -> None:
    dfc = tmp_path / "raw" / "dfc2020"
    dfc.mkdir(parents=True)
    (dfc / "DFC_Public_Dataset.zip").write_bytes(_zip({
        "DFC_Public_Dataset/ROIs0000_validation/s1_validation/ROIs0000_validation_s1_0_p1.tif": "v",
        "DFC_Public_Dataset/ROIs0000_test/dfc_0/ROIs0000_test_dfc_0_p7.tif": "t"}))
    assert _fetch("dfc2020", {"dfc2020": {"mode": "manual"}}, tmp_path / "raw") == 0
    assert (dfc / "ROIs0000_validation/s1_validation/ROIs0000_validation_s1_0_p1.tif").read_text() == "v"
    assert (dfc / "ROIs0000_test/dfc_0/ROIs0000_test_dfc_0_p7.tif").read_text() == "t"


def test_a_whole_config_file_selects_its_data_real_block(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("data:\n  source: real\n  real:\n    dfc2020: {mode: manual}\n")
    out = tmp_path / "raw"
    assert main(["data", "fetch", "dfc2020", "--settings", str(config), "--out", str(out)]) == 2
    assert f"put it at {out / 'dfc2020' / 'DFC_Public_Dataset.zip'}" in capsys.readouterr().err
