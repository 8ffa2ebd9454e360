"""The encoders' input normalisation as code a user can import: raw Sentinel bands (S1 in dB, S2
L1C digital numbers) -> exactly the tensors the training loaders feed the network.

Each band is mapped from [mean - 2 std, mean + 2 std] to [0, 255], clipped, truncated to uint8
levels and divided by 255 (``constants.NORMALISATION_RULE``, statistics in
:func:`cromss.constants.input_normalisation`)::

    from cromss.normalisation import InputNormalisation

    to_input = InputNormalisation("s2", bands=13)  # or InputNormalisation.from_card(card)
    x = to_input(raw)  # (13, H, W) or (B, 13, H, W), numpy or torch -> float32 in [0, 1]

Only numpy and :mod:`cromss.constants` are needed (torch tensors are accepted when torch is
installed, and scaled on their device by :func:`normalise_tensor`, as pretraining does in its
training step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cromss.constants import UINT8_MAX, input_normalisation, s2_band_indices
from cromss.errors import CromssError

if TYPE_CHECKING:
    import torch


def normalise(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """The reference's input scaling (method §1; ``constants.NORMALISATION_RULE``): each band
    (axis -3: one image or a batch) mapped from [mean - 2 std, mean + 2 std] to [0, 255], clipped,
    truncated to uint8 levels, then divided by 255 (NaN stays NaN)."""
    centre = np.asarray(mean, dtype=np.float32)[:, None, None]
    spread = np.asarray(std, dtype=np.float32)[:, None, None]
    low = centre - 2 * spread
    scaled = np.clip((image.astype(np.float32) - low) / (4 * spread) * UINT8_MAX, 0, UINT8_MAX)
    return (np.floor(scaled) / UINT8_MAX).astype(np.float32)


def normalise_tensor(image: torch.Tensor, mean: Sequence[float],
                     std: Sequence[float]) -> torch.Tensor:
    """:func:`normalise` of a tensor on its device, in float32: the same operations in the same
    order, so the same values."""
    import torch

    centre = torch.tensor(mean, dtype=torch.float32, device=image.device)[:, None, None]
    spread = torch.tensor(std, dtype=torch.float32, device=image.device)[:, None, None]
    low = centre - 2 * spread
    scaled = ((image.to(torch.float32) - low) / (4 * spread) * UINT8_MAX).clamp_(0, UINT8_MAX)
    return scaled.floor_().div_(UINT8_MAX)


def model_input(raw: np.ndarray, modality: str, num_bands: int) -> np.ndarray:
    """Stored bands of one modality (band, y, x; or a batch of them) -> the normalised model
    input; 13 stored S2 bands are cut to a 9-band model's subset."""
    norm = input_normalisation(modality, num_bands)
    if modality == "s2" and num_bands != raw.shape[-3]:
        raw = np.take(raw, s2_band_indices(num_bands), axis=-3)
    return normalise(raw, norm["mean"], norm["std"])


class InputNormalisation:
    """Raw bands of one modality -> an encoder's input, as in training (numpy or torch in, the same
    kind out; a tensor keeps its device)."""

    def __init__(self, modality: str, bands: int | None = None) -> None:
        self.bands = 2 if modality == "s1" else int(bands if bands is not None else 13)
        self.statistics = input_normalisation(modality, self.bands)  # checks both
        self.modality = modality

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> InputNormalisation:
        """The transform of an encoder's model card (``modality`` and ``in_channels``)."""
        return cls(str(card["modality"]), int(card["in_channels"]))

    def __repr__(self) -> str:
        return f"InputNormalisation({self.modality!r}, bands={self.bands})"

    def __call__(self, raw: Any) -> Any:
        """``raw`` (bands, y, x) or (batch, bands, y, x): the model's bands, or all 13 stored S2
        bands for a 9-band encoder."""
        array: Any = raw.detach() if hasattr(raw, "detach") else np.asarray(raw)
        if array.ndim < 3 or array.shape[-3] not in {self.bands, 13 if self.modality == "s2"
                                                      else self.bands}:
            raise CromssError(f"{self!r}: expected (bands, y, x) or (batch, bands, y, x) with "
                              f"{self.bands} bands, got shape {tuple(array.shape)}")
        if not hasattr(raw, "detach"):
            return model_input(array, self.modality, self.bands)
        if self.modality == "s2" and self.bands != array.shape[-3]:
            array = array[..., s2_band_indices(self.bands), :, :]
        return normalise_tensor(array, self.statistics["mean"], self.statistics["std"])
