"""The map files: class map and confidence as Cloud-Optimized GeoTIFFs, probabilities as Zarr.

- class map: uint8 class indices, the classes' colour table, nodata 255, mode overviews (each
  overview pixel the most frequent class below it), on the scene's grid (same CRS, transform and
  size); beside it the class names for GIS tools (GDAL's ``map.tif.aux.xml``, QGIS's ``map.qml``,
  :mod:`cromss.predict.styles`);
- confidence: float32, band 1 the maximum class probability, and for a fusion model band 2 the
  cross-modal agreement ``sum_c min(p_s1[c], p_s2[c])`` (1 where both branches give the same
  distribution, 0 where they share nothing); NaN where there is no prediction; averaged overviews;
- probabilities (optional): a Zarr v3 array ``(class, y, x)`` float32, NaN at nodata, with the
  class names, CRS and transform as attributes.

Strips are written into tiled GeoTIFFs in a temporary folder beside the outputs, which GDAL's COG
driver then copies (adding the overviews); every output appears under its name only once complete.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from matplotlib.colors import to_rgb
from rasterio.windows import Window

from cromss.atomic import atomic_path, naming_failures, scratch_dir
from cromss.constants import IGNORE_INDEX
from cromss.predict.styles import write_category_names, write_qgis_style
from cromss.predict.tiling import Strip

NODATA_CLASS = IGNORE_INDEX
BLOCK = 512


def confidence_path(out: str | Path) -> Path:
    """Default confidence file beside a class map: ``map.tif`` -> ``map_confidence.tif``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_confidence{out.suffix or '.tif'}")


def colour_table(colors: list[str]) -> dict[int, tuple[int, int, int, int]]:
    table: dict[int, tuple[int, int, int, int]] = {}
    for i, color in enumerate(colors):
        red, green, blue = (round(255 * c) for c in to_rgb(color))
        table[i] = (red, green, blue, 255)
    table[NODATA_CLASS] = (0, 0, 0, 0)
    return table


def summarise_strip(probabilities: np.ndarray, valid: np.ndarray, classes: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class map uint8, confidence bands (1 or 2, rows, w) float32, class probabilities)
    of blended probabilities (branches * classes, rows, w)."""
    branches = probabilities.reshape(-1, classes, *probabilities.shape[1:])
    fused = branches.mean(0)
    labels = np.where(valid, fused.argmax(0), NODATA_CLASS).astype(np.uint8)
    bands = [fused.max(0)]
    if len(branches) == 2:
        bands.append(np.minimum(branches[0], branches[1]).sum(0))
    confidence = np.where(valid, np.stack(bands), np.nan).astype(np.float32)
    return labels, confidence, np.where(valid, fused, np.nan).astype(np.float32)


@dataclass
class MapWriter:
    """Write a scene's map strip by strip; the files appear when the ``with`` block succeeds."""

    out: Path
    crs: Any
    transform: Any
    width: int
    height: int
    classes: list[str]
    colors: list[str]
    branches: int = 1
    confidence: Path | None = None
    probabilities: Path | None = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.confidence = Path(self.confidence) if self.confidence else confidence_path(self.out)
        self._stack: contextlib.ExitStack | None = None

    def _profile(self, count: int, dtype: str, nodata: float) -> dict[str, Any]:
        return {"driver": "GTiff", "width": self.width, "height": self.height, "count": count,
                "dtype": dtype, "nodata": nodata, "crs": self.crs, "transform": self.transform,
                "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate"}

    def __enter__(self) -> MapWriter:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(scratch_dir(self.out))
        self._labels = self._stack.enter_context(rasterio.open(
            self._tmp / "labels.tif", "w", **self._profile(1, "uint8", NODATA_CLASS)))
        self._labels.write_colormap(1, colour_table(self.colors))
        self._labels.set_band_description(1, "class")
        self._labels.update_tags(classes=json.dumps(self.classes))
        bands = 2 if self.branches == 2 else 1
        self._conf = self._stack.enter_context(rasterio.open(
            self._tmp / "confidence.tif", "w", **self._profile(bands, "float32", float("nan"))))
        self._conf.set_band_description(1, "confidence (max class probability)")
        if bands == 2:
            self._conf.set_band_description(2, "cross-modal agreement (sum of min(p_s1, p_s2))")
        self._probs = None
        if self.probabilities is not None:
            import zarr

            self._probs = zarr.create_array(
                store=str(self._tmp / "probabilities.zarr"), zarr_format=3,
                shape=(len(self.classes), self.height, self.width),
                chunks=(len(self.classes), BLOCK // 2, BLOCK // 2), dtype="float32",
                fill_value=float("nan"), dimension_names=("class", "y", "x"),
                attributes={"classes": self.classes, "crs": self.crs.to_wkt(),
                            "transform": list(self.transform)[:6]})
        return self

    def write(self, strip: Strip) -> None:
        labels, confidence, probabilities = summarise_strip(strip.probabilities, strip.valid,
                                                            len(self.classes))
        window = Window(0, strip.top, self.width, labels.shape[0])
        with naming_failures(self.out):  # disk full: GDAL's and zarr's errors name no file
            self._labels.write(labels, 1, window=window)
            self._conf.write(confidence, window=window)
            if self._probs is not None:
                self._probs[:, strip.top:strip.top + labels.shape[0]] = probabilities

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        assert self._stack is not None
        try:
            if exc_type is None:
                with naming_failures(self.out):
                    self._labels.close()
                    self._conf.close()
                    self._publish()
        finally:
            self._stack.close()

    def _publish(self) -> None:
        with atomic_path(self.out) as tmp:
            rasterio.shutil.copy(self._tmp / "labels.tif", tmp, driver="COG", COMPRESS="DEFLATE",
                                 BLOCKSIZE=BLOCK, OVERVIEW_RESAMPLING="MODE")
        write_category_names(self.out, self.classes)
        write_qgis_style(self.out, self.classes, self.colors)
        assert self.confidence is not None  # set in __post_init__
        with atomic_path(self.confidence) as tmp:
            rasterio.shutil.copy(self._tmp / "confidence.tif", tmp, driver="COG",
                                 COMPRESS="DEFLATE", PREDICTOR="YES", BLOCKSIZE=BLOCK,
                                 OVERVIEW_RESAMPLING="AVERAGE")
        if self.probabilities is not None:
            with atomic_path(self.probabilities) as tmp:
                (self._tmp / "probabilities.zarr").rename(tmp)
