"""The Zarr store every stage after ingest reads: one store per dataset and split.

Layout (Zarr format 3, written with xarray; per chunk the byte shuffle (multi-byte types: the
``numcodecs.shuffle`` codec of zarr-extensions, which zarr-python and zarrs read), zstd with its
content checksum, then a crc32c checksum (stores written before the shuffle or the checksums read
as before)); images in one chunk per sample and season, the small per-pixel maps and flags in
one chunk per sample, all seasons: an item reads few chunks; the chunks of ``SHARD_SAMPLES``
samples are stored in one shard file per array (Zarr sharding, its index checked by its own
crc32c), so the file count grows with shards, not samples; stores written before sharding read
as before):

- ``s1(sample, season, s1_band, y, x)`` float32, dB; NaN/nodata replaced by the band mean and
  flagged in ``s1_nodata(sample, season, y, x)`` (bool)
- ``s2(sample, season, s2_band, y, x)`` uint16, the 13 L1C bands B1..B12 in ``S2_BANDS`` order,
  as L1C digital numbers (:func:`~cromss.data.layouts.rasters.s2_digital_numbers` states what
  ingest accepts); values without data are 0, their pixels flagged in
  ``s2_nodata(sample, season, y, x)`` (bool), where training ignores the label
- ``label(sample, season, y, x)`` uint8, class index, 255 = ignore
- ``truth(sample, season, y, x)`` uint8, optional: the true map where it is known (synthetic data)
- per sample: ``sample_id`` (the dimension coordinate), ``crs`` (EPSG code), ``transform`` (6 GDAL
  affine coefficients), ``time(sample, season)``
- attributes: dataset, split, classes and colours, label remap, normalisation statistics, source,
  version (see :func:`store_attrs`).

Stores are created at their final shape (:func:`create_store`) and filled shard by shard
(:func:`write_region`, every chunk, even an empty one, so a missing shard file means damage), by
one or many jobs (:mod:`cromss.data.partitioned`), and renamed into place when complete, so a
reader never sees a partial store.
Every stage opens a store through :func:`open_arrays`, which validates it first. The loaders read
through :func:`read_selections`: a chunk that fails its checksum or cannot be decoded, and label
values outside the store's classes (:func:`check_label_values`), raise CromssError naming the store,
array and chunk.
"""

from __future__ import annotations

import asyncio
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.codecs.numcodecs import Shuffle

from cromss import __version__
from cromss.atomic import atomic_path, recover
from cromss.constants import (IGNORE_INDEX, NORMALISATION_RULE, S1_BANDS, S1_MEAN, S1_STD,
                              S2_BANDS, S2_DN_MAX, S2_MEAN, S2_STD)
from cromss.errors import CromssError

if TYPE_CHECKING:  # xarray (with pandas) is imported only where a store is written or opened

    import xarray as xr

IMAGE_VARS = ("s1", "s2")
PIXEL_VARS = ("s1", "s2", "s1_nodata", "s2_nodata", "label", "truth")
LABEL_ARRAYS = ("label", "truth")
READ_PIPELINE = {"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}
"""Arrays opened for reading decode their chunks with zarrs (Rust; 2-3x faster per chunk than
zarr-python's own pipeline, benchmarks/README.md). Stores are written by zarr-python's pipeline,
so their bytes do not depend on it."""
REQUIRED_ATTRS = ("dataset", "split", "num_classes", "class_names", "ignore_index", "s1_bands",
                  "s2_bands", "normalisation", "cromss_version")
SNAKEMAKE_MARKER = ".snakemake_timestamp"
"""The file Snakemake writes into every ``directory()`` output, a store among them: zarr lists
it with the store's members and warns that it is no part of the hierarchy, in every job that
reads a store. It is expected there, so that one warning is silenced (any other stays)."""
warnings.filterwarnings("ignore", message=rf"Object at {re.escape(SNAKEMAKE_MARKER)} is not "
                        "recognized as a component of a Zarr hierarchy")
warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3 "
                        "specification")  # the byte shuffle of _compressors, on every open


