"""Fixed facts of the data: class lists, band orders, remaps and normalisation statistics.

Everything here is transcribed from the CromSS method description (``shared/method.md`` §1) and is
the single place the rest of the package reads them from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from cromss.errors import CromssError

IGNORE_INDEX = 255
"""Label value that weighs zero in every loss and is dropped from every metric."""
S2_DN_MAX = 65535
"""The largest L1C digital number the stores hold (uint16)."""

DW_CLASSES = (
    "water", "trees", "grass", "flooded vegetation", "crops",
    "shrub & scrub", "built", "bare", "snow & ice",
)
DW_COLORS = (
    "#419BDF", "#397D49", "#88B053", "#7A87C6", "#E49635",
    "#DFC35A", "#C4281B", "#A59B8F", "#B39FE1",
)

OSM_CLASSES = (
    "urban fabric", "arable land", "forests",
    "industrial, commercial and transport units",
    "artificial non-agricultural vegetated areas", "mine, dump and construction sites",
    "pastures", "permanent crops", "water bodies",
    "open spaces with little or no vegetation", "shrub and/or herbaceous vegetation",
    "wetlands", "coastal wetlands",
)
OSM_COLORS = (
    "#E6004D", "#FFFFA8", "#4DFF00", "#CC4DF2", "#FFA6FF", "#A600CC", "#E6E64D",
    "#E68000", "#00CCF2", "#CCFFCC", "#A6F200", "#A6A6FF", "#CCCCFF",
)

DFC_CLASSES = DW_CLASSES[:8]
"""DFC2020 is evaluated on 8 classes in DW order (snow & ice is ignored)."""
DFC_COLORS = DW_COLORS[:8]

# Raw code -> class index; every code not listed maps to IGNORE_INDEX.
DW_EXPERT_REMAP = {code: code - 1 for code in range(1, 10)}  # 0 unlabeled, 10 cloud -> ignore
OSM_REMAP = {code: code - 1 for code in range(1, 14)}  # 0 background -> ignore
DFC_REMAP = {1: 1, 2: 5, 4: 2, 5: 3, 6: 4, 7: 6, 9: 7, 10: 0}  # savanna 3, snow 8, 0 -> ignore
NOISY_DW_REMAP = {code: code for code in range(9)}

S1_BANDS = ("VV", "VH")
# The SSL4EO-S12 statistics as the reference uses them, to 8 decimals: zhu-xlab/CromSS at
# a5aab813edd9456c74cc7a8044de1400d4b6be3e, dataset/ssl4eo_dataset_lmdb.py lines 20-21 (S1) and
# 26-27 (S2 L1C, ``S2C_MEAN`` / ``S2C_STD``); the same values stand in dataset/dwosm_dataset_lmdb.py
# lines 21-22 and 27-28 and dataset/dfc2020_dataset_lmdb.py lines 20-21 and 26-27.
# shared/method.md §1 gives them rounded (S1 to 1e-3, S2 to 0.1).
S1_MEAN = (-12.54847273, -20.19237134)
S1_STD = (5.25697717, 5.91150917)

S2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
S2_MEAN = (1605.57504906, 1390.78157673, 1314.8729939, 1363.52445545, 1549.44374991,
           2091.74883118, 2371.7172463, 2299.90463006, 2560.29504086, 830.06605044, 22.10351321,
           2177.07172323, 1524.06546312)
S2_STD = (786.78685367, 850.34818441, 875.06484736, 1138.84957046, 1122.17775652,
          1161.59187054, 1274.39184232, 1248.42891965, 1345.52684884, 577.31607053, 51.15431158,
          1336.09932639, 1136.53823676)
S2_9BAND_INDICES = (1, 2, 3, 4, 5, 6, 7, 11, 12)
"""B2 B3 B4 B5 B6 B7 B8 B11 B12, the 9-band subset of the 13 L1C bands."""

S2_NATIVE_RESOLUTION_M = {
    "B1": 60, "B2": 10, "B3": 10, "B4": 10, "B5": 20, "B6": 20, "B7": 20, "B8": 10,
    "B8A": 20, "B9": 60, "B10": 60, "B11": 20, "B12": 20,
}


def s2_band_indices(num_bands: int) -> tuple[int, ...]:
    """Indices into the 13 stored L1C bands for a 13- or 9-band model input."""
    if num_bands == 13:
        return tuple(range(13))
    if num_bands == 9:
        return S2_9BAND_INDICES
    raise CromssError(f"S2 inputs have 13 or 9 bands, not {num_bands}")


UINT8_MAX = 255
NORMALISATION_RULE = ("uint8 = floor(clip((x - (mean - 2 std)) / (4 std) * 255, 0, 255)); "
                      "input = uint8 / 255")
"""How S1 (dB) and S2 (L1C digital numbers) reach the network, in pretraining and in transfer.

Transfer: the reference's ``dataset/dwosm_dataset_lmdb.py`` (defaults ``s1_normalize`` /
``s2_normalize`` False, as its training scripts run it): ``img_clip`` maps each band with the
SSL4EO-S12 statistics to [0, 255], clips and casts to uint8 (truncation), then ``/255``.
Pretraining: ``dataset/ssl4eo_dataset_lmdb.py`` (``normalize`` False) reads the SSL4EO-S12 uint8
release (``0k_251k_uint8_jpeg_tif``) and divides by 255. That release is taken to use the same
per-band mean +- 2 std rule and statistics: the reference's own inverse (its ``normalize``:
``mean - 2 std + x (4 std) / 255``) assumes it, and SSL4EO-S12's conversion applies it to S1 (its
script's un-normalised S2 branch, ``DN / 10000 * 255``, is the one open doubt). No standardisation
follows; the 9-band inputs take the same per-band statistics.
"""
INPUT_SCALING = {
    "rule": NORMALISATION_RULE,
    "quantisation": "uint8 (truncated)",
    "pretraining": "SSL4EO-S12 uint8 product / 255 (reference dataset/ssl4eo_dataset_lmdb.py)",
    "transfer": "img_clip to uint8, then / 255 (reference dataset/dwosm_dataset_lmdb.py)",
}


def input_normalisation(modality: str, s2_bands: int = 13) -> dict[str, Any]:
    """Band names, means and stds of one modality's model input, and the rule applying them."""
    bands: Sequence[str]
    mean: Sequence[float]
    std: Sequence[float]
    if modality == "s1":
        bands, mean, std = S1_BANDS, S1_MEAN, S1_STD
    elif modality == "s2":
        idx = s2_band_indices(s2_bands)
        bands, mean, std = ([S2_BANDS[i] for i in idx], [S2_MEAN[i] for i in idx],
                            [S2_STD[i] for i in idx])
    else:
        raise ValueError(f"modality must be s1 or s2, not {modality!r}")
    return {"bands": list(bands), "mean": list(mean), "std": list(std), **INPUT_SCALING}


TASKS = {
    # task -> (store prefix, classes, colours, downstream decoder)
    "dfc2020": ("dfc2020", DFC_CLASSES, DFC_COLORS, "PSPNet"),
    "dw": ("dw", DW_CLASSES, DW_COLORS, "DeepLabV3Plus"),
    "osm": ("osm", OSM_CLASSES, OSM_COLORS, "FPN"),
}
