"""SSL4EO-S12 images: the v1 modality archives (split tar.gz parts) or v1.1 Zarr shards, as a subset.

v1 parts ``<modality>/<modality>.tar.gz.part<aa..>`` are downloaded (MD5 per part, torchgeo's
pinned revision by default) and streamed through one tar reader without joining them on disk;
only the selected locations are written, to ``<out>/ssl4eo_s12/{s1,s2c}/<id:07d>/<season>/<band>.tif``
(the folders the archives unpack to; :mod:`cromss.data.layouts.ssl4eo_s12`). A tree already there
(unpacked earlier or placed by hand) is left as it is and nothing is downloaded for it.

v1.1 shards (``{split}/{S1GRD,S2L1C}/ssl4eos12_{split}_seasonal_data_<n:06d>.zarr.zip`` in
``embed2scale/SSL4EO-S12-v1.1-Zarr``, Zarr v2 inside, 64 samples each) are opened with zarr 3's
``ZipStore`` and converted to the same GeoTIFF layout, season folders named by their ``file_id``.
Their acquisitions differ from v1, so NoLDO's noisy labels do not fit them: pair v1.1 with Dynamic
World labels fetched for their own dates (docs/sources.md). The webdataset release
(``embed2scale/SSL4EO-S12-v1.1``, ``ssl4eos12_shard_*.tar``) is not read.

``locations: nol`` keeps the SSL4EO-S12@NoL ids of ``dw_complete_ids.csv`` (fetch ``noldo`` first),
``all`` keeps every id; ``max_locations: N`` keeps the first N of those (in id order).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cromss.atomic import atomic_path
from cromss.data.layouts.noldo import IDS_CSV, NOL_DIR, read_ids
from cromss.data.layouts.ssl4eo_s12 import FOLDERS
from cromss.errors import CromssError
from cromss.settings import Real
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
V11_REPO = "embed2scale/SSL4EO-S12-v1.1-Zarr"  # the Zarr shards (zarr_dataset.py of the release)
V11_S2_OFFSET = 1000  # the Zarr release's S2 values carry +1000 (its zarr_dataset.py)
V11_SHARD = "{split}/{product}/ssl4eos12_{split}_seasonal_data_{index:06d}.zarr.zip"
V11_PRODUCTS = {"s1_grd": "S1GRD", "s2_l1c": "S2L1C"}
SAMPLES_PER_SHARD = 64
LOCATION_DIR = re.compile(r"^\d{7}$")


def nol_ids(csv_path: Path) -> list[int]:
    """Location ids of SSL4EO-S12@NoL in ``dw_complete_ids.csv`` (either published form)."""
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: the NoL id list is missing; run `cromss data fetch noldo` first "
                                "or set data.real.ssl4eo.locations: all")
    return sorted(int(location) for location, _ in read_ids(csv_path))


def selected_ids(real: Real, section: Mapping[str, Any], out: Path) -> set[int] | None:
    """The location ids to keep, or ``None`` for every location."""
    limit = section.get("max_locations")
    if section["locations"] == "nol":
        noldo_root = Path(real.local.noldo or out / "noldo")
        ids = nol_ids(noldo_root / NOL_DIR / IDS_CSV)
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


def fetch_v1(real: Real, section: Mapping[str, Any], out: Path, keep: set[int] | None,
             *, progress: bool = True) -> list[Path]:
    """Download the split archives of each modality and stream the kept locations out of them."""
    v1 = {"repo": V1_REPO, "revision": V1_REVISION, "parts": V1_PART_MD5, **section["v1"]}
    written = []
    for modality in section.get("modalities", list(V11_PRODUCTS)):
        final = out / "ssl4eo_s12" / FOLDERS[modality]
        if final.exists():  # unpacked earlier or placed by hand: never downloaded again
            written.append(final)
            continue
        parts_md5 = v1["parts"][modality]
        repo = {"repo": v1["repo"], "revision": v1["revision"],
                "md5": {f"{modality}/{modality}.tar.gz.part{s}": md5 for s, md5 in parts_md5.items()}}
        parts = [fetch_repo_file(real, repo, name, download_dir(real, "ssl4eo_s12"),
                                 progress=progress) for name in repo["md5"]]
        written.append(unpack_parts(parts, final, location_rename(keep)))
    return written


def band_name(raw: str) -> str:
    """SSL4EO-S12 v1 band file name of a v1.1 band label: ``B01`` -> ``B1``, ``vv`` -> ``VV``."""
    return re.sub(r"^B0(\d)$", r"B\1", str(raw).upper())


def _require(ds, shard: Path, names: tuple[str, ...]) -> None:  # noqa: ANN001 - xarray.Dataset
    missing = [n for n in names if n not in ds.variables]
    if missing:
        raise CromssError(f"{shard}: no {', '.join(missing)} (found {sorted(ds.variables)}); "
                          "not a shard of the published SSL4EO-S12 v1.1 Zarr layout")


def shard_transform(x: np.ndarray, y: np.ndarray):  # noqa: ANN201 - affine.Affine
    """The geotransform of pixel-centre coordinates ``x_`` / ``y_`` (metres of ``crs``)."""
    from rasterio.transform import from_origin
    dx, dy = float(x[1] - x[0]), float(y[0] - y[1])
    return from_origin(float(x[0]) - dx / 2, float(y[0]) + dy / 2, dx, dy)


def convert_zarr_shard(shard: Path, modality: str, folder: Path, keep: set[int] | None,
                       s2_offset: int = 0) -> int:
    """Write the kept samples of one v1.1 shard as ``<id>/<file_id>/<band>.tif``; return their count.

    The published shards (``DLR-MF-DAS/SSL4EO-S12-v1.1`` README) hold ``bands(sample, time, band,
    y, x)`` (S2 int16, S1 float16), ``sample`` ids such as ``'0080717'``, and per sample ``crs``
    (EPSG code), ``x_`` / ``y_`` (pixel-centre coordinates), ``time_`` and ``file_id`` (the product
    id, used as the season folder name as in v1). ``s2_offset`` (1000 in the Zarr release, whose
    values carry the +1000 offset of the newer ESA processing) is subtracted from S2.
    """
    import rasterio
    import xarray as xr
    from zarr.storage import ZipStore

    store = ZipStore(shard, mode="r")
    try:
        ds = xr.open_zarr(store, consolidated=None, chunks=None)
        _require(ds, shard, ("bands", "crs", "x_", "y_", "time_", "file_id"))
        data = ds["bands"]
        if data.dims != ("sample", "time", "band", "y", "x"):
            raise CromssError(f"{shard}: bands has dims {data.dims}, expected "
                              "(sample, time, band, y, x)")
        bands = [band_name(b) for b in data["band"].values]
        count = 0
        for i, raw_id in enumerate(data["sample"].values):
            digits = re.match(r"\d+", str(raw_id))
            if digits is None:
                raise ValueError(f"{shard}: sample id {raw_id!r} does not start with a location")
            location = int(digits[0])
            if keep is not None and location not in keep:
                continue
            pixels = data.isel(sample=i).values
            if modality == "s1_grd":
                pixels = pixels.astype(np.float32)
            else:
                pixels = np.clip(pixels.astype(np.int32) - s2_offset, 0, 65535).astype(np.uint16)
            profile = {"driver": "GTiff", "count": 1, "dtype": pixels.dtype.name,
                       "height": pixels.shape[-2], "width": pixels.shape[-1],
                       "crs": f"EPSG:{int(ds['crs'].values[i])}",
                       "transform": shard_transform(ds["x_"].values[i], ds["y_"].values[i])}
            for t, season in enumerate(ds["file_id"].values[i]):
                target = folder / f"{location:07d}" / str(season)
                target.mkdir(parents=True, exist_ok=True)
                for b, band in enumerate(bands):
                    with rasterio.open(target / f"{band}.tif", "w", **profile) as dst:
                        dst.write(pixels[t, b], 1)
            count += 1
        return count
    finally:
        store.close()


def fetch_v11(real: Real, section: Mapping[str, Any], out: Path, keep: set[int] | None,
              *, progress: bool = True) -> list[Path]:
    """Download v1.1 shards (enough for ``max_locations`` or ``shards``) and convert the kept samples."""
    v11 = {"repo": V11_REPO, "revision": "main", "split": "train", "shard": V11_SHARD,
           "products": V11_PRODUCTS, "first_shard": 1, "s2_offset": V11_S2_OFFSET,
           **section["v1_1"]}
    limit = section.get("max_locations")
    count = v11.get("shards") or (math.ceil(limit / SAMPLES_PER_SHARD) if limit else None)
    if count is None:
        raise CromssError("data.real.ssl4eo.v1_1: set `shards` (or `max_locations`) to bound the download")
    written = []
    for modality in section.get("modalities", list(V11_PRODUCTS)):
        final = out / "ssl4eo_s12" / FOLDERS[modality]
        if final.exists():
            written.append(final)
            continue
        names = [v11["shard"].format(split=v11["split"], product=v11["products"][modality], index=index)
                 for index in range(v11["first_shard"], v11["first_shard"] + count)]
        shards = [fetch_repo_file(real, {**v11, "md5": v11.get("md5", {})}, name,
                                  download_dir(real, "ssl4eo_s12_v1_1") / modality, progress=progress)
                  for name in names]
        with atomic_path(final) as tmp:
            tmp.mkdir()
            converted = sum(convert_zarr_shard(shard, modality, tmp, keep, int(v11["s2_offset"]))
                            for shard in shards)
            if converted == 0:
                raise CromssError(f"{', '.join(map(str, shards))}: no sample converted (none of the "
                                  f"{len(keep or ())} selected location ids is in these shards); "
                                  "set data.real.ssl4eo.v1_1.first_shard/shards to the shards "
                                  "holding them, or locations: all")
        written.append(final)
    return written


def fetch_ssl4eo(real: Real, out: Path, *, progress: bool = True) -> list[Path]:
    """Fetch the selected SSL4EO-S12 locations in the format chosen by ``ssl4eo.format``."""
    section = real.ssl4eo
    keep = selected_ids(real, section, out)
    fetch = {"v1": fetch_v1, "v1.1": fetch_v11}.get(section["format"])
    if fetch is None:
        raise CromssError(f"data.real.ssl4eo.format must be v1 or v1.1, not {section['format']!r}")
    return fetch(real, section, out, keep, progress=progress)
