"""Simulated per-tile confusion matrices for the claims check."""

from __future__ import annotations

import numpy as np


def simulated_tiles(rng: np.random.Generator, difficulty: np.ndarray, quality: float,
                    classes: int = 3, pixels: int = 200) -> np.ndarray:
    """One flattened confusion matrix per tile (tiles, classes * classes): a pixel is right with
    probability sigmoid(quality - difficulty of its tile), else one of the other classes."""
    tiles = np.zeros((len(difficulty), classes, classes), dtype=np.int64)
    for index, hardness in enumerate(difficulty):
        truth = rng.integers(0, classes, pixels)
        right = rng.random(pixels) < 1.0 / (1.0 + np.exp(hardness - quality))
        wrong = (truth + rng.integers(1, classes, pixels)) % classes
        np.add.at(tiles[index], (truth, np.where(right, truth, wrong)), 1)
    return tiles.reshape(len(difficulty), -1)
