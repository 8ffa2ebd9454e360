"""``cromss fetch SOURCE --settings S --out results/raw``: real data into the raw layouts.

``--settings`` is the ``data.real`` block of the config (docs/sources.md lists its keys), or a
whole config file, whose ``data.real`` block is then used.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from cromss.config import load_settings

FETCHERS = {
    "noldo": ("cromss.sources.huggingface", "fetch_noldo"),
    "weights": ("cromss.sources.huggingface", "fetch_weights"),
    "ssl4eo": ("cromss.sources.ssl4eo", "fetch_ssl4eo"),
    "dfc2020": ("cromss.sources.dfc2020", "fetch_dfc2020"),
    "stac": ("cromss.sources.stac", "fetch_stac"),
    "dynamicworld": ("cromss.sources.dynamicworld", "fetch_dynamicworld"),
}


def real_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The ``data.real`` block of a whole config, or the settings as given when they are that block."""
    return settings["data"].get("real", {}) if isinstance(settings.get("data"), dict) else settings


def run_fetch(args: argparse.Namespace) -> int:
    """Run the fetcher of ``args.source`` with the settings and output folder given."""
    module, name = FETCHERS[args.source]
    fetch = getattr(importlib.import_module(module), name)
    fetch(real_settings(load_settings(args.settings)), Path(args.out), progress=not args.quiet)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``cromss fetch``."""
    parser = subparsers.add_parser("fetch", help="download a real data source into the raw layout",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("source", choices=sorted(FETCHERS), help="the data source to download")
    parser.add_argument("--settings", help="data.real settings: JSON text or a YAML/JSON file")
    parser.add_argument("--out", default="results/raw", help="raw data folder (default results/raw)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_fetch)