def store_attrs(*, dataset: str, split: str, classes: Sequence[str], colors: Sequence[str],
                label_remap: dict[int, int], source: str, **extra: Any) -> dict[str, Any]:
    """The attributes every store carries."""
    return {
        "dataset": dataset,
        "split": split,
        "num_classes": len(classes),
        "class_names": list(classes),
        "class_colors": list(colors),
        "ignore_index": IGNORE_INDEX,
        "label_remap": {str(k): int(v) for k, v in sorted(label_remap.items())},
        "s1_bands": list(S1_BANDS),
        "s2_bands": list(S2_BANDS),
        "s1_mean": list(S1_MEAN),
        "s1_std": list(S1_STD),
        "s2_mean": list(S2_MEAN),
        "s2_std": list(S2_STD),
        "normalisation": NORMALISATION_RULE,
        "source": source,
        "cromss_version": __version__,
        "all_chunks_written": True,
        **extra,
    }


def make_batch(*, s1: np.ndarray, s2: np.ndarray, label: np.ndarray, sample_id: Sequence[str],
               crs: Sequence[int], transform: np.ndarray, time: np.ndarray,
               truth: np.ndarray | None = None) -> xr.Dataset:
    """Build one batch of samples as an xarray Dataset in the store layout.

    Shapes: s1 (N, T, 2, H, W), s2 (N, T, 13, H, W), label/truth (N, T, H, W), transform (N, 6),
    time (N, T) datetime64. NaN in s1 is replaced by the band mean and flagged in ``s1_nodata``;
    s2 are digital numbers (:func:`s2_digital_numbers`), NaN becomes 0, flagged in ``s2_nodata``.
    """
    s1 = np.asarray(s1, dtype=np.float32)
    nodata = ~np.isfinite(s1).all(axis=2)
    if nodata.any():
        fill = np.asarray(S1_MEAN, dtype=np.float32)[None, None, :, None, None]
        s1 = np.where(np.isfinite(s1), s1, fill)
    s2 = np.asarray(s2)
    s2_nodata = np.zeros(label.shape, bool)
    if s2.dtype.kind == "f":
        s2_nodata = ~np.isfinite(s2).all(axis=2)
        s2 = np.where(np.isfinite(s2), s2, 0)
    if s2.dtype != np.uint16 and s2.size and (s2.min() < 0 or s2.max() > S2_DN_MAX):
        raise CromssError(f"s2 values {s2.min()}..{s2.max()} outside the uint16 range of L1C "
                          "digital numbers (see s2_digital_numbers)")
    n, t, _, h, w = s1.shape
    if s2.shape[:2] != (n, t) or s2.shape[-2:] != (h, w) or label.shape != (n, t, h, w):
        raise CromssError(f"shapes disagree: s1 {s1.shape}, s2 {s2.shape}, label {label.shape}")
    dims = ("sample", "season")
    data = {
        "s1": ((*dims, "s1_band", "y", "x"), s1),
        "s2": ((*dims, "s2_band", "y", "x"), np.asarray(s2, dtype=np.uint16)),
        "s1_nodata": ((*dims, "y", "x"), nodata),
        "s2_nodata": ((*dims, "y", "x"), s2_nodata),
        "label": ((*dims, "y", "x"), np.asarray(label, dtype=np.uint8)),
        "crs": (("sample",), np.asarray(crs, dtype=np.int32)),
        "transform": (("sample", "affine"), np.asarray(transform, dtype=np.float64)),
        "time": (dims, np.asarray(time, dtype="datetime64[ns]")),
    }
    if truth is not None:
        data["truth"] = ((*dims, "y", "x"), np.asarray(truth, dtype=np.uint8))
    import xarray as xr

    return xr.Dataset(
        data,
        coords={"sample": np.asarray(sample_id, dtype=object),
                "s1_band": np.asarray(S1_BANDS, dtype=object),
                "s2_band": np.asarray(S2_BANDS, dtype=object)},
    )


