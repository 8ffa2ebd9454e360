"""The input normalisation: the reference's uint8 scaling, and the importable transform gives
exactly the inputs the training loaders produce."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cromss import normalisation
from cromss.constants import S2_MEAN, S2_STD, input_normalisation, s2_band_indices
from cromss.data.store import open_arrays
from cromss.errors import CromssError
from cromss.normalisation import InputNormalisation
from cromss.settings import Pretrain
from cromss.training.datasets import PretrainDataset, SegmentationDataset
from helpers.stores import write_store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("norm") / "nol.zarr", samples=3, seasons=2)


def test_normalise_clips_to_two_std_and_scales_to_unit_range():
    image = np.array([[[-1e9, 0.0, 10.0, 1e9]]], dtype=np.float32)  # mean 0, std 5 -> [-10, 10]
    np.testing.assert_allclose(normalisation.normalise(image, [0.0], [5.0])[0, 0],
                               [0, 127 / 255, 1, 1])  # uint8 levels: 127.5 truncates to 127


def reference_img_clip(img, mean, std):
    """The reference's ``img_clip`` (dataset/dwosm_dataset_lmdb.py), then its ``/255``."""
    low, high = mean - 2 * std, mean + 2 * std
    img = np.clip((img - low) / (high - low) * 255.0, 0, 255).astype(np.uint8)
    return img.astype(np.float32) / 255


@pytest.mark.parametrize("modality, bands", [("s1", 2), ("s2", 13), ("s2", 9)])
def test_model_input_is_the_reference_uint8_scaling(modality, bands):
    rng = np.random.default_rng(1)
    raw = (rng.normal(-15, 8, (2, 16, 16)) if modality == "s1"
           else rng.uniform(0, 6000, (13, 16, 16))).astype(np.float32)
    norm = input_normalisation(modality, bands)
    picked = raw if modality == "s1" else raw[list(s2_band_indices(bands))]
    expected = np.stack([reference_img_clip(band, m, s)
                         for band, m, s in zip(picked, norm["mean"], norm["std"], strict=True)])
    got = normalisation.model_input(raw, modality, bands)
    np.testing.assert_allclose(got, expected, atol=1.01 / 255)  # float32 vs float64 at a level edge
    assert np.mean(np.isclose(got, expected, atol=1e-7)) > 0.99
    assert len(np.unique(got)) <= 256 and "uint8" in norm["quantisation"]


def test_s2_input_selects_the_nine_bands_with_their_statistics():
    raw = np.broadcast_to(np.asarray(S2_MEAN, np.float32)[:, None, None], (13, 2, 2)).copy()
    raw[11] = S2_MEAN[11] + 2.01 * S2_STD[11]  # B11 above its upper bound
    image = normalisation.model_input(raw, "s2", 9)
    assert image.shape == (9, 2, 2)
    np.testing.assert_allclose(image[:7], 127 / 255, atol=1e-6)
    np.testing.assert_allclose(image[7], 1.0, atol=1e-6)  # 8th of the 9 bands is B11
    card = input_normalisation("s2", 9)
    assert card["bands"] == ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12"]
    with pytest.raises(ValueError, match="13 or 9"):
        normalisation.model_input(raw, "s2", 10)


@pytest.mark.parametrize("modality, bands", [("s1", 2), ("s2", 13), ("s2", 9)])
def test_transform_gives_the_fine_tuning_loaders_inputs_exactly(store, modality, bands):
    dataset = SegmentationDataset(store, modality=modality, s2_bands=bands)  # whole tiles
    raw = np.asarray(open_arrays(store)[modality][:, 0])  # (sample, band, y, x), season 0
    to_input = InputNormalisation(modality, bands)
    batch = to_input(torch.from_numpy(raw))  # a torch batch of all 13 stored S2 bands
    assert batch.dtype == torch.float32 and batch.shape[1] == bands
    for index in range(len(dataset)):
        image = dataset[index]["image"]
        assert torch.equal(image, torch.from_numpy(to_input(raw[index])))
        assert torch.equal(image, batch[index])


@pytest.mark.parametrize("train", [True, False])
def test_transform_gives_the_pretraining_loaders_inputs_exactly(store, train):
    settings = replace(Pretrain.parse({"fusion": "middle", "encoder": "resnet18", "s2_bands": 9,
                                       "seed": 4, "epochs": 1, "batch_size": 2, "crop": 32,
                                       "flip_p": 0.0, "rotate_p": 0.0}),
                       crop=16)
    dataset = PretrainDataset(store, [0, 1, 2], settings, train=train)
    group = open_arrays(store)
    card = {"modality": "s2", "in_channels": 9}  # what an encoder's model card says
    transforms = {"s1": InputNormalisation("s1"), "s2": InputNormalisation.from_card(card)}
    for k, index in enumerate(dataset.indices):
        _, season, window = dataset._draw(index)  # the loader's own season and crop window
        item = dataset.prepare(dataset.__getitems__([k]), torch.device("cpu"))
        item = {key: value[0] for key, value in item.items()}
        for modality, to_input in transforms.items():
            expected = window.crop(to_input(np.asarray(group[modality][index, season])))
            assert torch.equal(item[modality], torch.from_numpy(np.ascontiguousarray(expected)))


def test_transform_refuses_wrong_bands_and_names_itself():
    with pytest.raises(CromssError, match=r"InputNormalisation\('s2', bands=9\).*\(4, 8, 8\)"):
        InputNormalisation("s2", 9)(np.zeros((4, 8, 8), np.float32))
    with pytest.raises(ValueError, match="13 or 9"):
        InputNormalisation("s2", 10)


@pytest.mark.parametrize("modality, bands", [("s1", 2), ("s2", 13), ("s2", 9)])
def test_tensor_scaling_equals_the_numpy_scaling_bit_for_bit(modality, bands):
    """The training step scales on its device what the loader used to scale with numpy."""
    norm = input_normalisation(modality, bands)
    rng = np.random.default_rng(1)
    spread = np.asarray(norm["std"])[:, None, None] * 3
    raw = rng.normal(size=(3, bands, 40, 40)) * spread + np.asarray(norm["mean"])[:, None, None]
    raw = np.clip(raw, 0, 65535).astype(np.uint16) if modality == "s2" else raw.astype(np.float32)
    expected = normalisation.normalise(raw, norm["mean"], norm["std"])
    got = normalisation.normalise_tensor(torch.from_numpy(raw), norm["mean"], norm["std"])
    assert got.dtype == torch.float32 and 0 < float(got.mean()) < 1
    np.testing.assert_array_equal(got.numpy(), expected)
