"""Dynamic World noisy labels through Google Earth Engine for the patches of ``cromss data fetch stac``.

For every patch and S2 season of ``<out>/stac_patches.json`` the DW ``label`` band of the same day
is computed on the patch grid (``ee.data.computePixels``) and written in the NoLDO layout,
``<out>/noldo/ssl4eo_s12_nol/<id:07d>/<season>/label.tif`` (uint8, 255 where DW has no data), and
the patch's row is merged into ``dw_complete_ids.csv``. Needs the optional ``earthengine-api``
package and Earth Engine credentials for a registered Google Cloud project.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import numpy as np

from cromss.atomic import atomic_path
from cromss.errors import CromssError
from cromss.settings import Real
from cromss.data.layouts.noldo import read_ids, write_ids
from cromss.constants import IGNORE_INDEX

COLLECTION = "GOOGLE/DYNAMICWORLD/V1"


def require_earthengine() -> Any:
    """The ``ee`` module, or a message saying what to install."""
    try:
        import ee
    except ImportError as err:
        raise CromssError("Dynamic World labels come from Google Earth Engine: pip install earthengine-api "
                          "(or pip install 'cromss[gee]'), then run `earthengine authenticate`") from err
    return ee


def initialize(ee: Any, section: Mapping[str, Any]) -> None:
    """``ee.Initialize`` with the configured project, or a message saying what to set."""
    project = section.get("project") or os.environ.get("EE_PROJECT")
    if not project:
        raise CromssError("set data.real.dynamicworld.project (or EE_PROJECT) to a Google Cloud project "
                          "registered for Earth Engine")
    try:
        ee.Initialize(project=project)
    except Exception as err:  # ee raises plain Exceptions for auth problems
        raise CromssError(f"Earth Engine could not start for project {project!r} ({err}); run "
                          "`earthengine authenticate` (or set GOOGLE_APPLICATION_CREDENTIALS to a service "
                          "account key) and check that the project is registered for Earth Engine") from err


def grid(patch: dict[str, Any]) -> dict[str, Any]:
    """The Earth Engine pixel grid of one patch (10 m, north up)."""
    x0, y0 = patch["origin"]
    return {"dimensions": {"width": patch["size"], "height": patch["size"]},
            "affineTransform": {"scaleX": 10, "shearX": 0, "translateX": x0,
                                "shearY": 0, "scaleY": -10, "translateY": y0},
            "crsCode": f"EPSG:{patch['epsg']}"}


def season_day(season: str) -> datetime:
    """The acquisition day of an S2 season folder name (``YYYYMMDDTHHMMSS_...``)."""
    return datetime.strptime(season[:8], "%Y%m%d")


def label_map(ee: Any, patch: dict[str, Any], season: str) -> np.ndarray:
    """DW ``label`` of the season's acquisition day on the patch grid; 255 where DW has no pixel."""
    day = season_day(season)
    image = (ee.ImageCollection(COLLECTION).filterDate(day.strftime("%Y-%m-%d"),
                                                       (day + timedelta(days=1)).strftime("%Y-%m-%d"))
             .select("label").mosaic().unmask(IGNORE_INDEX).toUint8())
    pixels = ee.data.computePixels({"expression": image, "fileFormat": "NUMPY_NDARRAY", "grid": grid(patch)})
    return np.asarray(pixels["label"] if pixels.dtype.names else pixels, dtype=np.uint8)


def write_label(path: Path, label: np.ndarray, patch: dict[str, Any]) -> None:
    """A uint8 label GeoTIFF on the patch grid."""
    from cromss.sources.stac import write_band

    write_band(path, label, patch["epsg"], tuple(patch["origin"]))


def merge_ids(csv_path: Path, rows: dict[int, list[str]]) -> None:
    """Merge ``id -> seasons`` rows into ``dw_complete_ids.csv`` (read in either form, written
    header-less)."""
    known: dict[int, list[str]] = {}
    if csv_path.exists():
        known = {int(location): seasons for location, seasons in read_ids(csv_path)}
    known.update(rows)
    with atomic_path(csv_path) as tmp:
        write_ids(tmp, sorted(known.items()), "headerless")


def fetch_dynamicworld(real: Real, out: Path, *, progress: bool = True) -> Path:
    """Fetch the DW labels of every STAC patch; return the updated ``dw_complete_ids.csv``."""
    section = real.dynamicworld
    ee = require_earthengine()
    initialize(ee, section)
    manifest = out / "stac_patches.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: run `cromss data fetch stac` first; labels follow its patches")
    nol = out / "noldo" / "ssl4eo_s12_nol"
    rows = {}
    for patch in json.loads(manifest.read_text())["patches"]:
        with atomic_path(nol / f"{patch['id']:07d}") as tmp:
            for season in patch["s2_l1c"]:
                (tmp / season).mkdir(parents=True)
                write_label(tmp / season / "label.tif", label_map(ee, patch, season), patch)
        rows[patch["id"]] = patch["s2_l1c"]
    merge_ids(nol / "dw_complete_ids.csv", rows)
    return nol / "dw_complete_ids.csv"
