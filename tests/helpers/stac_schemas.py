"""Offline JSON-schema validation of STAC Items: the vendored MLM, extension and STAC core
schemas (tests/fixtures/stac_schemas, SOURCES.md) in a ``referencing`` registry."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from referencing import Registry, Resource

from helpers import ROOT

SCHEMAS = ROOT / "tests" / "fixtures" / "stac_schemas"
URLS = {
    "mlm-v1.5.2.json": "https://stac-extensions.github.io/mlm/v1.5.2/schema.json",
    "classification-v1.1.0.json":
        "https://stac-extensions.github.io/classification/v1.1.0/schema.json",
    "processing-v1.1.0.json": "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
    "raster-v1.1.0.json": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "geojson/Feature.json": "https://geojson.org/schema/Feature.json",
    "geojson/Geometry.json": "https://geojson.org/schema/Geometry.json",
    **{f"stac-item-v1.1.0/{p.name}":
       f"https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/{p.name}"
       for p in (SCHEMAS / "stac-item-v1.1.0").glob("*.json")},
}
MLM = URLS["mlm-v1.5.2.json"]
STAC_ITEM = URLS["stac-item-v1.1.0/item.json"]


def no_network(uri: str) -> Resource:
    raise LookupError(f"{uri}: not vendored in {SCHEMAS} (tests never fetch schemas)")


def registry() -> Registry:
    """Every vendored schema under the URL the others use and under its own ``$id``."""
    resources = []
    for name, url in URLS.items():
        contents = json.loads((SCHEMAS / name).read_text())
        resource = Resource.from_contents(contents)
        resources += [(url, resource), (contents["$id"].rstrip("#"), resource)]
    return Registry(retrieve=no_network).with_resources(resources)  # type: ignore[call-arg]


def errors(document: dict[str, Any], schema_url: str) -> list[str]:
    """Every validation error of ``document`` against the vendored schema at ``schema_url``."""
    schemas = registry()
    schema = schemas.contents(schema_url)
    validator = jsonschema.Draft7Validator(schema, registry=schemas,
                                           format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)]
