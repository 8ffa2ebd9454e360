"""CromSS models (method §2): single-modal, middle-fusion and late-fusion U-Nets, encoder transfer.

Every model maps (S1, S2) to (logits_s1, logits_s2), None for a modality it does not use:

- ``single_s1`` / ``single_s2``: one smp U-Net on one modality;
- ``middle``: an S1 encoder and an S2 encoder, ONE shared decoder and head, each modality's
  features decoded separately (the fusion is the weight sharing, nothing is concatenated);
- ``late``: two complete, independent U-Nets.

Encoders are randomly initialised (``encoder_weights=None``). Only encoders are transferred: an
encoder file is ``{"state_dict": ..., "card": ...}`` readable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from segmentation_models_pytorch.encoders import get_encoder
from torch import Tensor, nn

import cromss
from cromss.atomic import atomic_path
from cromss.constants import DW_CLASSES, S1_BANDS, input_normalisation, s2_band_indices

FUSIONS = ("single_s1", "single_s2", "middle", "late")
MODALITIES = ("s1", "s2")
ENCODER_DEPTH = 5
DEFAULT_DECODER_CHANNELS = (256, 128, 64, 32, 16)


def build_unet(encoder: str, in_channels: int, classes: int,
               decoder_channels: tuple[int, ...] = DEFAULT_DECODER_CHANNELS) -> smp.Unet:
    """A randomly initialised smp U-Net with a 3x3 head (smp's default head kernel)."""
    return smp.Unet(encoder_name=encoder, encoder_depth=ENCODER_DEPTH, encoder_weights=None,
                    decoder_channels=tuple(decoder_channels), in_channels=in_channels,
                    classes=classes)


def check_input_size(image: Tensor) -> None:
    """U-Nets of depth 5 need sides divisible by 32."""
    height, width = image.shape[-2:]
    step = 2 ** ENCODER_DEPTH
    if height % step or width % step:
        raise ValueError(f"input of {height}x{width} px: both sides must be divisible by {step}")


class CromssModel(nn.Module):
    """Base: ``forward(s1, s2) -> (logits_s1, logits_s2)`` and ``encoder(modality)``."""

    modalities: tuple[str, ...] = MODALITIES

    def encoder(self, modality: str) -> nn.Module:
        raise NotImplementedError

    def _require(self, modality: str) -> None:
        if modality not in self.modalities:
            raise ValueError(f"{type(self).__name__} has no {modality!r} encoder; "
                             f"it has {self.modalities}")


class SingleModalModel(CromssModel):
    """One U-Net on S1 or on S2."""

    def __init__(self, modality: str, unet: smp.Unet) -> None:
        super().__init__()
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, not {modality!r}")
        self.modalities = (modality,)
        self.unet = unet

    def forward(self, s1: Tensor | None, s2: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        if self.modalities == ("s1",):
            return self.unet(s1), None
        return None, self.unet(s2)

    def encoder(self, modality: str) -> nn.Module:
        self._require(modality)
        return self.unet.encoder


class MiddleFusionModel(CromssModel):
    """Two encoders, one shared decoder and head; two logit maps."""

    def __init__(self, encoder: str, s2_bands: int, classes: int,
                 decoder_channels: tuple[int, ...] = DEFAULT_DECODER_CHANNELS) -> None:
        super().__init__()
        unet = build_unet(encoder, len(S1_BANDS), classes, decoder_channels)
        self.encoder_s1 = unet.encoder
        self.encoder_s2 = get_encoder(encoder, in_channels=s2_bands, depth=ENCODER_DEPTH,
                                      weights=None)
        self.decoder = unet.decoder
        self.segmentation_head = unet.segmentation_head

    def _decode(self, features: list[Tensor]) -> Tensor:
        return self.segmentation_head(self.decoder(features))

    def forward(self, s1: Tensor, s2: Tensor) -> tuple[Tensor, Tensor]:
        check_input_size(s1)
        check_input_size(s2)
        return self._decode(self.encoder_s1(s1)), self._decode(self.encoder_s2(s2))

    def encoder(self, modality: str) -> nn.Module:
        self._require(modality)
        return self.encoder_s1 if modality == "s1" else self.encoder_s2


class LateFusionModel(CromssModel):
    """Two complete, independent U-Nets, coupled only through the losses."""

    def __init__(self, encoder: str, s2_bands: int, classes: int,
                 decoder_channels: tuple[int, ...] = DEFAULT_DECODER_CHANNELS) -> None:
        super().__init__()
        self.unet_s1 = build_unet(encoder, len(S1_BANDS), classes, decoder_channels)
        self.unet_s2 = build_unet(encoder, s2_bands, classes, decoder_channels)

    def forward(self, s1: Tensor, s2: Tensor) -> tuple[Tensor, Tensor]:
        return self.unet_s1(s1), self.unet_s2(s2)

    def encoder(self, modality: str) -> nn.Module:
        self._require(modality)
        return self.unet_s1.encoder if modality == "s1" else self.unet_s2.encoder


def build_model(settings: Mapping[str, Any]) -> CromssModel:
    """The model of a pretraining variant: keys ``fusion``, ``s2_bands``, ``encoder``,
    ``decoder_channels`` and optionally ``num_classes`` (9)."""
    fusion = settings.get("fusion")
    if fusion not in FUSIONS:
        raise ValueError(f"settings: fusion must be one of {FUSIONS}, not {fusion!r}")
    encoder = str(settings.get("encoder", "resnet50"))
    classes = int(settings.get("num_classes", len(DW_CLASSES)))
    decoder_channels = tuple(int(c) for c in settings.get("decoder_channels",
                                                          DEFAULT_DECODER_CHANNELS))
    s2_bands = len(s2_band_indices(int(settings.get("s2_bands", 13))))
    if fusion == "middle":
        return MiddleFusionModel(encoder, s2_bands, classes, decoder_channels)
    if fusion == "late":
        return LateFusionModel(encoder, s2_bands, classes, decoder_channels)
    modality = fusion.removeprefix("single_")
    in_channels = len(S1_BANDS) if modality == "s1" else s2_bands
    return SingleModalModel(modality, build_unet(encoder, in_channels, classes, decoder_channels))


LICENCE = "MIT"  # the weights this workflow makes, as the code (pyproject.toml)
DATA_LICENCES = {"synthetic": "none: the synthetic world cromss generates",
                 "real": "SSL4EO-S12 images CC-BY-4.0, Dynamic World labels CC-BY-4.0, "
                         "NoLDO-S12 MIT (docs/sources.md)"}


def provenance(store: str | Path | None = None) -> dict[str, Any]:
    """Where weights come from: the training store (dataset, raw source, synthetic or real data,
    samples), the code version and git commit, and the licences of the weights and the data."""
    from cromss import logs
    from cromss.data.store import open_arrays

    record: dict[str, Any] = {"cromss_version": cromss.__version__, "git_commit": logs.git_commit(),
                              "licence": LICENCE}
    if store is not None:
        group = open_arrays(store)
        source = str(group.attrs.get("source", ""))
        kind = "synthetic" if "truth" in group or "synthetic" in Path(source).parts else "real"
        record["data"] = {"store": str(store), "dataset": group.attrs.get("dataset"),
                          "split": group.attrs.get("split"), "source": source, "kind": kind,
                          "samples": int(group["label"].shape[0]),
                          "licence": DATA_LICENCES[kind]}
    return record


def model_card(settings: Mapping[str, Any], modality: str,
               origin: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a transferred encoder needs to be used right: inputs, normalisation, classes, origin."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, not {modality!r}")
    normalisation = input_normalisation(modality, int(settings.get("s2_bands", 13)))
    bands = normalisation.pop("bands")
    classes = int(settings.get("num_classes", len(DW_CLASSES)))
    return {
        "encoder": str(settings.get("encoder", "resnet50")),
        "modality": modality,
        "in_channels": len(bands),
        "bands": list(bands),
        "normalisation": normalisation,
        "classes": list(DW_CLASSES[:classes]),
        "variant": settings.get("name"),
        "fusion": settings.get("fusion"),
        "settings": json.loads(json.dumps(settings)),  # plain types only, weights_only-safe
        "cromss_version": cromss.__version__,
        "provenance": json.loads(json.dumps(dict(origin or provenance()))),
    }


def encoder_checkpoint(model: CromssModel, modality: str, settings: Mapping[str, Any],
                       origin: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{"state_dict": encoder weights on CPU, "card": model card}`` of one modality."""
    state = {key: value.detach().cpu().clone()
             for key, value in model.encoder(modality).state_dict().items()}
    return {"state_dict": state, "card": model_card(settings, modality, origin)}


def save_encoder(path: str | Path, model: CromssModel, modality: str,
                 settings: Mapping[str, Any], origin: Mapping[str, Any] | None = None) -> Path:
    """Write one modality's encoder and card to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(encoder_checkpoint(model, modality, settings, origin), tmp)
    return path


def save_model(path: str | Path, model: CromssModel, settings: Mapping[str, Any],
               origin: Mapping[str, Any] | None = None) -> Path:
    """Write a whole pretrained model (both branches, decoder, head), its settings and its
    :func:`provenance` atomically."""
    path = Path(path)
    state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "settings": json.loads(json.dumps(settings)),
                    "provenance": json.loads(json.dumps(dict(origin or provenance())))}, tmp)
    return path


def read_weights(path: str | Path, keys: tuple[str, ...], what: str) -> dict[str, Any]:
    """A dict saved with ``torch.save``, read by ``checkpoint.load`` (``weights_only``), with ``keys``."""
    from cromss.training import checkpoint

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    payload = checkpoint.load(path)
    if not isinstance(payload, dict) or not set(keys) <= set(payload):
        raise ValueError(f"{path}: is no {what} (expected keys {', '.join(map(repr, keys))})")
    return payload


def load_model(path: str | Path) -> tuple[CromssModel, dict[str, Any]]:
    """(model, settings) of a file written by :func:`save_model`, loaded with ``weights_only=True``."""
    payload = read_weights(path, ("state_dict", "settings"), "pretrained model")
    model = build_model(payload["settings"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not match the settings' model: {err}") from err
    return model, payload["settings"]


def export_encoder(model_path: str | Path, modality: str, out: str | Path) -> Path:
    """Write one modality's encoder of a saved pretrained model, with its model card."""
    model, settings = load_model(model_path)
    if modality not in model.modalities:
        raise ValueError(f"{model_path}: the {settings.get('fusion')} model has no {modality} "
                         f"encoder")
    origin = read_weights(model_path, ("settings",), "pretrained model").get("provenance")
    return save_encoder(out, model, modality, settings, origin)


def read_encoder(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state_dict, card) of an encoder file, loaded with ``weights_only=True``."""
    checkpoint = read_weights(path, ("state_dict", "card"), "encoder file")
    return checkpoint["state_dict"], checkpoint["card"]


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
        raise ValueError(f"no weights under prefix {prefix!r}")
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
        raise ValueError(f"{source}: the first convolution has {state_dict[conv_key].shape[1]} "
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
        raise ValueError(f"{source}: encoder weights do not fit the model ({'; '.join(problems)})")
    encoder_module.load_state_dict(state_dict, strict=True)


def load_encoder(encoder_module: nn.Module, path: str | Path) -> dict[str, Any]:
    """Put an encoder file's weights into ``encoder_module`` (e.g. a new downstream model's
    ``.encoder``) and return its card."""
    state_dict, card = read_encoder(path)
    load_encoder_state(encoder_module, state_dict, str(path))
    return card
