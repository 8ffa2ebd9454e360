"""Torch Datasets over the Zarr stores: season sampling, crops, flips, rotations, normalisation.

Augmentation follows the reference (albumentations ``RandomCrop``, ``Flip(p=0.5)``, ``Rotate(p=0.2)``;
:mod:`cromss.training.transforms`); ``flip_p`` and ``rotate_p`` of the settings set the two
probabilities. Pretraining items are only read and cropped here; the rest is done batched on the
training device (:mod:`cromss.training.prepare`).

Every random choice of an item (season, crop window, flips, rotation) is drawn from a generator
seeded with ``(seed, epoch, index)``, so an item is the same whichever worker or process loads it,
and a resumed run sees exactly the data an uninterrupted one would. Zarr groups are opened lazily
in the process that reads them (never pickled into DataLoader workers).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from cromss.constants import IGNORE_INDEX, s2_band_indices
from cromss.data.rows import Selection, read_rows
from cromss.data.store import (LABEL_ARRAYS, check_label_values, chunk_name, open_array,
                               open_arrays, read_selections)
from cromss.normalisation import model_input
from cromss.settings import Pretrain
from cromss.training.prepare import NO_FLIP as NO_FLIP
from cromss.training.prepare import BatchPreparation
from cromss.training.transforms import SIZE_MULTIPLE as SIZE_MULTIPLE  # the model input's multiple
from cromss.training.transforms import Transform, centre_transform, random_transform

if TYPE_CHECKING:
    import zarr

MODALITIES = ("s1", "s2")


class _StoreDataset(Dataset):
    """Opens the store's Zarr group on first use in each process."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: no such Zarr store")
        self._group = None
        self._arrays: dict[str, Any] = {}
        self._pid: int | None = None
        group = open_arrays(self.path)
        self.num_classes = int(group.attrs["num_classes"])
        self.has_truth = "truth" in group
        # a store whose attributes count no S2 pixel without data has nothing to read there
        self.has_s2_nodata = ("s2_nodata" in group
                              and int(group.attrs.get("s2_nodata_pixels", 1)) > 0)
        self.num_samples, self.num_seasons, self.height, self.width = group["label"].shape

    @property
    def group(self) -> zarr.Group:
        if self._group is None or self._pid != os.getpid():
            self._group = open_arrays(self.path, validate=False)  # validated in __init__
            self._arrays = {}
            self._pid = os.getpid()
        return self._group

    def array(self, name: str) -> zarr.Array:
        """The store's array ``name``, opened once per process."""
        group = self.group
        if name not in self._arrays:
            self._arrays[name] = open_array(group, name)
        return self._arrays[name]

    def read(self, requests: Sequence[tuple[str, tuple]]) -> list[np.ndarray]:
        """``(array name, selection)`` pairs read together (:func:`read_selections`); label and
        truth values outside the store's classes raise ValueError naming store, array, chunk."""
        arrays = [(self.array(name), selection) for name, selection in requests]
        values = read_selections(arrays)
        for (name, _), (array, selection), value in zip(requests, arrays, values):
            if name in LABEL_ARRAYS:
                check_label_values(value, self.num_classes, chunk_name(array, selection))
        return values

    def read_rows(self, name: str, selections: Sequence[Selection], out: torch.Tensor) -> None:
        """Array ``name`` read into the rows of the batch ``out`` (:func:`read_rows`); label and
        truth values outside the store's classes raise ValueError naming store, array, chunk."""
        array, values = self.array(name), out.numpy()
        read_rows(array, selections, values)
        if name in LABEL_ARRAYS:
            bad = (values >= self.num_classes) & (values != IGNORE_INDEX)
            for row in np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[:1]:
                check_label_values(values[row], self.num_classes,
                                   chunk_name(array, selections[row]))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_group": None, "_arrays": {}, "_pid": None}

    def pixel_arrays(self, images: Sequence[str], *, truth: bool = False) -> tuple[str, ...]:
        """The per-(sample, season) arrays an item reads: ``images``, the true map (if asked
        for and stored) and the S2 no-data flags (if S2 is read and the store has them)."""
        return (*images, *(["truth"] if truth and self.has_truth else []),
                *(["s2_nodata"] if self.has_s2_nodata and "s2" in images else []))