SHARD_SAMPLES = 16
"""Samples per shard (and per write): one file per shard and array, whatever the sample count."""


ZSTD_LEVEL = 1
"""zstd's level for the pixel arrays: after the byte shuffle, level 3 saves 2 % more bytes for
1.3x the encoding CPU (benchmarks/README.md, "Where ingest's CPU goes")."""


def _compressors(dtype: np.dtype) -> tuple[Any, ...]:
    """A pixel array's bytes-to-bytes codecs: the byte shuffle (multi-byte types: the bytes of
    like significance together, so zstd finds their runs), zstd with its frame checksum, crc32c.

    A flipped bit or a cut chunk is an error on read, whichever pipeline reads it: zarr-python
    checks each chunk's crc32c, zarrs (the loaders' reader) skips the crc32c of chunks it reads
    from inside a shard but checks the zstd frame's own content checksum; the sharding codec
    checks each shard's index with its own crc32c."""
    shuffle = (Shuffle(elementsize=dtype.itemsize),) if dtype.itemsize > 1 else ()
    return (*shuffle, zarr.codecs.ZstdCodec(level=ZSTD_LEVEL, checksum=True),
            zarr.codecs.Crc32cCodec())


def _encoding(batch: xr.Dataset, shard_samples: int = SHARD_SAMPLES) -> dict[str, dict[str, Any]]:
    encoding: dict[str, dict[str, Any]] = {}
    for key, var in {**batch.data_vars, "sample": batch["sample"]}.items():
        name = str(key)
        if "sample" not in var.dims:
            continue
        if name in PIXEL_VARS:
            whole = ("sample", "season") if name in IMAGE_VARS else ("sample",)
            chunks = tuple(1 if d in whole else var.sizes[d] for d in var.dims)
            shards = tuple(shard_samples if d == "sample" else var.sizes[d] for d in var.dims)
            encoding[name] = {"chunks": chunks, "shards": shards,
                              "compressors": _compressors(var.dtype)}
        else:  # small per-sample arrays: one chunk per shard of the images
            encoding[name] = {"chunks": tuple(shard_samples if d == "sample" else var.sizes[d]
                                              for d in var.dims)}
    encoding["time"] = {**encoding.get("time", {}), "units": "seconds since 1970-01-01",
                        "dtype": "int64"}
    return encoding


def create_store(path: str | os.PathLike, template: xr.Dataset, num_samples: int,
                 attrs: dict[str, Any], shard_samples: int = SHARD_SAMPLES) -> None:
    """Create at ``path`` the empty store of ``num_samples`` samples shaped like ``template`` (a
    batch from :func:`make_batch`), its arrays at their final shape, no chunk written: writers
    then fill disjoint regions of it (:func:`write_region`)."""
    template = template.isel(sample=slice(0, 1)).assign_attrs(dict(attrs))
    template.to_zarr(path, mode="w", zarr_format=3, consolidated=False,
                     encoding=_encoding(template, shard_samples), write_empty_chunks=True)
    group = zarr.open_group(str(path), mode="r+", zarr_format=3)
    for _, array in group.arrays():
        if "sample" in (array.metadata.dimension_names or ()):
            array.resize((0, *array.shape[1:]))  # drops the template's chunks
            array.resize((num_samples, *array.shape[1:]))


def write_region(path: str | os.PathLike, batch: xr.Dataset, start: int) -> None:
    """Write ``batch`` at samples ``start`` onwards of the store made by :func:`create_store`
    (``start`` and the batch's end, unless it is the store's end, on shard boundaries)."""
    region = slice(start, start + batch.sizes["sample"])
    try:
        batch.drop_vars([n for n, v in batch.variables.items() if "sample" not in v.dims]).to_zarr(
            path, mode="r+", consolidated=False, write_empty_chunks=True, region={"sample": region})
        # xarray leaves index coordinates out of region writes
        zarr.open_array(str(Path(path) / "sample"), mode="r+")[region] = batch["sample"].values
    except BaseException:
        _settle_zarr()
        raise


