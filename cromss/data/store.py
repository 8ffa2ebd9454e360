"""The Zarr store every stage after ingest reads: one store per dataset and split.

Layout (Zarr format 3, written with xarray, one chunk per sample and season, zstd):

- ``s1(sample, season, s1_band, y, x)`` float32, dB; NaN/nodata replaced by the band mean and
  flagged in ``s1_nodata(sample, season, y, x)`` (bool)
- ``s2(sample, season, s2_band, y, x)`` uint16, the 13 L1C bands B1..B12 in ``S2_BANDS`` order
- ``label(sample, season, y, x)`` uint8, class index, 255 = ignore
- ``truth(sample, season, y, x)`` uint8, optional: the true map where it is known (synthetic data)
- per sample: ``sample_id`` (the dimension coordinate), ``crs`` (EPSG code), ``transform`` (6 GDAL
  affine coefficients), ``time(sample, season)``
- attributes: dataset, split, classes and colours, label remap, normalisation statistics, source,
  version (see :func:`store_attrs`).

Stores are written in batches along ``sample`` and renamed into place when complete, so a reader
never sees a partial store.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from cromss import __version__
from cromss.atomic import atomic_path
from cromss.constants import (IGNORE_INDEX, NORMALISATION_RULE, S1_BANDS, S1_MEAN, S1_STD,
                              S2_BANDS, S2_MEAN, S2_STD)

if TYPE_CHECKING:  # xarray (with pandas) is imported only where a store is written or opened
    import xarray as xr

IMAGE_VARS = ("s1", "s2")
PIXEL_VARS = ("s1", "s2", "s1_nodata", "label", "truth")


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
        **extra,
    }


def make_batch(*, s1: np.ndarray, s2: np.ndarray, label: np.ndarray, sample_id: Sequence[str],
               crs: Sequence[int], transform: np.ndarray, time: np.ndarray,
               truth: np.ndarray | None = None) -> xr.Dataset:
    """Build one batch of samples as an xarray Dataset in the store layout.

    Shapes: s1 (N, T, 2, H, W), s2 (N, T, 13, H, W), label/truth (N, T, H, W), transform (N, 6),
    time (N, T) datetime64. NaN in s1 is replaced by the band mean and flagged in ``s1_nodata``.
    """
    s1 = np.asarray(s1, dtype=np.float32)
    nodata = ~np.isfinite(s1).all(axis=2)
    if nodata.any():
        fill = np.asarray(S1_MEAN, dtype=np.float32)[None, None, :, None, None]
        s1 = np.where(np.isfinite(s1), s1, fill)
    n, t, _, h, w = s1.shape
    if s2.shape[:2] != (n, t) or s2.shape[-2:] != (h, w) or label.shape != (n, t, h, w):
        raise ValueError(f"shapes disagree: s1 {s1.shape}, s2 {s2.shape}, label {label.shape}")
    dims = ("sample", "season")
    data = {
        "s1": ((*dims, "s1_band", "y", "x"), s1),
        "s2": ((*dims, "s2_band", "y", "x"), np.asarray(s2, dtype=np.uint16)),
        "s1_nodata": ((*dims, "y", "x"), nodata),
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


def _encoding(batch: xr.Dataset) -> dict[str, dict[str, Any]]:
    compressor = zarr.codecs.ZstdCodec(level=3)
    encoding: dict[str, dict[str, Any]] = {}
    for name, var in batch.data_vars.items():
        if name in PIXEL_VARS:
            chunks = tuple(1 if d in ("sample", "season") else var.sizes[d] for d in var.dims)
            encoding[name] = {"chunks": chunks, "compressors": (compressor,)}
    encoding["time"] = {**encoding.get("time", {}), "units": "seconds since 1970-01-01",
                        "dtype": "int64"}
    return encoding


class StoreWriter:
    """Write a store batch by batch; it appears under its final name only on :meth:`commit`.

    Use as a context manager: leaving the block with an exception removes everything written.
    """

    def __init__(self, path: str | os.PathLike, attrs: dict[str, Any]):
        self.path = Path(path)
        self.attrs = attrs
        self._atomic = atomic_path(self.path)
        self._tmp: Path | None = None
        self.num_samples = 0

    def __enter__(self) -> "StoreWriter":
        self._tmp = self._atomic.__enter__()
        return self

    def append(self, batch: xr.Dataset) -> None:
        """Append a batch made by :func:`make_batch` along ``sample``."""
        assert self._tmp is not None, "use StoreWriter as a context manager"
        batch = batch.assign_attrs(self.attrs)  # an append rewrites the group attributes
        if self.num_samples == 0:
            batch.to_zarr(self._tmp, mode="w", zarr_format=3, consolidated=False,
                          encoding=_encoding(batch))
        else:
            batch.to_zarr(self._tmp, append_dim="sample", consolidated=False)
        self.num_samples += batch.sizes["sample"]

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        if exc_type is None and self.num_samples == 0:
            exc = ValueError(f"{self.path}: no samples to write")
            self._atomic.__exit__(type(exc), exc, None)
            raise exc
        return self._atomic.__exit__(exc_type, exc, tb)


def open_store(path: str | os.PathLike) -> xr.Dataset:
    """Open a store lazily with xarray (no dask needed)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such Zarr store")
    import xarray as xr

    return xr.open_zarr(path, consolidated=False, chunks=None)


def open_arrays(path: str | os.PathLike) -> zarr.Group:
    """Open a store as a plain read-only Zarr group, the fast path for data loaders."""
    return zarr.open_group(str(path), mode="r", zarr_format=3)
