"""Torch Datasets over the Zarr stores: season sampling, crops, flips, rotations, normalisation.

Every random choice of an item (season, crop window, flips, rotation) is drawn from a generator
seeded with ``(seed, epoch, index)``, so an item is the same whichever worker or process loads it,
and a resumed run sees exactly the data an uninterrupted one would. Zarr groups are opened lazily
in the process that reads them (never pickled into DataLoader workers).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from cromss import smoothing
from cromss.constants import IGNORE_INDEX, input_normalisation, s2_band_indices
from cromss.data.store import open_arrays

MODALITIES = ("s1", "s2")
SIZE_MULTIPLE = 32
"""Encoders downsample 5 times: model inputs are cropped to a multiple of this."""


def normalise(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Clip each band (axis 0) to mean +- 2 std and scale it to [0, 1] (method §1)."""
    mean = np.asarray(mean, dtype=np.float32)[:, None, None]
    std = np.asarray(std, dtype=np.float32)[:, None, None]
    low = mean - 2 * std
    return ((np.clip(image.astype(np.float32), low, mean + 2 * std) - low) / (4 * std)).astype(
        np.float32)


def model_input(raw: np.ndarray, modality: str, num_bands: int) -> np.ndarray:
    """Stored bands of one modality (band, y, x) -> the normalised model input."""
    norm = input_normalisation(modality, num_bands)
    if modality == "s2":
        raw = raw[list(s2_band_indices(num_bands))]
    return normalise(raw, norm["mean"], norm["std"])


@dataclass(frozen=True)
class Transform:
    """One random crop window followed by optional flips and a rotation by ``rot90`` quarter turns."""

    top: int
    left: int
    size: int
    flip_y: bool = False
    flip_x: bool = False
    rot90: int = 0

    def __call__(self, array: np.ndarray) -> np.ndarray:
        """Apply to the last two axes of ``array``; the same call transforms images, labels, priors."""
        out = array[..., self.top:self.top + self.size, self.left:self.left + self.size]
        if self.flip_y:
            out = out[..., ::-1, :]
        if self.flip_x:
            out = out[..., :, ::-1]
        if self.rot90:
            out = np.rot90(out, self.rot90, axes=(-2, -1))
        return np.ascontiguousarray(out)


def random_transform(rng: np.random.Generator, height: int, width: int, crop: int,
                     flip_p: float, rotate_p: float) -> Transform:
    """A random crop of side ``crop``, flips with ``flip_p`` each, a 90/180/270 rotation with ``rotate_p``."""
    if crop > min(height, width):
        raise ValueError(f"crop {crop} is larger than the {height}x{width} images")
    top = int(rng.integers(height - crop + 1))
    left = int(rng.integers(width - crop + 1))
    flip_y, flip_x = (bool(v) for v in rng.random(2) < flip_p)
    rot90 = int(rng.integers(1, 4)) if rng.random() < rotate_p else 0
    return Transform(top, left, crop, flip_y, flip_x, rot90)


