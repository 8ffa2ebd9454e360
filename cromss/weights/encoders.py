"""Encoder files and "which encoder is this": this workflow's ``encoder_{s1,s2}.pt`` (weights and
model card), the encoders inside the released CromSS Lightning checkpoints, plain state dicts, and
loading any of them into a network with errors that name the file and the bad keys.

An encoder file is ``{"state_dict": ..., "hyper_parameters": ..., "card": ...}`` readable with
``torch.load(weights_only=True)``, laid out as the Lightning file torchgeo's
``SemanticSegmentationTask(weights=<file>)`` reads (state-dict keys ``model.<encoder key>``;
:func:`cromss.weights.publish.torchgeo_checkpoint`); :func:`read_encoder` gives the plain keys, and
reads the plain ``{"state_dict", "card"}`` files of cromss 0.1 too. The folder beside it
(safetensors with the plain keys, Hub card, STAC item) is :mod:`cromss.weights.publish`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from cromss.errors import CromssError
from cromss.models import CromssModel
from cromss.weights import files
from cromss.weights.cards import model_card
from cromss.weights.publish import publish_encoder, torchgeo_backbone, torchgeo_checkpoint

if TYPE_CHECKING:
    from cromss.settings import Finetune

RELEASED_PREFIXES = ("net.encoder1.", "net.encoder.", "net.model1.encoder.", "net.model2.encoder.")
"""Encoder prefixes in the released CromSS Lightning checkpoints (midF S1 / S2 or single-modal,
lateF S1 / S2); the modality of each is told by its first convolution's band count."""


# -- this workflow's encoder files ----------------------------------------------------------------

