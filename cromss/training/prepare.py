"""The pretraining batch made on the training device from the loader's stored values.

DataLoader workers only read and crop (:class:`cromss.training.datasets.PretrainDataset`): S1 as
stored (float32 dB), S2 as stored (uint16 digital numbers, the model's bands), labels uint8, and
each item's draws (season, window, flip, angle). :class:`BatchPreparation` then makes, for the
whole batch at once and on the device of the training step (GPU or CPU, the same code):
the smoothed soft targets (:func:`cromss.smoothing.smoothed_targets_batch`), the input scaling
(:func:`cromss.normalisation.normalise_tensor`), the flips and rotations
(:func:`cromss.training.transforms.rotate_tensor`), in the order the per-item loader had.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from cromss.constants import input_normalisation
from cromss.normalisation import normalise_tensor
from cromss.settings import Smoothing
from cromss.smoothing import one_hot, smoothed_targets_batch
from cromss.training.transforms import FLIP_AXES, rotate_tensor

NO_FLIP = 2
"""``batch["flip"]`` of an item without a flip (the others are albumentations' codes -1, 0, 1)."""
DRAWS = ("season", "window", "flip", "angle")
"""The per-item draws the loader passes on; read on the CPU, never moved to the device."""


@dataclass(frozen=True)
class BatchPreparation:
    """Stored batch -> model batch: ``s1``, ``s2`` (scaled), ``soft`` targets, ``label`` and
    ``truth`` (int64), all flipped and rotated as drawn. ``smoothing`` None: hard one-hot
    targets (validation, or smoothing off)."""

    num_classes: int
    s2_bands: int
    smoothing: Smoothing | None

    def __call__(self, batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
        moved = {key: value.to(device, non_blocking=True) for key, value in batch.items()
                 if key not in (*DRAWS, "s2")}
        moved["s2"] = unsigned_on(batch["s2"], device)
        floats = {m: normalise_tensor(moved[m], **scaling(m, self.s2_bands))
                  for m in ("s1", "s2")}
        noisy = moved["noisy"]
        if self.smoothing is not None:
            size = noisy.shape[-1]
            floats["soft"] = smoothed_targets_batch(
                moved["labels"], batch["season"], self.num_classes, alpha=self.smoothing.alpha,
                beta=self.smoothing.beta, sigma=self.smoothing.sigma, prior=self.smoothing.prior,
                windows=batch["window"].numpy(), window_size=size)
            hard = 1.0 - (self.smoothing.alpha + self.smoothing.beta)
        else:
            floats["soft"] = one_hot(noisy, self.num_classes)
            hard = 1.0
        # int64 copies: moved in place below, never the loader's tensors (on the CPU, ``to`` keeps them)
        maps: dict[str, Tensor] = {key: moved[key].long() for key in ("label", "truth")
                                   if key in moved}
        # the reference moves the target's prior part like the image (bilinear) and its hard
        # part, (1 - alpha - beta) Z (all of it without smoothing), as the nearest-neighbour
        # moved labels; flips move both alike
        turned = torch.nonzero(batch["angle"]).flatten().tolist()
        on_device = torch.tensor(turned, dtype=torch.long, device=device)
        if turned and hard:
            floats["soft"][on_device] -= hard * one_hot(noisy[on_device], self.num_classes)
        flip(floats, batch["flip"])
        flip(maps, batch["flip"])
        for i in turned:
            angle = float(batch["angle"][i])
            rotate_item(floats, i, angle, nearest=False)
            rotate_item(maps, i, angle, nearest=True)
        if turned and hard:
            floats["soft"][on_device] += hard * one_hot(maps["label"][on_device],
                                                        self.num_classes)
        return {**floats, **maps}


def unsigned_on(values: Tensor, device: torch.device) -> Tensor:
    """uint16 ``values`` on ``device`` as int32, the same numbers: moved as the int16 of their
    bits (CUDA has few kernels for uint16)."""
    moved = values.view(torch.int16).to(device, non_blocking=True)
    return moved.to(torch.int32).bitwise_and_(0xFFFF)


def scaling(modality: str, s2_bands: int) -> dict[str, list[float]]:
    """The ``mean`` and ``std`` of a modality's model input bands."""
    norm = input_normalisation(modality, 2 if modality == "s1" else s2_bands)
    return {"mean": norm["mean"], "std": norm["std"]}


def flip(arrays: dict[str, Tensor], codes: Tensor) -> None:
    """Flip each item of the batched ``arrays`` (in place) as its code says."""
    for code, axes in FLIP_AXES.items():
        chosen = torch.nonzero(codes == code).flatten()
        if chosen.numel():
            chosen = chosen.to(next(iter(arrays.values())).device)
            for value in arrays.values():
                value[chosen] = value[chosen].flip(axes)


def rotate_item(arrays: dict[str, Tensor], i: int, angle: float, nearest: bool) -> None:
    """Rotate item ``i`` of the batched ``arrays`` (in place), all in one resampling."""
    parts = [value[i].reshape(-1, *value.shape[-2:]) for value in arrays.values()]
    turned = rotate_tensor(torch.cat(parts).to(torch.float32), angle, nearest)
    for (key, value), part in zip(arrays.items(), turned.split([len(p) for p in parts]),
                                  strict=True):
        arrays[key][i] = part.reshape(value.shape[1:]).to(value.dtype)