def batch_array(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An empty batch tensor; in a DataLoader worker in shared memory, as the default collation
    allocates its batch, so that it reaches the training process without a copy."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage).view(shape)


def as_read(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The DataLoader's ``collate_fn`` for :class:`PretrainDataset`, whose ``__getitems__``
    returns the batch itself: passed on as it is."""
    return batch


def pretrain_loader(dataset: PretrainDataset, sampler: Sampler | None, batch_size: int, *,
                    drop_last: bool = False, num_workers: int = 0, pin_memory: bool = False
                    ) -> DataLoader:
    """The pretraining DataLoader: ``dataset``'s batches as its ``__getitems__`` reads them
    (:func:`as_read`), by ``num_workers`` worker processes, pinned for a GPU with ``pin_memory``."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                      num_workers=num_workers, pin_memory=pin_memory,
                      collate_fn=as_read,  # type: ignore[arg-type]  # typed for a list of items
                      persistent_workers=False)


def ignore_nodata(label: np.ndarray, item: dict[str, np.ndarray]) -> None:
    """Set the label to ignore (in place) where S2 has no data (``s2_nodata``, if read)."""
    if "s2_nodata" in item:
        label[item.pop("s2_nodata")] = IGNORE_INDEX


class PretrainDataset(_StoreDataset):
    """Pretraining samples as stored: S1, S2, the noisy label (and truth) on each item's crop,
    the four seasons' full label maps when the targets are smoothed, and the item's draws.

    ``train`` items draw a random season, crop, flips and rotation from ``(seed, epoch, index)``.
    Validation items (``train=False``) get hard one-hot targets; with ``augment`` (the reference:
    its validation split shares the training set's transforms and random season) they are drawn
    like training items, from ``(seed, epoch, index)``: other items every epoch, the same in
    every run. Without it: a season seeded by ``(seed, index)`` and the central crop, the same
    every epoch. :attr:`prepare` makes the model batch on the training device
    (:mod:`cromss.training.prepare`): targets from the full maps, scaling, flips and rotation.
    """

    def __init__(self, path: str | os.PathLike, indices: Sequence[int], settings: Pretrain,
                 *, train: bool = True, augment: bool | None = None):
        super().__init__(path)
        self.indices = [int(i) for i in indices]
        self.train = train
        self.augment = train if augment is None else augment
        self.s2_bands, self.crop, self.seed = settings.s2_bands, settings.crop, settings.seed
        self.bands = list(s2_band_indices(settings.s2_bands))
        self.flip_p, self.rotate_p = settings.flip_p, settings.rotate_p
        smoothed = train and settings.smoothing.enabled
        self.prepare = BatchPreparation(self.num_classes, settings.s2_bands,
                                        settings.smoothing if smoothed else None)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([k]).items()}

    def __getitems__(self, ks: Sequence[int]) -> dict[str, torch.Tensor]:
        """The batch of items ``ks`` (the DataLoader asks for a batch at once; its collation then
        only passes it on, :func:`as_read`): each array decoded by zarrs straight into its rows
        of the batch (:func:`read_rows`), in shared memory in a DataLoader worker."""
        draws = [self._draw(self.indices[k]) for k in ks]
        n, size = len(draws), draws[0][2].size
        windows = [(index, season, slice(t.top, t.top + size), slice(t.left, t.left + size))
                   for index, season, t in draws]
        batch = {"s1": batch_array((n, 2, size, size), torch.float32),
                 "s2": batch_array((n, len(self.bands), size, size), torch.uint16)}
        image_rows = [(i, s, slice(None), y, x) for i, s, y, x in windows]  # all bands
        self.read_rows("s1", image_rows, batch["s1"])
        stored_bands = self.array("s2").shape[2]
        all_bands = len(self.bands) == stored_bands
        s2 = batch["s2"] if all_bands else torch.empty((n, stored_bands, size, size),
                                                       dtype=torch.uint16)
        self.read_rows("s2", image_rows, s2)
        if not all_bands:
            torch.index_select(s2, 1, torch.tensor(self.bands), out=batch["s2"])
        batch["noisy"] = batch_array((n, size, size), torch.uint8)
        if self.prepare.smoothing is not None:  # the four seasons' full maps, the crop from them
            batch["labels"] = batch_array((n, self.num_seasons, self.height, self.width),
                                          torch.uint8)
            self.read_rows("label", [(index,) for index, _, _ in draws], batch["labels"])
            for row, labels, (_, season, y, x) in zip(batch["noisy"], batch["labels"], windows,
                                                      strict=True):
                row.copy_(labels[season, y, x])
        else:
            self.read_rows("label", windows, batch["noisy"])
        batch["label"] = batch_array((n, size, size), torch.uint8).copy_(batch["noisy"])
        if self.has_s2_nodata:
            nodata = torch.empty((n, size, size), dtype=torch.bool)
            self.read_rows("s2_nodata", windows, nodata)
            batch["label"][nodata] = IGNORE_INDEX
        if self.has_truth:
            batch["truth"] = batch_array((n, size, size), torch.uint8)
            self.read_rows("truth", windows, batch["truth"])
        return {**batch, "season": torch.tensor([season for _, season, _ in draws]),
                "window": torch.tensor([[t.top, t.left] for _, _, t in draws]),
                "flip": torch.tensor([NO_FLIP if t.flip is None else t.flip for _, _, t in draws]),
                "angle": torch.tensor([t.angle for _, _, t in draws], dtype=torch.float64)}

    def _draw(self, index: int) -> tuple[int, int, Transform]:
        """The season and transform of sample ``index``, from its own seeded generator."""
        rng = np.random.default_rng((self.seed, self.epoch, index) if self.augment
                                    else (self.seed, index))
        season = int(rng.integers(self.num_seasons))
        if self.augment:
            transform = random_transform(rng, self.height, self.width, self.crop, self.flip_p,
                                         self.rotate_p)
        else:
            transform = centre_transform(self.height, self.width)
        return index, season, transform


