"""Commands of the data stage: ``cromss data synth | ingest | inspect`` (``fetch``:
:mod:`cromss.sources.cli`; ``scene``: :mod:`cromss.predict.cli`)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cromss.parser import Groups


def register(groups: Groups) -> None:
    """Add ``cromss data synth``, ``ingest`` and ``inspect``."""
    sub = groups["data"]

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
    ingest.add_argument("--shard-samples", type=int, default=16,
                        help="samples per shard (one file per shard and array) and per write")
    ingest.add_argument("--workers", type=int, default=1,
                        help="processes reading the GeoTIFFs while this one writes the store")
    ingest.add_argument("--partitions", type=int, default=1,
                        help="split the samples into this many partitions, each a whole number "
                             "of shards (with --step init, the plan of the partial store)")
    ingest.add_argument("--step", default="all", metavar="STEP",
                        help="all (default: the whole store in this process), init (create the "
                             "partial store), N (write partition N), publish (validate the "
                             "finished partial store and move it under --out)")
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
    from cromss.data.ingest import ingest, ingest_partition, init_ingest, publish_ingest
    from cromss.data.layouts import Roots

    roots = Roots.under(args.raw, ssl4eo_s12=args.ssl4eo_s12, noldo=args.noldo,
                        dfc2020=args.dfc2020)
    if args.step == "init":
        plan = init_ingest(args.store, roots, args.out, args.partitions, args.shard_samples)
        print(f"{args.out}: partial store of {plan.num_samples} samples in {plan.partitions} "
              "partitions")
        return 0
    if args.step.isdigit():
        counts = ingest_partition(args.store, roots, args.out, int(args.step), args.workers)
        print(f"{args.out}: partition {args.step}: {counts['samples']} samples")
        return 0
    if args.step == "publish":
        counts = publish_ingest(args.store, args.out)
    elif args.step == "all":
        counts = ingest(args.store, roots, args.out, workers=args.workers,
                        partitions=args.partitions, shard_samples=args.shard_samples)
    else:
        raise ValueError(f"--step {args.step!r}: expected all, init, a partition number or "
                         "publish")
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
