"""Fine-tuned weights stored by reference: the encoder weights a run left as the encoder file had
them (every weight of a frozen run but its BatchNorm statistics) are not copied into its
``model.pt``; the file's card names the encoder file and its SHA-256 instead, and loading puts them
back. A frozen run's file shrinks from the whole network (about 49 MB with a ResNet-18) to its
decoder, head and BatchNorm statistics; the weights are bit for bit those it was trained with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cromss.errors import CromssError

PREFIX = "encoder."
KEY = "encoder_reference"
"""The card's entry: ``{"file": path, "sha256": digest, "keys": [encoder keys not stored]}``."""


def sha256(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def split(state: Mapping[str, Tensor], loaded: Mapping[str, Tensor] | None,
          encoder_file: str) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """(weights to store, the card's reference) of a run whose encoder was loaded from
    ``encoder_file`` as ``loaded``: the encoder weights still equal to it are left out."""
    if loaded is None:  # a random encoder: nothing to refer to
        return dict(state), None
    shared = sorted(k for k, v in loaded.items()
                    if PREFIX + k in state and torch.equal(state[PREFIX + k].cpu(), v.cpu()))
    if not shared:
        return dict(state), None
    left_out = {PREFIX + k for k in shared}
    kept = {k: v for k, v in state.items() if k not in left_out}
    return kept, {"file": str(encoder_file), "sha256": sha256(encoder_file), "keys": shared}


def complete(model_path: Path, state: dict[str, Tensor], reference: Mapping[str, Any],
             modality: str) -> dict[str, Tensor]:
    """The whole state dict of a file written with a reference: its stored weights plus the
    referenced encoder file's (checked against the recorded SHA-256)."""
    from cromss.weights.encoders import load_encoder_source

    encoder_file = Path(reference["file"])
    if not encoder_file.is_file():
        raise CromssError(f"{model_path}: its frozen encoder weights are those of {encoder_file}, "
                          f"which is missing (run from the directory the workflow ran in)")
    if sha256(encoder_file) != reference["sha256"]:
        raise CromssError(f"{model_path}: {encoder_file} is not the encoder file it was trained "
                          f"from (SHA-256 differs: the encoder was pretrained again)")
    source = load_encoder_source(str(encoder_file), modality, None)
    assert source.state_dict is not None  # a file always has weights
    missing = [k for k in reference["keys"] if k not in source.state_dict]
    if missing:
        raise CromssError(f"{model_path}: {encoder_file} lacks {', '.join(missing[:3])}")
    return {**state, **{PREFIX + k: source.state_dict[k] for k in reference["keys"]}}


def full_state(model_path: Path, payload: Mapping[str, Any]) -> dict[str, Tensor]:
    """The whole state dict of a fine-tuned model file's payload, its reference resolved."""
    card, state = payload["card"], payload["state_dict"]
    if isinstance(card.get(KEY), dict):
        return complete(model_path, state, card[KEY], card["modality"])
    return dict(state)
