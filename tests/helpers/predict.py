"""A small fully convolutional predictor and a 13-band L1C scene for the map-inference tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin
from torch import nn

from cromss.constants import DW_CLASSES, DW_COLORS, S2_BANDS, input_normalisation
from cromss.data.synthetic import write_tif
from cromss.predict.predictor import Predictor

CLASSES = 4

UTM = from_origin(600_000.0, 5_300_000.0, 10.0, 10.0)


def conv_predictor(seed: int = 0) -> Predictor:
    """A small fully convolutional S2 model (receptive field 5 px, within the zero-weight margin
    of the blending) so that tiles and the whole image must agree exactly."""
    torch.manual_seed(seed)
    module = nn.Sequential(nn.Conv2d(13, 8, 3, padding=1), nn.ReLU(),
                           nn.Conv2d(8, CLASSES, 3, padding=1)).eval()
    return Predictor(module, "finetuned", ("s2",), {"s2": input_normalisation("s2", 13)},
                     list(DW_CLASSES[:CLASSES]), list(DW_COLORS[:CLASSES]), "conv")


def s2_scene(path: Path, height: int, width: int, seed: int = 0, crs: int = 32633,
             transform=UTM) -> np.ndarray:
    """A smooth random 13-band L1C scene in one GeoTIFF (band descriptions B1..B12)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(300, 4000, (13, height // 8 + 2, width // 8 + 2))
    data = np.kron(base, np.ones((8, 8)))[:, :height, :width]
    data = (data + rng.integers(0, 200, data.shape)).astype(np.uint16)
    write_tif(path, data, crs, transform)
    with rasterio.open(path, "r+") as dst:
        for index, band in enumerate(S2_BANDS, start=1):
            dst.set_band_description(index, band)
    return data
