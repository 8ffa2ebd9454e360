"""Commands of the map stage: ``cromss map predict | figure`` and ``cromss data scene``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from cromss.errors import CromssError

if TYPE_CHECKING:
    from cromss.parser import Groups


def _check_predict_args(args: argparse.Namespace) -> None:
    """The user's mistakes that need no model loaded, caught before torch is imported."""
    if (args.model is None) == (not args.best_of):
        raise CromssError("give either --model or --best-of")
    for path in [args.model] if args.model is not None else args.best_of:
        if not path.is_file():
            raise CromssError(f"{path}: no such file")
    if (not args.scene) == (args.stac_bbox is None):
        raise CromssError("give either --scene or --stac-bbox (with --stac-datetime)")
    if args.stac_bbox is not None and not args.stac_datetime:
        raise CromssError("--stac-bbox needs --stac-datetime START/END")


def _predict(args: argparse.Namespace) -> int:
    _check_predict_args(args)
    import torch

    from cromss.predict.mapping import predict_map
    from cromss.training.best import best_model

    if args.threads:
        torch.set_num_threads(args.threads)
    stac = None
    if args.stac_bbox is not None:
        stac = {"bbox": args.stac_bbox, "datetime": args.stac_datetime,
                "provider": args.stac_provider, "max_cloud": args.max_cloud,
                "url": args.stac_url, "s2_collection": args.stac_collection}
    model = args.model if args.model is not None else best_model(args.best_of)[0]
    summary = predict_map(model, args.scene or [], args.out, confidence=args.confidence,
                          probabilities=args.probabilities, tile=args.tile, overlap=args.overlap,
                          batch_size=args.batch_size, s1_units=args.s1_units, device=args.device,
                          stac=stac)
    print(json.dumps(summary, indent=1))
    return 0


def _scene(args: argparse.Namespace) -> int:
    from cromss.config import load_settings, settings_source
    from cromss.data.map_scene import write_scene
    from cromss.settings import Scene

    write_scene(args.out, Scene.parse(load_settings(args.settings), settings_source(args.settings)))
    print(f"synthetic scene written to {args.out}")
    return 0


def _map_figure(args: argparse.Namespace) -> int:
    from cromss.predict.figure import map_figure
    from cromss.report.figures import save_figure

    save_figure(map_figure(args.map, args.scene, args.truth), args.out)
    return 0


def register(groups: Groups) -> None:
    """Add ``cromss map predict | figure`` and ``cromss data scene``."""
    p = groups["map"].add_parser("predict", help="map a scene (GeoTIFFs of any size) with a model: "
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
    p.add_argument("--stac-provider", help="earth_search (L1C, default), "
                   "planetary_computer (L2A) or cdse (Copernicus Data Space, L1C; needs "
                   "CDSE_USERNAME and CDSE_PASSWORD)")
    p.add_argument("--stac-url", help="STAC API URL (default: the provider's)")
    p.add_argument("--stac-collection", help="S2 collection to search (default: the provider's, "
                   "e.g. sentinel-2-l1c)")
    p.add_argument("--max-cloud", type=float, help="S2 cloud cover limit in %% (default: "
                   "the schema's data.real.stac.max_cloud)")
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

    p = groups["data"].add_parser("scene", help="write a large synthetic scene (S2 L1C band files "
                                  "at 10/20/60 m, S1 VV/VH, true maps) for `cromss map predict`")
    p.add_argument("--settings", default=None, help="scene settings (JSON text or file)")
    p.add_argument("--out", type=Path, required=True, help="scene folder (replaced atomically)")
    p.set_defaults(func=_scene)

    p = groups["map"].add_parser("figure", help="a map beside its scene's true colour (and its "
                                 "error against a true map)")
    p.add_argument("--map", type=Path, required=True, help="class map from `cromss map predict`")
    p.add_argument("--scene", nargs="+", required=True, help="the scene's files or folders")
    p.add_argument("--truth", type=Path, help="true class map on the same grid")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.set_defaults(func=_map_figure)
