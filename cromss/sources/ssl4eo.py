"""SSL4EO-S12 images: the v1 modality archives (split tar.gz parts) or v1.1 Zarr shards, as a subset.

v1 parts ``<modality>/<modality>.tar.gz.part<aa..>`` are downloaded (MD5 per part, torchgeo's
pinned revision by default) and streamed through one tar reader without joining them on disk;
only the selected locations are written, to ``<out>/ssl4eo_s12/<modality>/<id:07d>/<season>/<band>.tif``.

v1.1 shards (``.zarr.zip``, Zarr v2 inside, 64 samples each) are opened with zarr 3's ``ZipStore``
and converted to the same GeoTIFF layout. Their acquisitions differ from v1, so NoLDO's noisy labels
do not fit them: pair v1.1 with Dynamic World labels fetched for their own dates (docs/sources.md).

``locations: nol`` keeps the SSL4EO-S12@NoL ids of ``dw_complete_ids.csv`` (fetch ``noldo`` first),
``all`` keeps every id; ``max_locations: N`` keeps the first N of those (in id order).
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from cromss.atomic import atomic_path
from cromss.sources.archives import unpack_parts
from cromss.sources.huggingface import download_dir, fetch_repo_file

V1_REPO = "wangyi111/SSL4EO-S12"
V1_REVISION = "3f5ddad68ba2ea29d019b0cef6cf292ff8af0d62"
V1_PART_MD5 = {  # torchgeo's checksums for the pinned revision
    "s1_grd": {
        "aa": "6df278053fc3e4c3fd7de2f77856e606", "ab": "837755b4ba8d82faf254df9e5fec13a7",
        "ac": "6400423305d6084e2006eede75cf288e", "ad": "22a50d7362d9cbc9714e0740fe2122c7",
        "ae": "d6ac97ead00b4296a95376949c946b12", "af": "d8047814061431dc627b9ae345c80891",
        "ag": "089ce0548cb7902ce873181cc61f5d70", "ah": "745b48c2896ca764ef54f91e4e7c555e",
        "ai": "c36595cf9617b3b7ea722f63dcccbedc", "aj": "cf16f1d81e8bff2d663e4eba79ec6fa3",
    },
    "s2_l1c": {
        "aa": "a3ef419cc65c4d8ac19b9acc55726166", "ab": "580451e8fdf93067ad79202b95dd1a5c",
        "ac": "a6f7318868f5ba1d94fb9363b50307e4", "ad": "86f324215b04cdf4242d07aaf3cdfe57",
        "ae": "5895a545460f34b1712c17732e0f5533", "af": "078078bc58d8ecc214ddfd838f796700",
        "ag": "3557dd4c24a5942020391a5baaf51abb", "ah": "d59f89271e414648663d3acb66121761",
        "ai": "1a213539c989d16da4e5b4e09feaa98a", "aj": "0b229af5633c7f63486b6d7771b737db",
        "ak": "babe8bed884d31b891151f5717a83b5c", "al": "8d1f5ad28ee868ab0595c889446b8e5f",
    },
}
V11_REPO = "embed2scale/SSL4EO-S12-v1.1"
V11_SHARD = "{split}/{product}/ssl4eos12_{split}_seasonal_data_{index:06d}.zarr.zip"
V11_PRODUCTS = {"s1_grd": "S1GRD", "s2_l1c": "S2L1C"}
SAMPLES_PER_SHARD = 64
LOCATION_DIR = re.compile(r"^\d{7}$")


def nol_ids(csv_path: Path) -> list[int]:
    """Location ids of SSL4EO-S12@NoL: first column of the header-less ``dw_complete_ids.csv``."""
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: the NoL id list is missing; run `cromss fetch noldo` first "
                                "or set data.real.ssl4eo.locations: all")
    with open(csv_path, newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    try:
        return sorted(int(float(row[0])) for row in rows)
    except ValueError as err:
        raise ValueError(f"{csv_path}: first column must hold integer location ids ({err})") from err


def selected_ids(section: dict[str, Any], out: Path) -> set[int] | None:
    """The location ids to keep, or ``None`` for every location."""
    limit = section.get("max_locations")
    if section.get("locations", "nol") == "nol":
        ids = nol_ids(out / "noldo" / "ssl4eo_s12_nol" / "dw_complete_ids.csv")
        return set(ids[:limit] if limit else ids)
    return set(range(limit)) if limit else None


def location_rename(keep: set[int] | None):  # noqa: ANN201 - an archives.Rename
    """Archive member -> ``<id>/<season>/<file>`` from its 7-digit location folder on, if kept."""
    def rename(name: str) -> str | None:
        parts = name.strip("/").split("/")
        for i, part in enumerate(parts):
            if LOCATION_DIR.match(part):
                if keep is not None and int(part) not in keep:
                    return None
                return "/".join(parts[i:])
        return None
    return rename


def fetch_v1(settings: dict[str, Any], section: dict[str, Any], out: Path, keep: set[int] | None,
             *, progress: bool = True) -> list[Path]:
    """Download the split archives of each modality and stream the kept locations out of them."""
    v1 = {"repo": V1_REPO, "revision": V1_REVISION, "parts": V1_PART_MD5, **section.get("v1", {})}
    written = []
    for modality in section.get("modalities", list(V11_PRODUCTS)):
        parts_md5 = v1["parts"][modality]
        repo = {"repo": v1["repo"], "revision": v1["revision"],
                "md5": {f"{modality}/{modality}.tar.gz.part{s}": md5 for s, md5 in parts_md5.items()}}
        parts = [fetch_repo_file(settings, repo, name, download_dir(settings, "ssl4eo_s12"),
                                 progress=progress) for name in repo["md5"]]
        written.append(unpack_parts(parts, out / "ssl4eo_s12" / modality, location_rename(keep)))
    return written


def band_name(raw: str) -> str:
    """SSL4EO-S12 v1 band file name of a v1.1 band label: ``B01`` -> ``B1``, ``vv`` -> ``VV``."""
    return re.sub(r"^B0(\d)$", r"B\1", str(raw).upper())


def season_name(modality: str, when: np.datetime64) -> str:
    """A season folder name carrying the acquisition time the way v1 names do."""
    stamp = np.datetime_as_string(when.astype("datetime64[s]")).replace("-", "").replace(":", "")
    if modality.startswith("s1"):
        return f"S1X_IW_GRDH_1SDV_{stamp}_{stamp}_v11"
    return f"{stamp}_{stamp}_v11"


def _geo(ds, sample: int) -> dict[str, Any]:  # noqa: ANN001 - xarray.Dataset
    """CRS and transform of one sample when the shard carries x/y coordinates and a CRS."""
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    if "x" not in ds.variables or "y" not in ds.variables:
        return {}
    x = np.asarray(ds["x"].values)
    y = np.asarray(ds["y"].values)
    x, y = (x[sample], y[sample]) if x.ndim == 2 else (x, y)
    dx, dy = float(x[1] - x[0]), float(y[0] - y[1])
    geo = {"transform": from_origin(float(x[0]) - dx / 2, float(y[0]) + dy / 2, dx, dy)}
    crs = ds["crs"].values[sample] if "crs" in ds.variables else ds.attrs.get("crs")
    if crs is not None:
        geo["crs"] = CRS.from_user_input(int(crs) if np.issubdtype(np.asarray(crs).dtype, np.integer)
                                         else str(crs))
    return geo


def _sample_id(raw: Any, fallback: int) -> int:
    digits = re.match(r"\d+", str(raw))
    return int(digits[0]) if digits else fallback


def convert_zarr_shard(shard: Path, modality: str, folder: Path, keep: set[int] | None,
                       first_index: int, variable: str = "bands") -> int:
    """Write the kept samples of one v1.1 shard as ``<id>/<season>/<band>.tif``; return their count."""
    import rasterio
    import xarray as xr
    from zarr.storage import ZipStore

    store = ZipStore(shard, mode="r")
    try:
        ds = xr.open_zarr(store, consolidated=None)
        if variable not in ds:
            raise ValueError(f"{shard}: no variable {variable!r} (found {sorted(ds.data_vars)})")
        data = ds[variable]
        if data.ndim != 5:
            raise ValueError(f"{shard}: {variable} has dims {data.dims}, expected "
                             "(sample, time, band, y, x)")
        sample_dim, _, band_dim = data.dims[:3]
        bands = [band_name(b) for b in data[band_dim].values]
        if "time" not in ds.variables:
            raise ValueError(f"{shard}: no `time` variable with the acquisition times")
        times = np.asarray(ds["time"].values)
        count = 0
        for i, raw_id in enumerate(data[sample_dim].values):
            location = _sample_id(raw_id, first_index + i)
            if keep is not None and location not in keep:
                continue
            pixels = data.isel({sample_dim: i}).values
            for t in range(pixels.shape[0]):
                when = times[i, t] if times.ndim == 2 else times[t]
                season = folder / f"{location:07d}" / season_name(modality, when)
                season.mkdir(parents=True, exist_ok=True)
                profile = {"driver": "GTiff", "count": 1, "dtype": pixels.dtype.name,
                           "height": pixels.shape[-2], "width": pixels.shape[-1], **_geo(ds, i)}
                for b, band in enumerate(bands):
                    with rasterio.open(season / f"{band}.tif", "w", **profile) as dst:
                        dst.write(pixels[t, b], 1)
            count += 1
        return count
    finally:
        store.close()


def fetch_v11(settings: dict[str, Any], section: dict[str, Any], out: Path, keep: set[int] | None,
              *, progress: bool = True) -> list[Path]:
    """Download v1.1 shards (enough for ``max_locations`` or ``shards``) and convert the kept samples."""
    v11 = {"repo": V11_REPO, "revision": "main", "split": "train", "shard": V11_SHARD,
           "products": V11_PRODUCTS, "first_shard": 1, "variable": "bands", **section.get("v1_1", {})}
    limit = section.get("max_locations")
    count = v11.get("shards") or (math.ceil(limit / SAMPLES_PER_SHARD) if limit else None)
    if count is None:
        raise ValueError("data.real.ssl4eo.v1_1: set `shards` (or `max_locations`) to bound the download")
    written = []
    for modality in section.get("modalities", list(V11_PRODUCTS)):
        names = [v11["shard"].format(split=v11["split"], product=v11["products"][modality], index=index)
                 for index in range(v11["first_shard"], v11["first_shard"] + count)]
        shards = [fetch_repo_file(settings, {**v11, "md5": v11.get("md5", {})}, name,
                                  download_dir(settings, "ssl4eo_s12_v1_1") / modality, progress=progress)
                  for name in names]
        final = out / "ssl4eo_s12" / modality
        if final.exists():
            written.append(final)
            continue
        with atomic_path(final) as tmp:
            tmp.mkdir()
            for n, shard in enumerate(shards):
                convert_zarr_shard(shard, modality, tmp, keep,
                                   (v11["first_shard"] - 1 + n) * SAMPLES_PER_SHARD, v11["variable"])
        written.append(final)
    return written


def fetch_ssl4eo(settings: dict[str, Any], out: Path, *, progress: bool = True) -> list[Path]:
    """Fetch the selected SSL4EO-S12 locations in the format chosen by ``ssl4eo.format``."""
    section = {"format": "v1", "locations": "nol", **settings.get("ssl4eo", {})}
    keep = selected_ids(section, out)
    fetch = {"v1": fetch_v1, "v1.1": fetch_v11}.get(section["format"])
    if fetch is None:
        raise ValueError(f"data.real.ssl4eo.format must be v1 or v1.1, not {section['format']!r}")
    return fetch(settings, section, out, keep, progress=progress)