class TileCache(dict):
    """Decoded downstream tiles kept in memory, up to ``limit`` bytes per process (then no more
    are added): fine-tuning reads the same tiles in every epoch and every run of its group."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.size = limit, 0

    def clear(self) -> None:
        super().clear()
        self.size = 0

    def add(self, tiles: dict[tuple, dict[str, np.ndarray]]) -> None:
        """Keep ``tiles`` (key -> arrays) while they fit."""
        for key, arrays in tiles.items():
            size = sum(a.nbytes for a in arrays.values())
            if self.size + size <= self.limit:
                self[key] = arrays
                self.size += size


TILE_CACHE = TileCache(1 << 30)


class SegmentationDataset(_StoreDataset):
    """Downstream tiles of one modality with their exact labels.

    ``crop`` given: training items with a random crop, flips and rotation seeded by
    ``(seed, epoch, index)``; ``crop=None``: the whole tile, untouched, for evaluation. Items are
    asked for by index (at the epoch of :meth:`set_epoch`) or by ``(epoch, index)``.
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
        self.identity = (str(self.path.resolve()), (self.path / "zarr.json").stat().st_mtime_ns)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])[0]

    def __getitems__(self, wanted: Sequence[int | tuple[int, int]]
                     ) -> list[dict[str, torch.Tensor]]:
        """Tiles ``wanted`` (a DataLoader batch), their arrays read together (or taken from
        :data:`TILE_CACHE`)."""
        pairs = [key if isinstance(key, tuple) else (self.epoch, key) for key in wanted]
        indices = [int(index) for _, index in pairs]
        rngs = [np.random.default_rng((self.seed, int(epoch), index)) for epoch, index in pairs]
        seasons = [int(rng.integers(self.num_seasons)) if self.crop else 0 for rng in rngs]
        names = ("label", *self.pixel_arrays([self.modality]))
        keys = [(self.identity, names, index, season)
                for index, season in zip(indices, seasons, strict=True)]
        missing = [key for key in keys if key not in TILE_CACHE]
        values = iter(self.read([(name, (index, season)) for *_, index, season in missing
                                 for name in names]))
        fetched = {key: {name: next(values) for name in names} for key in missing}
        TILE_CACHE.add(fetched)
        items = []
        for rng, key in zip(rngs, keys, strict=True):
            arrays = dict(fetched.get(key) or TILE_CACHE[key])  # cached arrays are only read
            image = arrays.pop(self.modality)
            label = arrays.pop("label").astype(np.int64)
            ignore_nodata(label, arrays)
            if self.crop:  # the input scaling is per pixel: on the crop alone
                transform = random_transform(rng, self.height, self.width, self.crop,
                                             self.flip_p, self.rotate_p)
                image = transform.moves(model_input(transform.crop(image), self.modality,
                                                    self.num_bands))
                label = transform(label)
            else:
                image = model_input(image, self.modality, self.num_bands)
            items.append({"image": torch.from_numpy(image), "label": torch.from_numpy(label)})
        return items