def update_attrs(path: str | os.PathLike, changes: dict[str, Any], drop: Sequence[str] = ()
                 ) -> None:
    """Update the group attributes of the store at ``path``, removing those in ``drop``."""
    group = zarr.open_group(str(path), mode="r+", zarr_format=3)
    attrs = {k: v for k, v in group.attrs.asdict().items() if k not in drop}
    group.attrs.clear()
    group.attrs.update({**attrs, **changes})


def _settle_zarr() -> None:
    """Wait for the chunk writes zarr still runs after one of them failed (disk full): they would
    otherwise create chunk folders in the partial store after it was removed."""
    from zarr.core.sync import sync

    async def rest() -> None:
        current = asyncio.current_task()
        await asyncio.gather(*(task for task in asyncio.all_tasks() if task is not current),
                             return_exceptions=True)

    sync(rest())


def save_store(path: str | os.PathLike, batch: xr.Dataset, attrs: dict[str, Any],
                shard_samples: int = SHARD_SAMPLES) -> Path:
    """Write ``batch`` as a whole store at ``path`` atomically (small stores made in one go)."""
    with atomic_path(path) as tmp:
        create_store(tmp, batch, batch.sizes["sample"], attrs, shard_samples)
        for start in range(0, batch.sizes["sample"], shard_samples):
            write_region(tmp, batch.isel(sample=slice(start, start + shard_samples)), start)
    return Path(path)


def open_store(path: str | os.PathLike) -> xr.Dataset:
    """Open a validated store lazily with xarray (no dask needed)."""
    import xarray as xr

    open_arrays(path)
    return xr.open_zarr(path, consolidated=False, chunks=None)


def read_selections(requests: Sequence[tuple[zarr.Array, tuple]]) -> list[np.ndarray]:
    """Read many ``(array, selection)`` pairs in one call: zarr fetches and decodes all their
    chunks concurrently, in one trip to its event loop instead of one per read. A chunk that
    cannot be read (checksum mismatch, truncated, missing) raises ValueError naming the store,
    array and chunk."""
    from zarr.core.sync import sync

    async def gather() -> list[Any]:
        return await asyncio.gather(*(array.async_array.getitem(selection)
                                      for array, selection in requests), return_exceptions=True)

    values = sync(gather())
    for (array, selection), value in zip(requests, values):
        if isinstance(value, Exception):
            raise CromssError(f"{chunk_name(array, selection)}: cannot be read ({value}); the "
                              "store is damaged, ingest it again") from value
    return [np.asarray(value) for value in values]


