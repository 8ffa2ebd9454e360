"""``cromss data fetch SOURCE --settings S --out results/raw``: real data into the raw layouts.

``--settings`` is the ``data.real`` block of the config (docs/sources.md lists its keys), or a
whole config file, whose ``data.real`` block is then used.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cromss.config import load_settings, settings_source
from cromss.settings import Real

if TYPE_CHECKING:
    from cromss.parser import Groups

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


def load_real(text_or_path: str | None) -> Real:
    """The ``data.real`` settings of ``--settings`` (the block, or a whole config), built once for
    the fetchers: validated and completed by the schema (:meth:`cromss.settings.Real.parse`)."""
    return Real.parse(real_settings(load_settings(text_or_path)), settings_source(text_or_path))


def run_fetch(args: argparse.Namespace) -> int:
    """Run the fetcher of ``args.source`` with the settings and output folder given."""
    module, name = FETCHERS[args.source]
    fetch = getattr(importlib.import_module(module), name)
    fetch(load_real(args.settings), Path(args.out), progress=not args.quiet)
    return 0


def register(groups: Groups) -> None:
    """Add ``cromss data fetch``."""
    parser = groups["data"].add_parser("fetch", help="download a real data source into the raw "
                                       "layout", description=__doc__.splitlines()[0])
    parser.add_argument("source", choices=sorted(FETCHERS), help="the data source to download")
    parser.add_argument("--settings", help="data.real settings: JSON text or a YAML/JSON file")
    parser.add_argument("--out", default="results/raw", help="raw data folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_fetch)
