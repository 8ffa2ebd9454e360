"""Weights stored by reference to encoder files, put back bit for bit on loading.

A fine-tuned run leaves out the encoder weights still as the encoder file had them (every weight
of a frozen run but its BatchNorm statistics); its card names the file and its SHA-256. A frozen
run's file shrinks from the whole network (about 49 MB with a ResNet-18) to its decoder, head and
BatchNorm statistics.

A pretrained ``model.pt`` whose encoders were exported beside it (``cromss pretrain run
--export-encoders``) leaves out the encoder weights equal to those files'; its payload's
:data:`REFERENCES` names each sibling file, its SHA-256 and the encoder's prefix in the state dict.
With a ResNet-18, middle fusion, it shrinks from about 102 MB to its decoder and head (13 MB).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cromss.errors import CromssError
from cromss.models import build_model
from cromss.weights import files
from cromss.weights.encoders import load_encoder_source, read_encoder

PREFIX = "encoder."
KEY = "encoder_reference"
"""The card's entry: ``{"file": path, "sha256": digest, "keys": [encoder keys not stored]}``."""
REFERENCES = "encoder_references"
"""A pretrained model's entry: per modality ``{"file": name beside model.pt, "sha256": digest,
"prefix": the encoder's prefix in the state dict, "keys": [encoder keys not stored]}``."""


def sha256(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def split(state: Mapping[str, Tensor], loaded: Mapping[str, Tensor] | None,
          encoder_file: str | Path, start: str = PREFIX
          ) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """(weights to store, the card's reference) of a run whose encoder (under ``start`` in
    ``state``) was loaded from ``encoder_file`` as ``loaded``: the encoder weights still equal to
    it are left out."""
    if loaded is None:  # a random encoder: nothing to refer to
        return dict(state), None
    shared = sorted(k for k, v in loaded.items()
                    if start + k in state and torch.equal(state[start + k].cpu(), v.cpu()))
    if not shared:
        return dict(state), None
    left_out = {start + k for k in shared}
    kept = {k: v for k, v in state.items() if k not in left_out}
    return kept, {"file": str(encoder_file), "sha256": sha256(encoder_file), "keys": shared}


def check(model_path: Path, encoder_file: Path, digest: str, weights: str, where: str,
          relation: str) -> None:
    """Raise if ``encoder_file`` is missing or is not the file of SHA-256 ``digest``."""
    if not encoder_file.is_file():
        raise CromssError(f"{model_path}: its {weights} weights are those of {encoder_file}, "
                          f"which is missing ({where})")
    if sha256(encoder_file) != digest:
        raise CromssError(f"{model_path}: {encoder_file} is not the encoder file it was {relation} "
                          f"(SHA-256 differs: the encoder was pretrained again)")


def taken(model_path: Path, encoder_file: Path, loaded: Mapping[str, Tensor], keys: list[str],
          start: str) -> dict[str, Tensor]:
    """The encoder weights ``keys`` of ``loaded``, named under ``start`` in the whole model."""
    missing = [k for k in keys if k not in loaded]
    if missing:
        raise CromssError(f"{model_path}: {encoder_file} lacks {', '.join(missing[:3])}")
    return {start + k: loaded[k] for k in keys}


def complete(model_path: Path, state: dict[str, Tensor], reference: Mapping[str, Any],
             modality: str) -> dict[str, Tensor]:
    """The whole state dict of a file written with a reference: its stored weights plus the
    referenced encoder file's (checked against the recorded SHA-256)."""
    encoder_file = Path(reference["file"])
    check(model_path, encoder_file, reference["sha256"], "frozen encoder",
          "run from the directory the workflow ran in", "trained from")
    source = load_encoder_source(str(encoder_file), modality, None)
    assert source.state_dict is not None  # a file always has weights
    return {**state, **taken(model_path, encoder_file, source.state_dict, reference["keys"],
                             PREFIX)}


def prefix(model: nn.Module, module: nn.Module) -> str:
    """The state-dict prefix of ``module`` inside ``model`` (e.g. ``encoder_s1.``)."""
    name = next((n for n, m in model.named_modules() if m is module), None)
    if not name:
        raise ValueError(f"{type(module).__name__} is not a submodule of {type(model).__name__}")
    return name + "."


def refer_to_encoders(model_path: str | Path, encoder_files: Mapping[str, Path]) -> Path:
    """Rewrite a pretrained model file (atomically) without the encoder weights equal bit for bit
    to those of ``encoder_files`` (per modality, files beside it), referring to them instead."""
    model_path = Path(model_path)
    payload = files.read_weights(model_path, ("state_dict", "settings"), "pretrained model")
    state, model = full_state(model_path, payload), build_model(payload["settings"])
    references: dict[str, dict[str, Any]] = {}
    for modality, encoder_file in encoder_files.items():
        encoder_file = Path(encoder_file)
        if encoder_file.resolve().parent != model_path.resolve().parent:
            raise ValueError(f"{encoder_file} is not beside {model_path}")
        start = prefix(model, model.encoder(modality))
        state, reference = split(state, read_encoder(encoder_file)[0], encoder_file, start)
        if reference is not None:
            references[modality] = {**reference, "file": encoder_file.name, "prefix": start}
    files.save({**payload, "state_dict": state, REFERENCES: references}, model_path)
    return model_path


def with_encoders(model_path: Path, state: Mapping[str, Tensor],
                  references: Mapping[str, Mapping[str, Any]]) -> dict[str, Tensor]:
    """The whole state dict of a pretrained model file: its stored weights plus those of the
    encoder files beside it (each checked against its recorded SHA-256)."""
    whole = dict(state)
    for modality, reference in references.items():
        encoder_file = model_path.parent / reference["file"]
        check(model_path, encoder_file, reference["sha256"], f"{modality} encoder",
              "keep the encoder files beside model.pt", "exported with")
        whole.update(taken(model_path, encoder_file, read_encoder(encoder_file)[0],
                           reference["keys"], reference["prefix"]))
    return whole


def full_state(model_path: Path, payload: Mapping[str, Any]) -> dict[str, Tensor]:
    """The whole state dict of a fine-tuned or pretrained model file's payload, its references
    resolved (a file without references: its state dict as stored)."""
    card, state = payload.get("card"), payload["state_dict"]
    if isinstance(card, dict) and isinstance(card.get(KEY), dict):
        return complete(model_path, state, card[KEY], card["modality"])
    if isinstance(payload.get(REFERENCES), dict):
        return with_encoders(Path(model_path), state, payload[REFERENCES])
    return dict(state)
