"""The batch preparation on the training device: the stored values it starts from."""

from __future__ import annotations

import numpy as np
import torch

from cromss.normalisation import normalise
from cromss.training import prepare


def test_uint16_bands_reach_the_device_with_their_values():
    """S2 digital numbers above the int16 range (bright clouds, saturation) keep their values."""
    raw = np.array([[[0, 1, 32767], [32768, 40000, 65535]]], dtype=np.uint16)
    moved = prepare.unsigned_on(torch.from_numpy(raw), torch.device("cpu"))
    assert moved.dtype == torch.int32
    np.testing.assert_array_equal(moved.numpy(), raw.astype(np.int32))
    statistics = prepare.scaling("s2", 13)
    mean, std = statistics["mean"][:1], statistics["std"][:1]
    np.testing.assert_array_equal(prepare.normalise_tensor(moved, mean, std).numpy(),
                                  normalise(raw, mean, std))


def test_preparing_leaves_the_loaders_batch_as_it_was(tmp_path):
    """On the CPU ``to`` returns the loader's own tensors: flips and rotations must not touch
    them (a batch prepared twice gives the same)."""
    from dataclasses import replace


    from cromss.settings import Pretrain
    from cromss.training.datasets import PretrainDataset
    from helpers.stores import write_store

    settings = replace(Pretrain.parse({"fusion": "late", "encoder": "resnet18", "seed": 1,
                                       "epochs": 1, "batch_size": 4, "crop": 32,
                                       "flip_p": 1.0, "rotate_p": 1.0}), crop=16)
    dataset = PretrainDataset(write_store(tmp_path / "nol.zarr", samples=4), range(4), settings)
    batch = dataset.__getitems__([0, 1, 2, 3])
    kept = {key: value.clone() for key, value in batch.items()}
    first = dataset.prepare(batch, torch.device("cpu"))
    for key, value in kept.items():
        assert torch.equal(batch[key], value), key
    for key, value in dataset.prepare(batch, torch.device("cpu")).items():
        assert torch.equal(value, first[key]), key
    assert first["label"].dtype == torch.int64 and first["soft"].dtype == torch.float32