def encoder_checkpoint(model: CromssModel, modality: str, settings: Mapping[str, Any],
                       origin: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{"state_dict": encoder weights on CPU, "card": model card}`` of one modality."""
    state = {key: value.detach().cpu().clone()
             for key, value in model.encoder(modality).state_dict().items()}
    return {"state_dict": state, "card": model_card(settings, modality, origin)}


def save_encoder(path: str | Path, model: CromssModel, modality: str,
                 settings: Mapping[str, Any], origin: Mapping[str, Any] | None = None) -> Path:
    """Write one modality's encoder and card to ``path`` atomically, and its published folder
    beside it (:func:`cromss.weights.publish.publish_encoder`)."""
    path = Path(path)
    checkpoint = encoder_checkpoint(model, modality, settings, origin)
    files.save(encoder_file_payload(checkpoint["state_dict"], checkpoint["card"]), path)
    publish_encoder(path, checkpoint["state_dict"], checkpoint["card"])
    return path


def read_encoder(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state_dict, card) of an encoder file, loaded with ``weights_only=True``."""
    payload = files.read_weights(path, ("state_dict", "card"), "encoder file")
    return plain_state(payload), payload["card"]


def encoder_file_payload(state: Mapping[str, Tensor], card: Mapping[str, Any]) -> dict[str, Any]:
    """What an encoder file holds: torchgeo's Lightning layout of the weights, and the card."""
    return {**torchgeo_checkpoint(state, card), "card": json.loads(json.dumps(card))}


def plain_state(payload: Mapping[str, Any]) -> dict[str, Tensor]:
    """The encoder's own keys of an encoder file's payload (torchgeo's ``model.`` removed from
    a file in its layout; a cromss 0.1 file's as they are)."""
    if "hyper_parameters" in payload:
        return torchgeo_backbone(payload)
    return dict(payload["state_dict"])


# -- loading weights into a network ---------------------------------------------------------------

def first_conv(module: nn.Module) -> tuple[str, nn.Conv2d]:
    """Name and module of the first 2-D convolution (the one that sees the input bands)."""
    for name, child in module.named_modules():
        if isinstance(child, nn.Conv2d):
            return name, child
    raise ValueError(f"{type(module).__name__} has no convolution")


def strip_prefix(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries under ``prefix`` with the prefix removed (e.g. a reference checkpoint's
    ``model.encoder1.`` for its middle-fusion S1 encoder)."""
    selected = {key[len(prefix):]: value for key, value in state_dict.items()
                if key.startswith(prefix)}
    if not selected:
        raise CromssError(f"no weights under prefix {prefix!r}")
    return selected


def _listed(keys: set[str], limit: int = 6) -> str:
    shown = sorted(keys)[:limit]
    return ", ".join(shown) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_encoder_state(encoder_module: nn.Module, state_dict: Mapping[str, Tensor],
                       source: str) -> None:
    """Load ``state_dict`` into ``encoder_module``; errors name ``source`` and the bad keys."""
    conv_name, conv = first_conv(encoder_module)
    conv_key = f"{conv_name}.weight"
    if conv_key in state_dict and state_dict[conv_key].shape[1] != conv.in_channels:
        raise CromssError(f"{source}: the first convolution has {state_dict[conv_key].shape[1]} "
                          f"input channels, the model expects {conv.in_channels}")
    expected = encoder_module.state_dict()
    missing, unexpected = set(expected) - set(state_dict), set(state_dict) - set(expected)
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    mismatched = {key for key in set(expected) & set(state_dict)
                  if expected[key].shape != state_dict[key].shape}
    if mismatched:
        problems.append(f"shape mismatches: {_listed(mismatched)}")
    if problems:
        raise CromssError(f"{source}: encoder weights do not fit the model ({'; '.join(problems)})")
    encoder_module.load_state_dict(state_dict, strict=True)


def load_encoder(encoder_module: nn.Module, path: str | Path) -> dict[str, Any]:
    """Put an encoder file's weights into ``encoder_module`` (e.g. a new downstream model's
    ``.encoder``) and return its card."""
    state_dict, card = read_encoder(path)
    load_encoder_state(encoder_module, state_dict, str(path))
    return card


# -- which encoder is this file -------------------------------------------------------------------

@dataclass
class EncoderSource:
    """An encoder to transfer: smp name, input bands, weights (None = random) and provenance."""

    name: str
    in_channels: int
    weights: str
    state_dict: dict[str, Tensor] | None = None
    card: dict[str, Any] = field(default_factory=dict)


def infer_resnet(state_dict: Mapping[str, Tensor]) -> str:
    """The ResNet depth of an encoder state dict, from its block layout."""
    blocks = {layer: len({k.split(".")[1] for k in state_dict if k.startswith(f"{layer}.")})
              for layer in ("layer1", "layer2", "layer3", "layer4")}
    bottleneck = any(k.startswith("layer1.0.conv3.") for k in state_dict)
    layouts = {(2, 2, 2, 2, False): "resnet18", (3, 4, 6, 3, False): "resnet34",
               (3, 4, 6, 3, True): "resnet50", (3, 4, 23, 3, True): "resnet101",
               (3, 8, 36, 3, True): "resnet152"}
    key = (*blocks.values(), bottleneck)
    if key not in layouts:
        raise CromssError(f"not a ResNet encoder state dict (blocks {tuple(blocks.values())})")
    return layouts[key]


def expected_bands(modality: str) -> tuple[int, ...]:
    """The input band counts an encoder of ``modality`` may have."""
    return (2,) if modality == "s1" else (9, 13)


def input_bands(state_dict: Mapping[str, Tensor], source: str) -> int:
    """Input channels of the first convolution (the first 4-D weight: ResNet's conv1 and others)."""
    first = next((v for k, v in state_dict.items() if k.endswith("weight") and v.dim() == 4), None)
    if first is None:
        raise CromssError(f"{source}: encoder state dict has no convolution weight")
    return int(first.shape[1])


def released_encoder(state_dict: Mapping[str, Tensor], modality: str,
                     source: str) -> dict[str, Tensor]:
    """The encoder of ``modality`` in a released CromSS Lightning state dict."""
    found = {}
    for prefix in RELEASED_PREFIXES:
        sub = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if sub and "conv1.weight" in sub:
            found[prefix] = sub
    matching = [p for p, sub in found.items() if input_bands(sub, source) in expected_bands(modality)]
    if len(matching) != 1:
        seen = {p: input_bands(sub, source) for p, sub in found.items()}
        raise CromssError(f"{source}: no unique {modality} encoder ({expected_bands(modality)} "
                          f"bands) among the prefixes {seen or RELEASED_PREFIXES}")
    return found[matching[0]]


def load_encoder_source(spec: str, modality: str, settings: Finetune | None) -> EncoderSource:
    """Resolve ``--encoder``: ``random`` or a file (ours, released Lightning, or a plain state dict);
    only ``random`` reads ``settings``."""
    if spec == "random":
        if settings is None or settings.encoder is None:
            raise CromssError("--encoder random needs the encoder name in the settings ('encoder')")
        bands = 2 if modality == "s1" else settings.s2_bands
        return EncoderSource(settings.encoder, bands, "random")
    payload = files.load(spec)
    state = payload.get("state_dict", payload)
    card: dict[str, Any] = payload["card"] if isinstance(payload.get("card"), dict) else {}
    if card:
        state = plain_state(payload)
        if card.get("modality") != modality:
            raise CromssError(f"{spec}: a {card.get('modality')} encoder, not {modality}")
        weights, name = str(card.get("variant", Path(spec).stem)), card["encoder"]
    elif any(k.startswith("net.") for k in state):
        state, weights = released_encoder(state, modality, spec), "released"
        name = infer_resnet(state)
    else:
        if all(k.startswith("encoder.") for k in state):
            state = {k.removeprefix("encoder."): v for k, v in state.items()}
        weights, name = Path(spec).stem, infer_resnet(state)
    bands = input_bands(state, spec)
    if bands not in expected_bands(modality):
        raise CromssError(f"{spec}: encoder takes {bands} bands; {modality} needs "
                          f"{' or '.join(map(str, expected_bands(modality)))}")
    return EncoderSource(name, bands, weights, state, card)
