"""Command-line sub-commands of the data stage: ``cromss data synth | ingest | inspect``."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``cromss data`` and its sub-commands."""
    data = subparsers.add_parser("data", help="synthesise, ingest and inspect datasets")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    synth = sub.add_parser("synth", help="write the synthetic world in the real on-disk layouts")
    synth.add_argument("--settings", default=None,
                       help="the data.synthetic settings (JSON text or YAML/JSON file)")
    synth.add_argument("--out", required=True, help="raw root to write (replaced atomically)")
    synth.set_defaults(func=_synth)

    ingest = sub.add_parser("ingest", help="read a raw layout into a Zarr store")
    ingest.add_argument("store", help="nol, dw_train, dw_test, osm_train, osm_test, "
                                      "dfc2020_train or dfc2020_test")
    ingest.add_argument("--raw", required=True,
                        help="raw root holding ssl4eo_s12/, noldo/ and dfc2020/ (e.g. results/raw)")
    for part, tree in (("ssl4eo-s12", "SSL4EO-S12 v1 (s1/, s2c/)"),
                       ("noldo", "NoLDO-S12 (ssl4eo_s12_nol/, ssl4eo_s12_dw/, ssl4eo_s12_osm/)"),
                       ("dfc2020", "DFC2020 (ROIs0000_validation/, ROIs0000_test/)")):
        ingest.add_argument(f"--{part}", default=None, metavar="PATH",
                            help=f"read the {tree} tree here, in place, instead of below --raw")
    ingest.add_argument("--out", required=True, help="the store to write, e.g. results/data/nol.zarr")
    ingest.add_argument("--batch-size", type=int, default=16, help="samples per write")
    ingest.add_argument("--workers", type=int, default=1,
                        help="processes reading the GeoTIFFs while this one writes the store")
    ingest.set_defaults(func=_ingest)

    inspect = sub.add_parser("inspect", help="print a store summary and write a PNG quicklook")
    inspect.add_argument("store", help="a Zarr store")
    inspect.add_argument("--png", default=None, help="write a quicklook PNG here")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    inspect.set_defaults(func=_inspect)


def _synth(args: argparse.Namespace) -> int:
    from cromss.config import load_settings
    from cromss.data.synthetic import synthesise

    synthesise(args.out, load_settings(args.settings, "synthetic"))
    print(f"synthetic world written to {args.out}")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from cromss.data.ingest import ingest
    from cromss.data.layouts import Roots

    roots = Roots.under(args.raw, ssl4eo_s12=args.ssl4eo_s12, noldo=args.noldo,
                        dfc2020=args.dfc2020)
    counts = ingest(args.store, roots, args.out, batch_size=args.batch_size,
                    workers=args.workers)
    print(f"{args.out}: {counts['samples']} samples, "
          f"{counts['s1_nodata_pixels']} S1 pixels without data (filled and flagged)")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from cromss.data.inspect import format_summary, quicklook, summarise

    summary = summarise(args.store)
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
    if args.png:
        print(f"quicklook: {quicklook(args.store, args.png)}")
    return 0
