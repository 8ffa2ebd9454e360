"""The released CromSS weights: names, safe reads of their Lightning checkpoints, the whole models
inside them, their encoders exported with cards, and their download.

The authors released four Lightning checkpoints in the NoLDO-S12 Hugging Face repository
(``weights-cromss-{13B,9B}-{midFusion,lateFusion}-epoch=199.ckpt``). ``finetune.weights`` names them
``release-13B-midF``, ``release-13B-lateF``, ``release-9B-midF`` and ``release-9B-lateF``;
``cromss weights release`` downloads one (resumable, verified) and writes ``OUT/encoder_s1.pt`` and
``OUT/encoder_s2.pt`` (and their published folders ``OUT/encoder_{s1,s2}/``), the same files a
pretraining variant exports, each with a model card that
says where its weights came from (repository, revision, file, URL, size, md5, sha256, licence) and
what inputs they expect.

Encoder keys follow the reference network classes: middle fusion ``net.encoder1.`` (S1) and
``net.encoder.`` (S2); late fusion ``net.model1.encoder.`` (S1) and ``net.model2.encoder.`` (S2).
The full Lightning payload is read with ``weights_only`` and ``argparse.Namespace`` allowed, nothing
else (:data:`cromss.weights.files.SAFE_GLOBALS`). Only the standard library is imported at module
level: the workflow's Snakefile reads :data:`RELEASES`.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cromss.errors import CromssError
from cromss.settings import Real

if TYPE_CHECKING:
    import torch

    from cromss.models import CromssModel

RELEASE_NAME = re.compile(r"release-(13B|9B)-(midF|lateF)$")
FUSIONS = {"midF": ("midFusion", "middle"), "lateF": ("lateFusion", "late")}
ENCODER_PREFIXES = {
    "middle": {"s1": "net.encoder1.", "s2": "net.encoder."},
    "late": {"s1": "net.model1.encoder.", "s2": "net.model2.encoder."},
}
RELEASED_FUSIONS = {
    "middle": {"net.encoder1.": "encoder_s1.", "net.encoder.": "encoder_s2.",
               "net.decoder.": "decoder.", "net.segmentation_head.": "segmentation_head."},
    "late": {"net.model1.": "unet_s1.", "net.model2.": "unet_s2."},
}
"""Released checkpoint prefix -> this package's module prefix, per fusion."""
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
        raise CromssError(f"{name!r} is not a released CromSS encoder; use one of "
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
    from cromss.weights import files

    payload = files.load(path)
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise CromssError(f"{path}: no state_dict; not a Lightning checkpoint")
    prefixes = ENCODER_PREFIXES[rel.fusion]
    if not all(any(k.startswith(p) for k in state) for p in prefixes.values()):
        raise CromssError(f"{path}: no {rel.fusion}-fusion encoders under "
                          f"{', '.join(prefixes.values())} (is it {rel.file}?)")
    args = (payload.get("hyper_parameters") or {}).get("args", {})
    return state, plain(args) if args else {}


def encoder_settings(state: dict[str, Any], args: dict[str, Any], rel: Release) -> dict[str, Any]:
    """The card settings of a release: the encoder its arguments name (``mt``; else the ResNet its
    weights have), its bands checked against the name, and its training arguments."""
    from cromss.weights.encoders import infer_resnet, input_bands, strip_prefix

    s2_state = strip_prefix(state, ENCODER_PREFIXES[rel.fusion]["s2"])
    bands = input_bands(s2_state, rel.file)
    if bands != rel.s2_bands:
        raise CromssError(f"{rel.file}: its S2 encoder takes {bands} bands, the release name says "
                          f"{rel.s2_bands}")
    return {"name": rel.name, "fusion": rel.fusion, "s2_bands": bands,
            "encoder": str(args.get("mt") or infer_resnet(s2_state)),
            "num_classes": int(args.get("n_classes", 9)), "reference_args": args}


def export_release(path: str | Path, rel: Release, out: str | Path,
                   source: dict[str, Any]) -> list[Path]:
    """Write ``out/encoder_s1.pt`` and ``out/encoder_s2.pt`` of a released checkpoint; ``source``
    (repository, file, checksums, licence) goes into each card."""
    from segmentation_models_pytorch.encoders import get_encoder

    from cromss.models import ENCODER_DEPTH, MODALITIES
    from cromss.weights import files
    from cromss.weights.cards import model_card
    from cromss.weights.encoders import encoder_file_payload, load_encoder_state, strip_prefix
    from cromss.weights.publish import publish_encoder

    state, args = read_release(path, rel)
    settings = encoder_settings(state, args, rel)
    written = []
    for modality in MODALITIES:
        weights = strip_prefix(state, ENCODER_PREFIXES[rel.fusion][modality])
        card = {**model_card(settings, modality), "source": source}
        module = get_encoder(settings["encoder"], in_channels=card["in_channels"],
                             depth=ENCODER_DEPTH, weights=None)
        load_encoder_state(module, weights, f"{path} ({modality})")  # checks every key
        target = Path(out) / f"encoder_{modality}.pt"
        files.save(encoder_file_payload(module.state_dict(), card), target)
        publish_encoder(target, module.state_dict(), card)
        written.append(target)
    return written


def released_settings(state: dict[str, torch.Tensor], path: Path) -> tuple[str, dict[str, Any]]:
    """Fusion and model settings of a released Lightning state dict, from its weights."""
    from cromss.models import ENCODER_DEPTH
    from cromss.weights.encoders import infer_resnet, input_bands, strip_prefix

    fusion = next((f for f, prefixes in RELEASED_FUSIONS.items()
                   if all(any(k.startswith(p) for k in state) for p in prefixes)), None)
    if fusion is None:
        raise CromssError(f"{path}: a Lightning checkpoint, but neither a middle-fusion "
                          f"({', '.join(RELEASED_FUSIONS['middle'])}) nor a late-fusion "
                          f"({', '.join(RELEASED_FUSIONS['late'])}) CromSS model")
    s2_prefix = "net.encoder." if fusion == "middle" else "net.model2.encoder."
    s2_encoder = strip_prefix(state, s2_prefix)
    head = "net.segmentation_head.0.weight" if fusion == "middle" else \
        "net.model1.segmentation_head.0.weight"
    decoder = "net.decoder." if fusion == "middle" else "net.model1.decoder."
    channels = [int(state[f"{decoder}blocks.{i}.conv1.0.weight"].shape[0])
                for i in range(ENCODER_DEPTH)]
    return fusion, {"fusion": fusion, "encoder": infer_resnet(s2_encoder),
                    "s2_bands": input_bands(s2_encoder, str(path)),
                    "num_classes": int(state[head].shape[0]), "decoder_channels": channels}


def released_model(path: Path, state: dict[str, torch.Tensor]
                   ) -> tuple[CromssModel, dict[str, Any]]:
    """(fusion model, settings) of a released Lightning state dict, its weights loaded."""
    from cromss.models import build_model

    fusion, settings = released_settings(state, path)
    renamed = {}
    for key, value in state.items():
        for old, new in RELEASED_FUSIONS[fusion].items():
            if key.startswith(old):
                renamed[new + key[len(old):]] = value
    module = build_model(settings)
    try:
        module.load_state_dict(renamed)
    except RuntimeError as err:
        raise CromssError(f"{path}: released weights do not fit a {fusion}-fusion "
                          f"{settings['encoder']} U-Net: {err}") from err
    return module, settings


def fetch_release(real: Real, rel: Release, *, progress: bool = True
                  ) -> tuple[Path, dict[str, Any]]:
    """Download a release through the Hugging Face source (``data.real`` settings: base URL,
    ``weights`` repo/revision/md5, retry, download_dir); return its path and provenance."""
    from cromss.sources import huggingface
    from cromss.sources.http import file_digests

    section = huggingface.weights_section(real)
    path = huggingface.fetch_repo_file(real, section, rel.file,
                                       huggingface.download_dir(real, "weights"),
                                       progress=progress)
    source = {"repository": f"huggingface.co/datasets/{section['repo']}",
              "revision": section["revision"], "file": rel.file,
              "url": huggingface.weights_url(real, section, rel.file),
              "size": path.stat().st_size, **file_digests(path), "licence": LICENCE}
    return path, source