def chunk_name(array: zarr.Array, selection: tuple) -> str:
    """``STORE: array NAME, chunk c/i/j/...`` read by a basic ``selection`` (``*``: several)."""
    def keys(grid: tuple[int, ...]) -> str:
        found = []
        for dim, (size, chunk) in enumerate(zip(array.shape, grid)):
            index = selection[dim] if dim < len(selection) else slice(None)
            if isinstance(index, (int, np.integer)):
                found.append(str(int(index) % size // chunk))
            else:
                found.append("0" if size <= chunk else "*")
        return "c/" + "/".join(found)

    store = array.store_path.store
    name = f"{getattr(store, 'root', store)}: array {array.path}, chunk {keys(array.chunks)}"
    return name if array.shards is None else f"{name} (in shard file {keys(array.shards)})"


def check_label_values(values: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    """``values`` (labels read from a store) if every one is a class index or the ignore index;
    otherwise ValueError naming ``where`` (:func:`chunk_name`) and the values."""
    bad = (values >= num_classes) & (values != IGNORE_INDEX)
    if bad.any():
        found = np.unique(values[bad])
        raise CromssError(f"{where}: label values {found[:8].tolist()} are not classes of this "
                          f"store (0..{num_classes - 1}, {IGNORE_INDEX} = ignore); the store is "
                          "damaged or was not written by `cromss data ingest`")
    return values


def open_array(group: zarr.Group, name: str) -> zarr.Array:
    """Array ``name`` of a group from :func:`open_arrays`, its chunks decoded by zarrs."""
    with zarr.config.set(READ_PIPELINE):  # the pipeline is chosen when the array is opened
        return group[name]


def open_arrays(path: str | os.PathLike, *, validate: bool = True) -> zarr.Group:
    """Open a store as a plain read-only Zarr group, the fast path for data loaders.

    With ``validate`` (every stage's first open; data-loader workers skip it) the store must be
    as ingest writes it (:func:`check_store`), or ValueError names the store and the problem.
    """
    path = Path(path)
    recover(path)  # a store swap interrupted by a crash: the previous version comes back
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such Zarr store")
    try:
        group = zarr.open_group(str(path), mode="r", zarr_format=3)
    except Exception as err:  # zarr raises FileNotFoundError, ValueError, JSON errors ...
        raise CromssError(f"{path}: not a readable Zarr v3 store ({type(err).__name__}: {err})") from err
    if validate:
        key = (str(path.resolve()), (path / "zarr.json").stat().st_mtime_ns)
        if key not in _VALIDATED:  # a stage opens its store several times: list chunks once
            check_store(group, path)
            _VALIDATED.add(key)
    return group


_VALIDATED: set[tuple[str, int]] = set()


def check_store(group: zarr.Group, path: Path) -> None:
    """Arrays present with the ingest's types, shapes that agree, no missing chunk, attributes."""
    missing = [name for name in REQUIRED_ATTRS if name not in group.attrs]
    if missing:
        raise CromssError(f"{path}: attributes {missing} missing; not a store written by "
                          "`cromss data ingest`")
    arrays = set(group.array_keys())
    absent = [name for name in ("s1", "s2", "label", "s1_nodata") if name not in arrays]
    if absent:
        raise CromssError(f"{path}: arrays {absent} missing (has {sorted(arrays)})")
    label = group["label"].shape
    if len(label) != 4:
        raise CromssError(f"{path}: label has shape {label}, expected (sample, season, y, x)")
    n, t, h, w = label
    expected = {"s1": ((n, t, len(group.attrs["s1_bands"]), h, w), "float32"),
                "s2": ((n, t, len(group.attrs["s2_bands"]), h, w), "uint16"),
                "label": (label, "uint8"), "truth": (label, "uint8"),
                "s1_nodata": (label, "bool"), "s2_nodata": (label, "bool")}
    for name, (shape, dtype) in expected.items():
        if name not in arrays:
            continue
        array = group[name]
        if array.shape != shape or str(array.dtype) != dtype:
            raise CromssError(f"{path}: {name} is {array.dtype} {array.shape}, expected {dtype} "
                              f"{shape} to match label {label}")
        if group.attrs.get("all_chunks_written"):
            _check_complete(array, name, path)
    num_classes = int(group.attrs["num_classes"])
    if num_classes != len(group.attrs["class_names"]):
        raise CromssError(f"{path}: num_classes {num_classes} but {len(group.attrs['class_names'])}"
                          " class names")


def _check_complete(array: zarr.Array, name: str, path: Path) -> None:
    """Every chunk file (every shard file of a sharded array: a listing that grows with the
    shards, not the chunks) is there."""
    if array.shards is None:
        found, expected, what = array.nchunks_initialized, array.nchunks, "chunks"
    else:
        found, expected, what = array._nshards_initialized, array._nshards, "shards"
    if found != expected:
        raise CromssError(f"{path}: {name} has {expected - found} of {expected} {what} missing; "
                          "the store is damaged, ingest it again")
