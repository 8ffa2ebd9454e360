"""CromSS models (method §2): single-modal, middle-fusion and late-fusion U-Nets, and the
downstream networks of the transfer (method §7). Networks only: their files are in
:mod:`cromss.weights`.

Every model maps (S1, S2) to (logits_s1, logits_s2), None for a modality it does not use:

- ``single_s1`` / ``single_s2``: one smp U-Net on one modality;
- ``middle``: an S1 encoder and an S2 encoder, ONE shared decoder and head, each modality's
  features decoded separately (the fusion is the weight sharing, nothing is concatenated);
- ``late``: two complete, independent U-Nets.

Encoders are randomly initialised (``encoder_weights=None``): no hub download.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import segmentation_models_pytorch as smp
from segmentation_models_pytorch.base import SegmentationModel
from segmentation_models_pytorch.encoders import get_encoder
from torch import Tensor, nn

from cromss.constants import DW_CLASSES, S1_BANDS, TASKS, s2_band_indices
from cromss.errors import CromssError

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
    """The model of a pretraining variant's settings (as a model card keeps them): keys
    ``fusion``, ``s2_bands``, ``encoder``, ``decoder_channels`` and, for released models,
    ``num_classes`` (else the Dynamic World classes)."""
    fusion = settings.get("fusion")
    if fusion not in FUSIONS:
        raise CromssError(f"settings: fusion must be one of {FUSIONS}, not {fusion!r}")
    encoder = str(settings["encoder"])
    classes = int(settings.get("num_classes", len(DW_CLASSES)))
    s2_bands = len(s2_band_indices(int(settings["s2_bands"])))
    decoder_channels = tuple(int(c) for c in settings["decoder_channels"])
    if fusion == "middle":
        return MiddleFusionModel(encoder, s2_bands, classes, decoder_channels)
    if fusion == "late":
        return LateFusionModel(encoder, s2_bands, classes, decoder_channels)
    modality = fusion.removeprefix("single_")
    in_channels = len(S1_BANDS) if modality == "s1" else s2_bands
    return SingleModalModel(modality, build_unet(encoder, in_channels, classes, decoder_channels))


def build_downstream(task: str, encoder: str, in_channels: int) -> SegmentationModel:
    """The task's smp decoder around a randomly initialised encoder (no hub download)."""
    if task not in TASKS:
        raise CromssError(f"unknown task {task!r}; known: {sorted(TASKS)}")
    _, classes, _, arch = TASKS[task]
    return smp.create_model(arch, encoder_name=encoder, encoder_weights=None,
                            in_channels=in_channels, classes=len(classes))
