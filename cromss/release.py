"""The released CromSS weights as encoders of the workflow: fetch, load safely, export with cards.

The authors released four Lightning checkpoints in the NoLDO-S12 Hugging Face repository
(``weights-cromss-{13B,9B}-{midFusion,lateFusion}-epoch=199.ckpt``). ``finetune.weights`` names them
``release-13B-midF``, ``release-13B-lateF``, ``release-9B-midF`` and ``release-9B-lateF``;
``cromss release-encoders`` downloads one (resumable, verified) and writes
``OUT/encoder_s1.pt`` and ``OUT/encoder_s2.pt``, the same files a pretraining variant exports,
each with a model card that says where its weights came from (repository, revision, file, URL,
size, md5, sha256, licence) and what inputs they expect.

Encoder keys follow the reference network classes: middle fusion ``net.encoder1.`` (S1) and
``net.encoder.`` (S2); late fusion ``net.model1.encoder.`` (S1) and ``net.model2.encoder.`` (S2).
The full Lightning payload is read with ``weights_only`` and ``argparse.Namespace`` allowed, nothing
else (:data:`cromss.training.checkpoint.SAFE_GLOBALS`).
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RELEASE_NAME = re.compile(r"release-(13B|9B)-(midF|lateF)$")
FUSIONS = {"midF": ("midFusion", "middle"), "lateF": ("lateFusion", "late")}
ENCODER_PREFIXES = {
    "middle": {"s1": "net.encoder1.", "s2": "net.encoder."},
    "late": {"s1": "net.model1.encoder.", "s2": "net.model2.encoder."},
}
LICENCE = "MIT (Hugging Face dataset vikki23/NoLDO-S12)"


@dataclass(frozen=True)
class Release:
    """One released checkpoint: its workflow name, file name, fusion and S2 bands."""

    name: str
    file: str
    fusion: str
    s2_bands: int


def release(name: str) -> Release:
    """The release called ``name`` (``release-<13B|9B>-<midF|lateF>``)."""
    match = RELEASE_NAME.match(name)
    if not match:
        raise ValueError(f"{name!r} is not a released CromSS encoder; use one of "
                         f"{', '.join(RELEASES)}")
    bands, short = match.groups()
    file_fusion, fusion = FUSIONS[short]
    return Release(name, f"weights-cromss-{bands}-{file_fusion}-epoch=199.ckpt", fusion,
                   int(bands[:-1]))


RELEASES = tuple(f"release-{b}-{f}" for b in ("13B", "9B") for f in ("midF", "lateF"))


def plain(value: Any) -> Any:
    """``value`` as JSON types (Namespaces as dicts, others as text): safe for a model card."""
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    return json.loads(json.dumps(value, default=lambda v: vars(v) if isinstance(
        v, argparse.Namespace) else str(v)))


def read_release(path: str | Path, rel: Release) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state_dict, reference arguments) of a released checkpoint, read with ``weights_only``."""
    from cromss.training import checkpoint

    payload = checkpoint.load(path)
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise ValueError(f"{path}: no state_dict; not a Lightning checkpoint")
    prefixes = ENCODER_PREFIXES[rel.fusion]
    if not all(any(k.startswith(p) for k in state) for p in prefixes.values()):
        raise ValueError(f"{path}: no {rel.fusion}-fusion encoders under "
                         f"{', '.join(prefixes.values())} (is it {rel.file}?)")
    args = (payload.get("hyper_parameters") or {}).get("args", {})
    return state, plain(args) if args else {}


def encoder_settings(state: dict[str, Any], args: dict[str, Any], rel: Release) -> dict[str, Any]:
    """The card settings of a release: the encoder its arguments name (``mt``; else the ResNet its
    weights have), its bands checked against the name, and its training arguments."""
    from cromss.models import strip_prefix
    from cromss.training.finetune import infer_resnet, input_bands

    s2_state = strip_prefix(state, ENCODER_PREFIXES[rel.fusion]["s2"])
    bands = input_bands(s2_state, rel.file)
    if bands != rel.s2_bands:
        raise ValueError(f"{rel.file}: its S2 encoder takes {bands} bands, the release name says "
                         f"{rel.s2_bands}")
    return {"name": rel.name, "fusion": rel.fusion, "s2_bands": bands,
            "encoder": str(args.get("mt") or infer_resnet(s2_state)), "num_classes": int(args.get("n_classes", 9)),
            "reference_args": args}


def export_release(path: str | Path, rel: Release, out: str | Path,
                   source: dict[str, Any]) -> list[Path]:
    """Write ``out/encoder_s1.pt`` and ``out/encoder_s2.pt`` of a released checkpoint; ``source``
    (repository, file, checksums, licence) goes into each card."""
    from segmentation_models_pytorch.encoders import get_encoder

    from cromss import models
    from cromss.training import checkpoint

    state, args = read_release(path, rel)
    settings = encoder_settings(state, args, rel)
    written = []
    for modality in models.MODALITIES:
        weights = models.strip_prefix(state, ENCODER_PREFIXES[rel.fusion][modality])
        card = {**models.model_card(settings, modality), "source": source}
        module = get_encoder(settings["encoder"], in_channels=card["in_channels"],
                             depth=models.ENCODER_DEPTH, weights=None)
        models.load_encoder_state(module, weights, f"{path} ({modality})")  # checks every key
        target = Path(out) / f"encoder_{modality}.pt"
        checkpoint.save({"state_dict": module.state_dict(), "card": card}, target)
        written.append(target)
    return written


def fetch_release(settings: dict[str, Any], rel: Release, *, progress: bool = True
                  ) -> tuple[Path, dict[str, Any]]:
    """Download a release through the Hugging Face source (``data.real`` settings: base URL,
    ``weights`` repo/revision/md5, retry, download_dir); return its path and provenance."""
    from cromss.sources import huggingface
    from cromss.sources.http import file_digests

    section = huggingface.weights_section(settings)
    path = huggingface.fetch_repo_file(settings, section, rel.file,
                                       huggingface.download_dir(settings, "weights"),
                                       progress=progress)
    source = {"repository": f"huggingface.co/datasets/{section['repo']}",
              "revision": section.get("revision", "main"), "file": rel.file,
              "url": huggingface.weights_url(settings, section, rel.file),
              "size": path.stat().st_size, **file_digests(path), "licence": LICENCE}
    return path, source


def run_release_encoders(args: argparse.Namespace) -> int:
    from cromss.config import load_settings
    from cromss.sources.cli import real_settings

    rel = release(args.name)
    settings = real_settings(load_settings(args.settings)) if args.settings else {}
    path, source = fetch_release(settings, rel, progress=not args.quiet)
    export_release(path, rel, args.out, source)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``cromss release-encoders``."""
    p = subparsers.add_parser("release-encoders", help="fetch a released CromSS checkpoint and "
                              "write its S1 and S2 encoders with model cards")
    p.add_argument("--name", required=True, choices=RELEASES)
    p.add_argument("--settings", help="data.real settings (JSON text or a YAML/JSON file)")
    p.add_argument("--out", type=Path, required=True, help="writes OUT/encoder_{s1,s2}.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_release_encoders)
