"""Overlapping tiles, smooth blending weights and the strip-by-strip inference loop.

Tiles of ``tile`` px overlap by ``overlap`` px; the last tile of a row or column is moved back so
that it ends at the scene's edge, so a scene of any size is covered to its edges without padding
(only a scene smaller than one tile is padded, by the predictor). Each tile's weight is the outer
product of two axis profiles. Along an edge shared with a neighbour the profile is 0 on the outer
``overlap // 4`` px (where zero padding inside the network differs most from the whole image),
then rises as sin² over the rest of the overlap to 1; along the scene's own border it is 1. The
two profiles of neighbouring tiles sum to 1 across their overlap, so regular tiles blend into a
partition of unity and no seam shows; every pixel's probabilities are divided by its summed weight.

Tiles are predicted one row of tiles at a time. Only the rows that the next row of tiles still
touches are kept, so memory is one strip (``tile`` x scene width x channels), whatever the
scene's height.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from cromss.errors import CromssError

ReadTile = Callable[[Window], tuple[dict[str, np.ndarray], np.ndarray]]
"""window -> (normalised inputs per modality (bands, h, w), valid pixels (h, w))."""
PredictBatch = Callable[[list[dict[str, np.ndarray]]], np.ndarray]
"""inputs of N tiles of one shape -> probabilities (N, channels, h, w)."""


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of the tiles along one axis: every ``tile - overlap`` px, the last one flush with
    the end; a single tile at 0 if the axis is shorter than a tile."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def axis_profile(size: int, overlap: int, lead_border: bool, trail_border: bool) -> np.ndarray:
    """Blending weights along one axis of a tile of ``size`` px (see the module docstring)."""
    margin = overlap // 4
    ramp = overlap - 2 * margin
    profile = np.ones(size, np.float32)
    if ramp:
        rise = np.sin(np.pi / 2 * (np.arange(ramp) + 0.5) / ramp) ** 2
        rising = np.concatenate([np.zeros(margin), rise]).astype(np.float32)
        if not lead_border:
            profile[:margin + ramp] = rising
        if not trail_border:
            profile[size - margin - ramp:] = np.minimum(profile[size - margin - ramp:],
                                                        rising[::-1])
    return profile


@dataclass(frozen=True)
class Tiling:
    """The tiles of a ``height`` x ``width`` scene."""

    height: int
    width: int
    tile: int = 256
    overlap: int = 64

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise CromssError(f"empty scene ({self.height} x {self.width} px)")
        if self.tile < 1 or not 0 <= 2 * self.overlap <= self.tile:
            raise CromssError(f"tile {self.tile} px with overlap {self.overlap} px: the overlap "
                              f"must be between 0 and half the tile")

    @property
    def rows(self) -> list[int]:
        return tile_starts(self.height, self.tile, self.overlap)

    @property
    def cols(self) -> list[int]:
        return tile_starts(self.width, self.tile, self.overlap)

    def window(self, top: int, left: int) -> Window:
        return Window(left, top, min(self.tile, self.width), min(self.tile, self.height))

    def weights(self, top: int, left: int) -> np.ndarray:
        """Blending weights (h, w) of the tile at (top, left)."""
        h, w = min(self.tile, self.height), min(self.tile, self.width)
        along_y = axis_profile(h, self.overlap, top == 0, top + h == self.height)
        along_x = axis_profile(w, self.overlap, left == 0, left + w == self.width)
        return along_y[:, None] * along_x[None, :]

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)


@dataclass(frozen=True)
class Strip:
    """Final rows ``[top, top + probabilities.shape[1])`` of the blended scene."""

    top: int
    probabilities: np.ndarray  # (channels, rows, width) float32
    valid: np.ndarray  # (rows, width) bool


def _batches(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def predict_strips(tiling: Tiling, read: ReadTile, predict: PredictBatch, channels: int,
                   batch_size: int = 8) -> Iterator[Strip]:
    """Blend the predictions of every tile, yielding the scene top to bottom in final strips.

    Pixels that are not valid in the input keep probability 0 and ``valid`` False.
    """
    height = min(tiling.tile, tiling.height)
    rows = tiling.rows
    acc = np.zeros((channels, height, tiling.width), np.float32)
    weight = np.zeros((height, tiling.width), np.float32)
    valid = np.zeros((height, tiling.width), bool)
    for index, top in enumerate(rows):
        for batch in _batches(tiling.cols, max(1, batch_size)):
            windows = [tiling.window(top, left) for left in batch]
            inputs, masks = zip(*(read(window) for window in windows))
            probabilities = predict(list(inputs))
            for window, mask, probs in zip(windows, masks, probabilities):
                cols = slice(window.col_off, window.col_off + window.width)
                w = tiling.weights(top, window.col_off)
                acc[:, :, cols] += probs * w
                weight[:, cols] += w
                valid[:, cols] = mask
        done = (rows[index + 1] - top) if index + 1 < len(rows) else height
        with np.errstate(invalid="ignore", divide="ignore"):
            blended = np.where(valid[:done], acc[:, :done] / weight[:done], 0).astype(np.float32)
        yield Strip(top, blended, valid[:done].copy())
        for buffer in (acc, weight, valid):  # keep the rows the next tiles still touch
            buffer[..., : height - done, :] = buffer[..., done:, :]
            buffer[..., height - done:, :] = 0
