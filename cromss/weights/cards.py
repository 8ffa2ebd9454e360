"""Model cards and provenance: what a weights file needs to be used right and where it came from."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cromss
from cromss.constants import DW_CLASSES, input_normalisation
from cromss.models import MODALITIES

LICENCE = "MIT"  # the weights this workflow makes, as the code (pyproject.toml)
DATA_LICENCES = {"synthetic": "none: the synthetic world cromss generates",
                 "real": "SSL4EO-S12 images CC-BY-4.0, Dynamic World labels CC-BY-4.0, "
                         "NoLDO-S12 MIT (docs/sources.md)"}


def provenance(store: str | Path | None = None) -> dict[str, Any]:
    """Where weights come from: the training store (dataset, raw source, synthetic or real data,
    samples), the code version and git commit, and the licences of the weights and the data."""
    from cromss import logs
    from cromss.data.store import open_arrays

    record: dict[str, Any] = {"cromss_version": cromss.__version__, "git_commit": logs.git_commit(),
                              "licence": LICENCE}
    if store is not None:
        group = open_arrays(store)
        source = str(group.attrs.get("source", ""))
        kind = "synthetic" if "truth" in group or "synthetic" in Path(source).parts else "real"
        record["data"] = {"store": str(store), "dataset": group.attrs.get("dataset"),
                          "split": group.attrs.get("split"), "source": source, "kind": kind,
                          "samples": int(group["label"].shape[0]),
                          "licence": DATA_LICENCES[kind]}
    return record


def model_card(settings: Mapping[str, Any], modality: str,
               origin: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a transferred encoder needs to be used right: inputs, normalisation, classes, origin."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, not {modality!r}")
    normalisation = input_normalisation(modality, int(settings["s2_bands"]))
    bands = normalisation.pop("bands")
    classes = int(settings.get("num_classes", len(DW_CLASSES)))
    return {
        "encoder": str(settings["encoder"]),
        "modality": modality,
        "in_channels": len(bands),
        "bands": list(bands),
        "normalisation": normalisation,
        "classes": list(DW_CLASSES[:classes]),
        "variant": settings.get("name"),
        "fusion": settings.get("fusion"),
        "settings": json.loads(json.dumps(settings)),  # plain types only, weights_only-safe
        "cromss_version": cromss.__version__,
        "provenance": json.loads(json.dumps(dict(origin or provenance()))),
    }
