"""The Sentinel-2 bands of a STAC item, found by the item's own band metadata, and their radiometry.

Catalogs name the same band differently (Earth Search v1: ``blue``, ``nir08``, ``blue-jp2``;
Planetary Computer: ``B02``; Copernicus Data Space: ``B02_10m``), so an asset is recognised by what
it declares: its one band's ``name`` when that is a band code (``B02``, ``B8A``), else its centre
wavelength, else an unambiguous common name, in the ``bands`` (STAC 1.1, ``eo:`` fields) or
``eo:bands`` (STAC 1.0) list; an asset without band metadata by its key. Assets of several bands
(true colour) and non-data roles are skipped; of several assets of one band the finest resolution,
then a cloud-optimised GeoTIFF, wins.

The models take L1C digital numbers as in SSL4EO-S12 (reflectance x 10000, no offset). An asset's
declared ``scale``/``offset`` (``raster:bands`` or ``raster:scale``/``raster:offset``) turn its
values into reflectance and so into those numbers; without a declaration, processing baseline
04.00 and later is known to add 1000 to the digital numbers (``RADIO_ADD_OFFSET``/``BOA_ADD_OFFSET``
= -1000) and that is removed. Earth Search's ``earthsearch:boa_offset_applied`` says the offset
is already removed from the pixels although still declared.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from cromss.constants import S2_BANDS

QUANTIFICATION = 10000.0
"""Digital number = reflectance x 10000 (the products' QUANTIFICATION_VALUE)."""
BASELINE_OFFSET = -1000.0
"""Digital-number offset of processing baseline 04.00 and later (ESA's RADIO/BOA_ADD_OFFSET)."""
OFFSET_BASELINE = (4, 0)
CENTRE_WAVELENGTH_UM = dict(zip(S2_BANDS, (0.443, 0.490, 0.560, 0.665, 0.705, 0.740, 0.783, 0.842,
                                           0.865, 0.945, 1.375, 1.610, 2.190)))
WAVELENGTH_TOLERANCE_UM = 0.03
COMMON_NAMES = {"coastal": "B1", "blue": "B2", "green": "B3", "red": "B4", "nir": "B8",
                "nir08": "B8A", "nir09": "B9", "cirrus": "B10", "swir16": "B11", "swir22": "B12"}
"""The STAC eo common names that name one Sentinel-2 band (``rededge`` names three)."""
BAND_CODE = re.compile(r"^B(0?[1-9]|1[0-2]|8A)(?:_\d+m)?$", re.IGNORECASE)
SKIPPED_ROLES = {"visual", "overview", "thumbnail", "metadata"}


@dataclass(frozen=True)
class ItemBand:
    """One S2 band of an item: its asset and the linear map to L1C digital numbers."""

    band: str
    asset: str
    href: str
    scale: float = 1.0
    offset: float = 0.0


def band_code(text: str) -> str | None:
    """``B1`` ... ``B12``, ``B8A`` for a band code such as ``B02``, ``b8a``, ``B11_20m``."""
    match = BAND_CODE.match(text.strip())
    if not match:
        return None
    code = match.group(1).upper()
    return "B8A" if code == "8A" else f"B{int(code)}"


def _declared_bands(asset: dict[str, Any]) -> list[dict[str, Any]]:
    return asset.get("bands") or asset.get("eo:bands") or []


def _recognise(entry: dict[str, Any]) -> str | None:
    """The S2 band a ``bands``/``eo:bands`` entry declares, or None."""
    if code := band_code(str(entry.get("name", ""))):
        return code
    wavelength = entry.get("eo:center_wavelength", entry.get("center_wavelength"))
    if isinstance(wavelength, (int, float)):
        nearest = min(CENTRE_WAVELENGTH_UM, key=lambda b: abs(CENTRE_WAVELENGTH_UM[b] - wavelength))
        if abs(CENTRE_WAVELENGTH_UM[nearest] - wavelength) <= WAVELENGTH_TOLERANCE_UM:
            return nearest
    common = entry.get("eo:common_name", entry.get("common_name"))
    return COMMON_NAMES.get(str(common)) if common else None


def asset_band(key: str, asset: dict[str, Any]) -> str | None:
    """The one S2 band an asset holds, from its band metadata (or, lacking any, its key)."""
    if SKIPPED_ROLES & set(asset.get("roles") or []):
        return None
    declared = _declared_bands(asset)
    if len(declared) > 1:
        return None
    if declared:
        return _recognise(declared[0])
    name = re.sub(r"(-jp2|_\d+m)$", "", key)
    return band_code(name) or COMMON_NAMES.get(name)


def _resolution(key: str, asset: dict[str, Any]) -> float:
    raster = (asset.get("raster:bands") or [{}])[0]
    for value in (raster.get("spatial_resolution"), asset.get("raster:spatial_resolution"),
                  asset.get("gsd")):
        if isinstance(value, (int, float)):
            return float(value)
    match = re.search(r"_(\d+)m$", key)
    return float(match.group(1)) if match else math.inf


def baseline(properties: dict[str, Any]) -> tuple[int, int] | None:
    """The processing baseline (``s2:processing_baseline`` or ``processing:version``)."""
    text = str(properties.get("s2:processing_baseline") or properties.get("processing:version")
               or "")
    match = re.match(r"^(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def radiometry(asset: dict[str, Any], properties: dict[str, Any]) -> tuple[float, float]:
    """``(scale, offset)`` that map the asset's values to L1C digital numbers without offset."""
    raster = (asset.get("raster:bands") or [{}])[0]
    entry = (_declared_bands(asset) or [{}])[0]
    scale = raster.get("scale", asset.get("raster:scale", entry.get("raster:scale")))
    offset = raster.get("offset", asset.get("raster:offset", entry.get("raster:offset")))
    if properties.get("earthsearch:boa_offset_applied"):
        offset = 0.0
    if scale is not None or offset is not None:
        scale = 1 / QUANTIFICATION if scale is None else float(scale)
        return scale * QUANTIFICATION, float(offset or 0.0) * QUANTIFICATION
    known = baseline(properties)
    return 1.0, BASELINE_OFFSET if known is not None and known >= OFFSET_BASELINE else 0.0


def product_level(item: dict[str, Any]) -> str | None:
    """``L1C``, ``L2A`` or None, from the item's product type, processing level or collection."""
    properties = item.get("properties", {})
    fields = ("s2:product_type", "product:type", "processing:level")
    values = [*(properties.get(field) for field in fields), item.get("collection")]
    text = " ".join(str(value) for value in values)
    text = text.upper()
    for level, marks in (("L2A", ("2A", "L2A", "L2")), ("L1C", ("1C", "L1C", "L1"))):
        if any(mark in text for mark in marks):
            return level
    return None


def readable_href(asset: dict[str, Any]) -> str:
    """The asset's HTTP(S) address: its ``href``, or for ``s3://`` its ``https`` alternate."""
    href = asset["href"]
    alternate = (asset.get("alternate") or {}).get("https", {}).get("href")
    return alternate if href.startswith("s3://") and alternate else href


def item_bands(item: dict[str, Any]) -> dict[str, ItemBand]:
    """S2 band name -> :class:`ItemBand` for every band an item's assets hold (a STAC item dict)."""
    candidates: dict[str, list[tuple[tuple, ItemBand]]] = {}
    properties = item.get("properties", {})
    for key, asset in (item.get("assets") or {}).items():
        band = asset_band(key, asset)
        if band is None:
            continue
        scale, offset = radiometry(asset, properties)
        rank = (_resolution(key, asset), "tiff" not in str(asset.get("type", "")), key)
        candidates.setdefault(band, []).append(
            (rank, ItemBand(band, key, readable_href(asset), scale, offset)))
    return {band: min(found, key=lambda pair: pair[0])[1] for band, found in candidates.items()}
