"""A scene and a model in, a georeferenced map out: ``cromss map predict``."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rasterio

from cromss import logs
from cromss.errors import CromssError
from cromss.predict.output import MapWriter
from cromss.predict.predictor import Predictor, load_predictor
from cromss.predict.scene import SceneReader
from cromss.predict.tiling import Tiling, predict_strips

if TYPE_CHECKING:
    import numpy as np
    from rasterio.windows import Window

log = logging.getLogger(__name__)

GDAL_CACHE_MB = 128
"""GDAL's block cache while reading and writing (its default, 5 % of the RAM, would let memory
grow with the scene up to that share)."""


def predict_map(model: str | Path | Predictor, scene: Sequence[str | Path], out: str | Path, *,
                confidence: str | Path | None = None, probabilities: str | Path | None = None,
                tile: int = 256, overlap: int = 64, batch_size: int = 8, s1_units: str = "db",
                device: str | None = None, stac: dict[str, Any] | None = None) -> dict[str, Any]:
    """Map ``scene`` (files and folders; or the area ``stac``, see
    :func:`cromss.predict.stac_scene.stac_scene`) with ``model``; returns a summary (files,
    size, time, throughput)."""
    started = time.perf_counter()
    predictor = model if isinstance(model, Predictor) else load_predictor(model, device)
    if tile % 32:
        raise CromssError(f"tile {tile} px: must be a multiple of 32 (the encoders' stride)")
    needs = {m: predictor.bands(m) for m in predictor.modalities}
    if stac is not None:
        from cromss.predict.stac_scene import stac_scene

        bands, grid, s1_units = stac_scene(stac, needs)
        reader = SceneReader([], needs, s1_units=s1_units, bands=bands, grid=grid)
    else:
        reader = SceneReader(scene, needs, s1_units=s1_units)
    tiling = Tiling(reader.height, reader.width, tile, overlap)
    writer = MapWriter(Path(out), reader.crs, reader.transform, reader.width, reader.height,
                       predictor.classes, predictor.colors, predictor.branches,
                       confidence=Path(confidence) if confidence else None,
                       probabilities=Path(probabilities) if probabilities else None)

    def read(window: Window) -> tuple[dict[str, np.ndarray], np.ndarray]:
        raw, valid = reader.read(window)
        return {m: predictor.prepare(m, raw[m]) for m in predictor.modalities}, valid

    log.info("%s: %d x %d px in %d tiles of %d px (overlap %d) on %s", out, reader.width,
             reader.height, len(tiling), tile, overlap, predictor.device)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), reader, writer, logs.Progress(
            f"{out}", len(tiling), "tiles", logger=log) as progress:
        for strip in predict_strips(tiling, read, predictor, predictor.channels, batch_size):
            writer.write(strip)
            progress.update(len(tiling.cols))
    seconds = time.perf_counter() - started
    megapixels = reader.width * reader.height / 1e6
    return {"map": str(writer.out), "confidence": str(writer.confidence),
            "probabilities": str(probabilities) if probabilities else None,
            "model": predictor.source, "kind": predictor.kind,
            "modalities": list(predictor.modalities), "classes": predictor.classes,
            "width": reader.width, "height": reader.height, "tiles": len(tiling),
            "seconds": round(seconds, 3), "megapixels_per_second": round(megapixels / seconds, 3)}