def centre_transform(height: int, width: int, multiple: int = SIZE_MULTIPLE) -> Transform:
    """The central square crop whose side is the largest multiple of ``multiple`` that fits."""
    size = min(height, width) // multiple * multiple
    if size == 0:
        raise ValueError(f"{height}x{width} images are smaller than {multiple} px")
    return Transform((height - size) // 2, (width - size) // 2, size)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Labels (y, x) -> (class, y, x) float32 one-hot; ignored pixels are all zeros."""
    classes = np.arange(num_classes, dtype=labels.dtype)[:, None, None]
    return (labels[None] == classes).astype(np.float32)


class _StoreDataset(Dataset):
    """Opens the store's Zarr group on first use in each process."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: no such Zarr store")
        self._group = None
        self._pid: int | None = None
        group = open_arrays(self.path)
        self.num_classes = int(group.attrs["num_classes"])
        self.has_truth = "truth" in group
        self.has_s2_nodata = "s2_nodata" in group
        self.num_samples, self.num_seasons, self.height, self.width = group["label"].shape

    @property
    def group(self):
        if self._group is None or self._pid != os.getpid():
            self._group = open_arrays(self.path, validate=False)  # validated in __init__
            self._pid = os.getpid()
        return self._group

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_group": None, "_pid": None}

    def ignore_nodata(self, label: np.ndarray, index: int, season: int) -> None:
        """Set the label to ignore (in place) where S2 has no data (``s2_nodata``)."""
        if self.has_s2_nodata:
            label[np.asarray(self.group["s2_nodata"][index, season])] = IGNORE_INDEX


class PretrainDataset(_StoreDataset):
    """Pretraining samples: S1, S2, the hard noisy label and its smoothed soft target.

    ``train`` items draw a random season, crop, flips and rotation from ``(seed, epoch, index)``;
    the smoothing prior is computed on the full map before cropping and transformed with the
    images. Validation items (``train=False``) take a season seeded by ``(seed, index)``, the central crop and hard
    one-hot targets.
    """

    def __init__(self, path: str | os.PathLike, indices: Sequence[int], settings: dict[str, Any],
                 *, train: bool = True):
        super().__init__(path)
        self.indices = [int(i) for i in indices]
        self.train = train
        self.s2_bands = int(settings.get("s2_bands", 13))
        self.crop = int(settings["crop"])
        self.flip_p = float(settings.get("flip_p", 0.5))
        self.rotate_p = float(settings.get("rotate_p", 0.2))
        self.smoothing = dict(settings.get("smoothing", {}))
        self.seed = int(settings.get("seed", 0))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([k])[0]

    def __getitems__(self, ks: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        """Items ``ks`` (the DataLoader asks for a batch at once): their smoothed targets are
        made by one batched call, from the full maps but only on each item's crop window, then
        flipped and rotated with the images."""
        draws = [self._draw(self.indices[k]) for k in ks]
        group = self.group
        season_labels = np.stack([np.asarray(group["label"][index]) for index, _, _ in draws])
        seasons = [season for _, season, _ in draws]
        if self.train and self.smoothing.get("enabled", True):
            soft = smoothing.smoothed_targets_batch(
                season_labels, seasons, self.num_classes, alpha=self.smoothing.get("alpha", 0.15),
                beta=self.smoothing.get("beta", 0.05), sigma=self.smoothing.get("sigma", 3.0),
                prior=self.smoothing.get("prior", "spatial_temporal"),
                windows=[(t.top, t.left) for _, _, t in draws], window_size=self.crop).numpy()
        else:
            soft = [Transform(t.top, t.left, t.size)(one_hot(labels[season], self.num_classes))
                    for labels, season, (_, _, t) in zip(season_labels, seasons, draws,
                                                         strict=True)]
        items = []
        for labels, target, (index, season, transform) in zip(season_labels, soft, draws,
                                                             strict=True):
            item = {
                "s1": model_input(np.asarray(group["s1"][index, season]), "s1", 2),
                "s2": model_input(np.asarray(group["s2"][index, season]), "s2", self.s2_bands),
                "label": labels[season].astype(np.int64),
            }
            if self.has_truth:
                item["truth"] = np.asarray(group["truth"][index, season]).astype(np.int64)
            self.ignore_nodata(item["label"], index, season)
            item = {key: transform(value) for key, value in item.items()}
            item["soft"] = replace(transform, top=0, left=0)(target)  # already cropped
            items.append({key: torch.from_numpy(value) for key, value in item.items()})
        return items

    def _draw(self, index: int) -> tuple[int, int, Transform]:
        """The season and transform of sample ``index``, from its own seeded generator."""
        rng = np.random.default_rng((self.seed, self.epoch, index) if self.train else (self.seed, index))
        season = int(rng.integers(self.num_seasons))
        if self.train:
            transform = random_transform(rng, self.height, self.width, self.crop, self.flip_p,
                                         self.rotate_p)
        else:
            transform = centre_transform(self.height, self.width)
        return index, season, transform


class SegmentationDataset(_StoreDataset):
    """Downstream tiles of one modality with their exact labels.

    ``crop`` given: training items with a random crop, flips and rotation seeded by
    ``(seed, epoch, index)``; ``crop=None``: the whole tile, untouched, for evaluation.
    """

    def __init__(self, path: str | os.PathLike, *, modality: str, s2_bands: int = 13,
                 crop: int | None = None, flip_p: float = 0.5, rotate_p: float = 0.2,
                 seed: int = 0):
        super().__init__(path)
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, not {modality!r}")
        self.modality = modality
        self.num_bands = 2 if modality == "s1" else len(s2_band_indices(int(s2_bands)))
        self.crop = crop
        self.flip_p = flip_p
        self.rotate_p = rotate_p
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        season = int(rng.integers(self.num_seasons)) if self.crop else 0
        image = model_input(np.asarray(self.group[self.modality][index, season]), self.modality,
                            self.num_bands)
        label = np.asarray(self.group["label"][index, season]).astype(np.int64)
        if self.modality == "s2":
            self.ignore_nodata(label, index, season)
        if self.crop:
            transform = random_transform(rng, self.height, self.width, self.crop, self.flip_p,
                                         self.rotate_p)
            image, label = transform(image), transform(label)
        return {"image": torch.from_numpy(image), "label": torch.from_numpy(label)}

