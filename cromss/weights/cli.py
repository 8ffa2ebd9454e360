"""Commands of weights files: ``cromss weights export | release``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cromss.parser import Groups


def _export_encoder(args: argparse.Namespace) -> int:
    from cromss.weights.trained import export_encoder

    export_encoder(args.model, args.modality, args.out)
    return 0


def _release_encoders(args: argparse.Namespace) -> int:
    from cromss.sources.cli import load_real
    from cromss.weights.released import export_release, fetch_release, release

    rel = release(args.name)
    path, source = fetch_release(load_real(args.settings), rel, progress=not args.quiet)
    export_release(path, rel, args.out, source)
    return 0


def register(groups: Groups) -> None:
    """Add ``cromss weights export`` and ``cromss weights release``."""
    from cromss.weights.released import RELEASES

    p = groups["weights"].add_parser("export", help="one modality's encoder of a pretrained "
                                     "model, with its model card, for transfer")
    p.add_argument("--model", type=Path, required=True, help="model.pt from `cromss pretrain run`")
    p.add_argument("--modality", choices=("s1", "s2"), required=True,
                   help="the branch whose encoder is exported")
    p.add_argument("--out", type=Path, required=True, help="encoder file to write (and its "
                   "published folder beside it: safetensors, Hub card, STAC item, torchgeo file)")
    p.set_defaults(func=_export_encoder)

    p = groups["weights"].add_parser("release", help="fetch a released CromSS checkpoint and "
                                     "write its S1 and S2 encoders with model cards")
    p.add_argument("--name", required=True, choices=RELEASES, help="released checkpoint")
    p.add_argument("--settings", help="data.real settings (JSON text or a YAML/JSON file)")
    p.add_argument("--out", type=Path, required=True, help="writes OUT/encoder_{s1,s2}.pt and "
                   "their published folders OUT/encoder_{s1,s2}/")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_release_encoders)
