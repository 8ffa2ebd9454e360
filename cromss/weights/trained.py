"""Files of whole trained models: a pretrained CromSS model (``results/pretrain/<variant>/
model.pt``: ``state_dict``, ``settings``, ``provenance``) and a fine-tuned downstream model
(``results/finetune/.../model.pt``: ``state_dict`` and a ``card`` with its ``task``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from cromss.errors import CromssError
from cromss.models import CromssModel, build_downstream, build_model
from cromss.weights import files
from cromss.weights.cards import provenance
from cromss.weights.encoders import save_encoder


def save_model(path: str | Path, model: CromssModel, settings: Mapping[str, Any],
               origin: Mapping[str, Any] | None = None) -> Path:
    """Write a whole pretrained model (both branches, decoder, head), its settings and its
    :func:`~cromss.weights.cards.provenance` atomically."""
    path = Path(path)
    state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    files.save({"state_dict": state, "settings": json.loads(json.dumps(settings)),
                "provenance": json.loads(json.dumps(dict(origin or provenance())))}, path)
    return path


def load_model(path: str | Path) -> tuple[CromssModel, dict[str, Any]]:
    """(model, settings) of a file written by :func:`save_model`, loaded with ``weights_only=True``
    (the encoder weights it refers to read from their files: :mod:`cromss.weights.by_reference`)."""
    from cromss.weights.by_reference import full_state

    payload = files.read_weights(path, ("state_dict", "settings"), "pretrained model")
    state = full_state(Path(path), payload)
    model = build_model(payload["settings"])
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CromssError(f"{path}: weights do not match the settings' model: {err}") from err
    return model, payload["settings"]


def load_downstream(model_path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, card) of a file written by ``cromss finetune run``."""
    from cromss.weights.by_reference import full_state

    payload = files.load(model_path)
    if not isinstance(payload.get("card"), dict) or "task" not in payload["card"]:
        raise CromssError(f"{model_path}: not a model written by `cromss finetune run` (no card)")
    card = payload["card"]
    state = full_state(model_path, payload)
    model = build_downstream(card["task"], card["encoder"], card["in_channels"])
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CromssError(f"{model_path}: weights do not match the card's model: {err}") from err
    return model.eval(), card


def export_encoder(model_path: str | Path, modality: str, out: str | Path) -> Path:
    """Write one modality's encoder of a saved pretrained model, with its model card."""
    model, settings = load_model(model_path)
    if modality not in model.modalities:
        raise CromssError(f"{model_path}: the {settings.get('fusion')} model has no {modality} "
                          f"encoder")
    origin = files.read_weights(model_path, ("settings",), "pretrained model").get("provenance")
    return save_encoder(out, model, modality, settings, origin)
