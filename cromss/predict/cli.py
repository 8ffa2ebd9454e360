"""Sub-commands of the map stage: ``cromss predict``, ``cromss scene``, ``cromss map-figure``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _predict(args: argparse.Namespace) -> int:
    import torch

    from cromss.predict.mapping import best_model, predict_map

    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.model is None) == (not args.best_of):
        raise ValueError("give either --model or --best-of")
    if (not args.scene) == (args.stac_bbox is None):
        raise ValueError("give either --scene or --stac-bbox (with --stac-datetime)")
    stac = None
    if args.stac_bbox is not None:
        if not args.stac_datetime:
            raise ValueError("--stac-bbox needs --stac-datetime START/END")
        stac = {"bbox": args.stac_bbox, "datetime": args.stac_datetime,
                "provider": args.stac_provider, "max_cloud": args.max_cloud}
        if args.stac_url:
            stac["url"] = args.stac_url
    model = args.model if args.model is not None else best_model(args.best_of)[0]
    summary = predict_map(model, args.scene or [], args.out, confidence=args.confidence,
                          probabilities=args.probabilities, tile=args.tile, overlap=args.overlap,
                          batch_size=args.batch_size, s1_units=args.s1_units, device=args.device,
                          stac=stac)
    print(json.dumps(summary, indent=1))
    return 0


def _scene(args: argparse.Namespace) -> int:
    from cromss.config import load_settings
    from cromss.data.map_scene import write_scene

    write_scene(args.out, load_settings(args.settings))
    print(f"synthetic scene written to {args.out}")
    return 0


def _map_figure(args: argparse.Namespace) -> int:
    from cromss.predict.figure import map_figure
    from cromss.report.figures import save_figure

    save_figure(map_figure(args.map, args.scene, args.truth), args.out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's sub-commands."""
    p = subparsers.add_parser("predict", help="map a scene (GeoTIFFs of any size) with a model: "
                              "class map and confidence as Cloud-Optimized GeoTIFFs")
    p.add_argument("--model", type=Path, help="fine-tuned model.pt, pretrained model.pt or a "
                   "released CromSS .ckpt")
    p.add_argument("--best-of", type=Path, nargs="+", metavar="METRICS",
                   help="instead of --model: the model.pt beside the metrics.json with the "
                   "highest mIoU")
    p.add_argument("--scene", nargs="+",
                   help="GeoTIFF band files and/or folders holding them (S2 and/or S1)")
    p.add_argument("--stac-bbox", type=float, nargs=4, metavar=("LON0", "LAT0", "LON1", "LAT1"),
                   help="instead of --scene: an area, read from a STAC API's assets")
    p.add_argument("--stac-datetime", metavar="START/END", help="date window of the STAC search "
                   "(the most recent item covering the area is used)")
    p.add_argument("--stac-provider", default="earth_search", help="earth_search (L1C, default) "
                   "or planetary_computer")
    p.add_argument("--stac-url", help="STAC API URL (default: the provider's)")
    p.add_argument("--max-cloud", type=float, default=20.0, help="S2 cloud cover limit in %%")
    p.add_argument("--out", type=Path, required=True, help="class map to write (COG, uint8)")
    p.add_argument("--confidence", type=Path, help="confidence COG (default OUT_confidence.tif)")
    p.add_argument("--probabilities", type=Path, help="also write class probabilities (Zarr)")
    p.add_argument("--tile", type=int, default=256, help="tile side in px (multiple of 32)")
    p.add_argument("--overlap", type=int, default=64, help="overlap of neighbouring tiles in px")
    p.add_argument("--batch-size", type=int, default=8, help="tiles per forward pass")
    p.add_argument("--s1-units", choices=("db", "linear", "amplitude"), default="db",
                   help="how the S1 files store backscatter (the models take dB)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.set_defaults(func=_predict)

    p = subparsers.add_parser("scene", help="write a large synthetic scene (S2 L1C band files at "
                              "10/20/60 m, S1 VV/VH, true maps) for `cromss predict`")
    p.add_argument("--settings", default=None, help="scene settings (JSON text or file)")
    p.add_argument("--out", type=Path, required=True, help="scene folder (replaced atomically)")
    p.set_defaults(func=_scene)

    p = subparsers.add_parser("map-figure", help="a map beside its scene's true colour (and its "
                              "error against a true map)")
    p.add_argument("--map", type=Path, required=True, help="class map from `cromss predict`")
    p.add_argument("--scene", nargs="+", required=True, help="the scene's files or folders")
    p.add_argument("--truth", type=Path, help="true class map on the same grid")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.set_defaults(func=_map_figure)
