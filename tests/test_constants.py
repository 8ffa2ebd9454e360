"""The normalisation statistics are the reference's, to its 8 decimals (issue 24)."""

from __future__ import annotations

import ast
import re

import numpy as np

from cromss import constants
from cromss.normalisation import normalise

METHOD_LINES = """
[mean - 2 std, mean + 2 std] and scaled to [0, 1]. SSL4EO-S12 statistics: S1 mean
[-12.548, -20.192], std [5.257, 5.912]; S2 L1C, bands B1 B2 B3 B4 B5 B6 B7 B8 B8A B9 B10 B11 B12:
mean [1605.6, 1390.8, 1314.9, 1363.5, 1549.4, 2091.7, 2371.7, 2299.9, 2560.3, 830.1, 22.1, 2177.1,
1524.1], std [786.8, 850.3, 875.1, 1138.8, 1122.2, 1161.6, 1274.4, 1248.4, 1345.5, 577.3, 51.2,
1336.1, 1136.5]. The 9-band subset is B2 B3 B4 B5 B6 B7 B8 B11 B12 (indices 1-7, 11, 12).
"""
"""shared/method.md section 1 (lines 36-40), verbatim."""
REFERENCE_LINES = """
S1_MEAN = [-12.54847273, -20.19237134]
S1_STD = [5.25697717, 5.91150917]
S2C_MEAN = [1605.57504906, 1390.78157673, 1314.8729939, 1363.52445545, 1549.44374991, 2091.74883118, 2371.7172463, 2299.90463006, 2560.29504086, 830.06605044, 22.10351321, 2177.07172323, 1524.06546312]
S2C_STD = [786.78685367, 850.34818441, 875.06484736, 1138.84957046, 1122.17775652, 1161.59187054, 1274.39184232, 1248.42891965, 1345.52684884, 577.31607053, 51.15431158, 1336.09932639, 1136.53823676]
"""  # noqa: E501
"""zhu-xlab/CromSS a5aab81, dataset/ssl4eo_dataset_lmdb.py lines 20-21 and 26-27, verbatim."""


def _reference() -> dict[str, list[float]]:
    return {node.targets[0].id: ast.literal_eval(node.value)  # type: ignore[attr-defined]
            for node in ast.parse(REFERENCE_LINES).body if isinstance(node, ast.Assign)}


def test_statistics_are_the_reference_values_exactly():
    ref = _reference()
    assert tuple(ref["S1_MEAN"]) == constants.S1_MEAN
    assert tuple(ref["S1_STD"]) == constants.S1_STD
    assert tuple(ref["S2C_MEAN"]) == constants.S2_MEAN
    assert tuple(ref["S2C_STD"]) == constants.S2_STD
    norm = constants.input_normalisation("s2", 9)
    assert norm["mean"] == [ref["S2C_MEAN"][i] for i in (1, 2, 3, 4, 5, 6, 7, 11, 12)]


def test_the_method_gives_them_rounded():
    """shared/method.md §1 lists the same statistics to 1e-3 (S1) and 0.1 (S2)."""
    text = " ".join(METHOD_LINES.split())
    lists = [[float(v) for v in group.split(",")]
             for group in re.findall(r"(?:mean|std) \[([-0-9., ]+)\]", text)]
    s1_mean, s1_std, s2_mean, s2_std = lists[:4]
    assert s1_mean == [round(v, 3) for v in constants.S1_MEAN]
    assert s1_std == [round(v, 3) for v in constants.S1_STD]
    assert s2_mean == [round(v, 1) for v in constants.S2_MEAN]
    assert s2_std == [round(v, 1) for v in constants.S2_STD]


def test_the_full_values_move_uint8_levels_the_rounded_ones_would_not():
    """A value on a level boundary of the full statistics: the rounded ones put it a level lower
    (the difference the full values make to the inputs)."""
    mean, std = constants.S1_MEAN[0], constants.S1_STD[0]
    boundary = np.float32(mean - 2 * std + 100 * 4 * std / 255 + 1e-4).reshape(1, 1, 1)
    full = normalise(boundary, [mean], [std])
    rounded = normalise(boundary, [round(mean, 3)], [round(std, 3)])
    assert full[0, 0, 0] * 255 == 100.0 and rounded[0, 0, 0] * 255 == 99.0
