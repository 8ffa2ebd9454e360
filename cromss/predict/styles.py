"""Class names and colours of a class map in the files GIS tools read beside a GeoTIFF.

- ``map.tif.aux.xml``: GDAL's persistent auxiliary metadata (PAM) with the band's category
  names; GDAL keeps category names there for GeoTIFFs (the format has no tag for them), and
  every GDAL-based tool (``gdalinfo``, rasterio, QGIS) reads it when it opens ``map.tif``.
- ``map.qml``: a QGIS layer style (paletted renderer: value, colour and class name), which QGIS
  applies by default to the raster of the same name.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from matplotlib.colors import to_hex

from cromss.atomic import atomic_path


def pam_path(raster: str | Path) -> Path:
    """GDAL's side file of ``raster``: ``map.tif`` -> ``map.tif.aux.xml``."""
    raster = Path(raster)
    return raster.with_name(f"{raster.name}.aux.xml")


def qgis_style_path(raster: str | Path) -> Path:
    """The QGIS default style of ``raster``: ``map.tif`` -> ``map.qml``."""
    return Path(raster).with_suffix(".qml")


def _write_xml(root: ET.Element, out: Path, doctype: str = "") -> None:
    ET.indent(root)
    with atomic_path(out) as tmp:
        tmp.write_text(doctype + ET.tostring(root, encoding="unicode") + "\n", encoding="utf-8")


def write_category_names(raster: str | Path, classes: Sequence[str]) -> Path:
    """GDAL category names of band 1 (index ``i`` is ``classes[i]``) in ``raster``'s PAM file."""
    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", band="1")
    names = ET.SubElement(band, "CategoryNames")
    for name in classes:
        ET.SubElement(names, "Category").text = name
    out = pam_path(raster)
    _write_xml(root, out)
    return out


def write_qgis_style(raster: str | Path, classes: Sequence[str], colors: Sequence[str]) -> Path:
    """A QGIS paletted style of band 1: each class index with its colour and name."""
    if len(classes) != len(colors):
        raise ValueError(f"{len(classes)} class names but {len(colors)} colours")
    root = ET.Element("qgis", version="3.28", styleCategories="Symbology")
    renderer = ET.SubElement(ET.SubElement(root, "pipe"), "rasterrenderer", type="paletted",
                             band="1", opacity="1", alphaBand="-1", nodataColor="")
    ET.SubElement(renderer, "rasterTransparency")
    palette = ET.SubElement(renderer, "colorPalette")
    for value, (name, color) in enumerate(zip(classes, colors)):
        ET.SubElement(palette, "paletteEntry", value=str(value), color=to_hex(color),
                      alpha="255", label=name)
    out = qgis_style_path(raster)
    _write_xml(root, out, "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n")
    return out
