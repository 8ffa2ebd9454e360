"""DFC2020 as IEEE DataPort ships it (``ROIs0000_validation`` = the paper's training set).

Tree::

    <root>/ROIs0000_validation/{s1,s2,dfc}_validation/ROIs0000_validation_{s1,s2,dfc}_0_p<N>.tif
    <root>/ROIs0000_test/{s1,s2,dfc}_0/ROIs0000_test_{s1,s2,dfc}_0_p<N>.tif

256 x 256 px; S1 float (2 bands), S2 uint16 (13 bands), dfc codes 1..10. Files of one patch
share the number ``p<N>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np

from cromss.data.layouts.noldo import read_tile
from cromss.data.layouts.rasters import Sample, write_tif
from cromss.errors import CromssError

KINDS = ("s1", "s2", "dfc")


def split_folders(root: Path, split: str) -> dict[str, Path]:
    """``{kind: folder}`` of the original split ``validation`` or ``test``."""
    sub = "validation" if split == "validation" else "0"
    base = Path(root) / f"ROIs0000_{split}"
    return {kind: base / f"{kind}_{sub}" for kind in KINDS}


def patch_number(name: str) -> int:
    """``ROIs0000_test_s2_0_p12.tif`` -> 12."""
    match = re.search(r"_p(\d+)\.tif$", name)
    if match is None:
        raise CromssError(f"{name}: not a DFC2020 patch file name")
    return int(match.group(1))


def patch_name(split: str, kind: str, number: int) -> str:
    return f"ROIs0000_{split}_{kind}_0_p{number}.tif"


def iter_dfc(root: Path, split: str) -> tuple[int, Iterator[Callable[[], Sample]]]:
    """DFC2020 patches of ``ROIs0000_validation`` (split ``validation``) or ``ROIs0000_test``:
    their number and a reader for each."""
    folders = split_folders(root, split)
    if not folders["s2"].is_dir():
        raise FileNotFoundError(f"{folders['s2']}: folder not found (a DFC2020 root holds "
                                "ROIs0000_validation/ and ROIs0000_test/)")
    numbers = sorted(patch_number(p.name) for p in folders["s2"].glob("*.tif"))

    def samples() -> Iterator[Callable[[], Sample]]:
        for number in numbers:
            paths = {kind: folders[kind] / patch_name(split, kind, number) for kind in KINDS}
            missing = [str(p) for p in paths.values() if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"{', '.join(missing)}: file not found")
            yield partial(read_tile, f"p{number}", paths["s1"], paths["s2"], paths["dfc"])

    return len(numbers), samples()


def write_patch(root: Path, split: str, number: int, s1: np.ndarray, s2: np.ndarray,
                label: np.ndarray, crs: int, transform) -> None:  # noqa: ANN001
    """One DFC2020 patch in the original layout."""
    folders = split_folders(root, split)
    for kind, data in zip(KINDS, (s1.astype(np.float32), s2, label)):
        write_tif(folders[kind] / patch_name(split, kind, number), data, crs, transform)
