"""The published on-disk layouts, one module each: reader, quirks and the writer of its files.

- :mod:`~cromss.data.layouts.ssl4eo_s12`: SSL4EO-S12 v1 (``s1/``, ``s2c/``), per-band grids
- :mod:`~cromss.data.layouts.noldo`: NoLDO-S12 (NoL labels, ``dw_complete_ids.csv``, @DW/@OSM)
- :mod:`~cromss.data.layouts.dfc2020`: DFC2020 (``ROIs0000_*``)
- :mod:`~cromss.data.layouts.rasters`: reading any band onto the S2 grid by its transform

A sample's raw data come from up to three roots (:class:`Roots`): where the SSL4EO-S12, NoLDO and
DFC2020 trees lie, as the archives unpack (``data.real.local`` points them at trees on disk).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cromss.data.layouts.rasters import LABEL_FILL, Grid, Sample, check_codes

__all__ = ["LABEL_FILL", "Grid", "Roots", "Sample", "check_codes"]

PARTS = ("ssl4eo_s12", "noldo", "dfc2020")


@dataclass(frozen=True)
class Roots:
    """Where each raw tree lies; ``truth`` only in the synthetic world."""

    ssl4eo_s12: Path
    noldo: Path
    dfc2020: Path
    truth: Path | None = None

    @classmethod
    def under(cls, raw: str | os.PathLike, **overrides: str | os.PathLike | None) -> Roots:
        """The trees below one raw root (``<raw>/ssl4eo_s12`` ...), with per-tree overrides."""
        raw = Path(raw)
        paths = {part: Path(overrides.get(part) or raw / part) for part in PARTS}
        truth = raw / "truth"
        return cls(**paths, truth=truth if truth.is_dir() else None)
