"""Damaging a copy of the raw world and checking that ingest refuses it cleanly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from cromss.data.ingest import ingest

DW_TILES = Path("noldo/ssl4eo_s12_dw/dw_train")


def rewrite(path: Path, data: np.ndarray | None = None, **profile) -> None:
    """Rewrite a GeoTIFF with other data and/or profile entries."""
    with rasterio.open(path) as src:
        meta = src.profile
        array = src.read() if data is None else data
    meta.update(count=array.shape[0], dtype=array.dtype, **profile)
    with rasterio.open(path, "w", **meta) as dst:
        dst.write(array)


def assert_fails_cleanly(store: str, raw: Path, tmp_path: Path, error, match: str) -> None:
    out = tmp_path / "data" / f"{store}.zarr"
    with pytest.raises(error, match=match):
        ingest(store, raw, out, shard_samples=2)
    assert not out.exists() and list(out.parent.iterdir()) == []
