"""How the labels depart from the truth: noisy Dynamic World maps, DW expert and OSM rasters.

Noisy DW labels corrupt the seasonal truth realistically (shifted boundaries, confusions between
similar classes, season-specific errors, errors under clouds) at a set rate.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cromss.data.scene import (DW_SNOW, FINE_TO_OSM, LAKE, RESIDENTIAL, RIVER, ROAD,
                               smooth_field)

DW_EXPERT_UNLABELED, DW_EXPERT_CLOUD = 0, 10

# DW index -> similar classes that noisy labels confuse it with.
DW_CONFUSIONS = {0: (3,), 1: (5, 2), 2: (4, 5), 3: (0, 2), 4: (2, 7), 5: (2, 1, 7), 6: (7, 2),
                 7: (6, 5), 8: (7, 0)}
# season (0 winter, 1 spring, 2 summer, 3 autumn) -> {DW index: the class DW mistakes it for}
SEASONAL_CONFUSIONS = {0: {4: 7, 2: 7, 1: 5}, 1: {4: 2}, 2: {2: 4}, 3: {4: 7}}


def warp_labels(rng: np.random.Generator, labels: np.ndarray, amplitude: float) -> np.ndarray:
    """Shift class boundaries by a smooth random displacement field (nearest neighbour)."""
    size = labels.shape[0]
    dy, dx = (amplitude * smooth_field(rng, size, 6) for _ in range(2))
    y, x = np.mgrid[:size, :size]
    return ndimage.map_coordinates(labels, [y + dy, x + dx], order=0, mode="nearest")


def confused_labels(rng: np.random.Generator, truth: np.ndarray, season: int) -> np.ndarray:
    """For each pixel the class DW would mistake it for, coherent over blobs."""
    pick = ndimage.uniform_filter(rng.random(truth.shape), 9)  # smooth in (0, 1)
    pick = (pick - pick.min()) / (np.ptp(pick) + 1e-12)
    alternative = truth.copy()
    for cls, options in DW_CONFUSIONS.items():
        choice = np.minimum((pick * len(options)).astype(int), len(options) - 1)
        alternative = np.where(truth == cls, np.asarray(options)[choice], alternative)
    for cls, mistaken in SEASONAL_CONFUSIONS[season].items():
        alternative[truth == cls] = mistaken
    return alternative.astype(np.uint8)


def noisy_dw_labels(rng: np.random.Generator, truth: np.ndarray, cloud: np.ndarray, season: int,
                    rate: float) -> np.ndarray:
    """Corrupt the true DW map so that a share ``rate`` of the pixels is wrong.

    Wrong pixels are chosen by priority: shifted boundaries first, then clouds, then
    season-specific confusions, then blobs of a smooth random field.
    """
    if rate <= 0:
        return truth.copy()
    warped = warp_labels(rng, truth, amplitude=min(3.0, 1.0 + 8 * rate))
    alternative = confused_labels(rng, truth, season)
    under_cloud = cloud > 0.5
    alternative = np.where(under_cloud, np.where(cloud > 0.8, DW_SNOW, 6), alternative)
    candidate = np.where(warped != truth, warped, alternative)
    seasonal = np.isin(truth, list(SEASONAL_CONFUSIONS[season]))
    priority = (smooth_field(rng, truth.shape[0], 5) + 3.0 * (warped != truth)
                + 4.0 * under_cloud + 1.0 * seasonal)
    priority[candidate == truth] = -np.inf
    budget = min(int(round(rate * truth.size)), int(np.isfinite(priority).sum()))
    wrong: np.ndarray | list[int] = (np.argpartition(-priority.ravel(), budget - 1)[:budget]
                                     if budget else [])
    noisy = truth.copy().ravel()
    noisy[wrong] = candidate.ravel()[wrong]
    return noisy.reshape(truth.shape)



def expert_dw_codes(rng: np.random.Generator, dw: np.ndarray, cloud: np.ndarray) -> np.ndarray:
    """DW expert raster codes: class + 1, 0 on unlabeled boundaries and patches, 10 on clouds."""
    codes = dw.astype(np.uint8) + 1
    edges = ndimage.maximum_filter(dw, 3) != ndimage.minimum_filter(dw, 3)
    codes[edges & (rng.random(dw.shape) < 0.5)] = DW_EXPERT_UNLABELED
    codes[smooth_field(rng, dw.shape[0], 6) > 1.8] = DW_EXPERT_UNLABELED
    codes[cloud > 0.4] = DW_EXPERT_CLOUD
    return codes


def osm_codes(rng: np.random.Generator, fine: np.ndarray, parcel_index: np.ndarray) -> np.ndarray:
    """OSM land-use raster codes 1..13, 0 where the map has no polygon."""
    codes = FINE_TO_OSM[fine].copy()
    unmapped = rng.random(parcel_index.max() + 1) < 0.2
    codes[unmapped[parcel_index] & ~np.isin(fine, (LAKE, RIVER, ROAD, RESIDENTIAL))] = 0
    return codes
