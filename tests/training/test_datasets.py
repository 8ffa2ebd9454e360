"""Datasets over the stores: normalisation, joint transforms, seeded items, worker-safe reads."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader, default_collate

from cromss.constants import IGNORE_INDEX
from cromss.data.store import open_arrays
from cromss import smoothing
from cromss.settings import Pretrain
from cromss.training import datasets
from helpers.stores import write_store


# the schema's defaults (flip_p 0.5, rotate_p 0.2, smoothing on: spatial_temporal, sigma 3, alpha
# 0.15, beta 0.05) with a crop of 16, below the schema's minimum, to keep the stores tiny
PRETRAIN_SETTINGS = replace(Pretrain.parse({"fusion": "middle", "encoder": "resnet18", "s2_bands": 9,
                                            "seed": 3, "epochs": 1, "batch_size": 2, "crop": 32}),
                            crop=16)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("ds") / "nol.zarr")


def prepared(ds: datasets.PretrainDataset, ks: list[int]) -> list[dict[str, torch.Tensor]]:
    """Items ``ks`` as the training step sees them: read, collated, prepared on the CPU."""
    batch = ds.prepare(ds.__getitems__(ks), torch.device("cpu"))
    return [{key: value[i] for key, value in batch.items()} for i in range(len(ks))]


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return (labels[None] == np.arange(num_classes)[:, None, None]).astype(np.float32)


def test_loader_items_are_the_stored_crops_and_the_draws(store):
    """Workers only read and crop: S2 uint16 in the model's bands, S1 float32 dB, uint8 maps."""
    ds = datasets.PretrainDataset(store, [0, 1, 2, 3], replace(PRETRAIN_SETTINGS, rotate_p=1.0))
    item = ds[2]
    rng = np.random.default_rng((3, 0, 2))
    season = int(rng.integers(4))
    t = datasets.random_transform(rng, 32, 32, 16, 0.5, 1.0)
    group = open_arrays(store)
    assert item["s2"].dtype == torch.uint16 and item["s2"].shape == (9, 16, 16)
    np.testing.assert_array_equal(item["s2"].numpy(), t.crop(np.asarray(
        group["s2"][2, season]))[list(datasets.s2_band_indices(9))])
    np.testing.assert_array_equal(item["s1"].numpy(), t.crop(np.asarray(group["s1"][2, season])))
    assert item["labels"].dtype == torch.uint8 and item["labels"].shape == (4, 32, 32)
    np.testing.assert_array_equal(item["noisy"].numpy(), t.crop(np.asarray(
        group["label"][2, season])))
    assert int(item["season"]) == season and item["window"].tolist() == [t.top, t.left]
    assert float(item["angle"]) == t.angle and int(item["flip"]) == (
        datasets.NO_FLIP if t.flip is None else t.flip)
    assert "soft" not in item and "labels" not in datasets.PretrainDataset(
        store, [0], PRETRAIN_SETTINGS, train=False)[0]


def test_pretrain_item_is_seeded_and_prior_comes_from_the_full_map(store):
    ds = datasets.PretrainDataset(store, [0, 1, 2, 3], PRETRAIN_SETTINGS)
    ds.set_epoch(2)
    first, again = prepared(ds, [1])[0], prepared(ds, [1])[0]
    for key in first:
        assert torch.equal(first[key], again[key])
    assert first["s1"].shape == (2, 16, 16) and first["s2"].shape == (9, 16, 16)
    assert first["soft"].shape == (9, 16, 16) and first["label"].dtype == torch.int64
    ds.set_epoch(3)
    assert not torch.equal(prepared(ds, [1])[0]["s2"], first["s2"])
    # recompute the item by hand: same generator, prior on the full 32x32 maps, then the transform
    rng = np.random.default_rng((3, 3, 1))
    season = int(rng.integers(4))
    t = datasets.random_transform(rng, 32, 32, 16, 0.5, 0.2)
    group = open_arrays(store)
    soft_full = smoothing.smoothed_targets_batch(torch.from_numpy(group["label"][1:2]), [season],
                                                 9, alpha=0.15, beta=0.05)[0].numpy()
    item = prepared(ds, [1])[0]
    np.testing.assert_allclose(item["soft"].numpy(), t(soft_full), atol=1e-6)
    np.testing.assert_array_equal(item["label"].numpy(), t(np.asarray(group["label"][1, season])))
    np.testing.assert_array_equal(item["truth"].numpy(), t(np.asarray(group["truth"][1, season])))
    torch.testing.assert_close(item["soft"].sum(0), torch.ones(16, 16))


def test_validation_items_without_augmentation_use_hard_labels_and_a_centre_crop(store):
    ds = datasets.PretrainDataset(store, [0, 1], PRETRAIN_SETTINGS, train=False)
    assert not ds.augment  # the Trainer passes ``val_augment``
    item = prepared(ds, [0])[0]
    assert item["s1"].shape == (2, 32, 32)
    label = item["label"]
    expected = torch.nn.functional.one_hot(label.clamp(max=8), 9).permute(2, 0, 1).float()
    expected[:, label == IGNORE_INDEX] = 0
    assert torch.equal(item["soft"], expected)
    ds.set_epoch(5)
    assert torch.equal(prepared(ds, [0])[0]["s2"], item["s2"])


def test_augmented_validation_items_are_transformed_hard_and_seeded_per_epoch(store):
    """As the reference's validation split: the training crop, flips, rotation and a random
    season, drawn from (seed, epoch, index); hard one-hot targets moved with the label."""
    settings = replace(PRETRAIN_SETTINGS, flip_p=1.0, rotate_p=1.0)
    ds = datasets.PretrainDataset(store, [0, 1, 2, 3], settings, train=False, augment=True)
    group = open_arrays(store)
    seasons = set()
    for epoch in (0, 1, 2, 3):
        ds.set_epoch(epoch)
        item = prepared(ds, [2])[0]
        again = datasets.PretrainDataset(store, [0, 1, 2, 3], settings, train=False,
                                         augment=True)
        again.set_epoch(epoch)
        for key, value in prepared(again, [2])[0].items():
            assert torch.equal(value, item[key])
        rng = np.random.default_rng((3, epoch, 2))
        season = int(rng.integers(4))
        seasons.add(season)
        t = datasets.random_transform(rng, 32, 32, 16, 1.0, 1.0)
        assert t.flip is not None and t.angle
        assert item["s1"].shape == (2, 16, 16)
        np.testing.assert_array_equal(item["label"].numpy(),
                                      t(np.asarray(group["label"][2, season])))
        label = item["label"]
        expected = torch.nn.functional.one_hot(label.clamp(max=8), 9).permute(2, 0, 1).float()
        expected[:, label == IGNORE_INDEX] = 0
        assert torch.equal(item["soft"], expected)  # hard labels, no smoothing
    assert len(seasons) > 1


def test_smoothing_off_gives_one_hot_targets(store):
    settings = replace(PRETRAIN_SETTINGS, smoothing=replace(PRETRAIN_SETTINGS.smoothing,
                                                            enabled=False))
    item = prepared(datasets.PretrainDataset(store, [0], settings), [0])[0]
    assert set(item["soft"].unique().tolist()) == {0.0, 1.0}


def test_a_batch_fetch_equals_single_items(store):
    ds = datasets.PretrainDataset(store, [0, 1, 2, 3], PRETRAIN_SETTINGS)
    ds.set_epoch(1)
    batch = prepared(ds, [3, 0, 2])
    for k, item in zip([3, 0, 2], batch, strict=True):
        for key, value in prepared(ds, [k])[0].items():
            torch.testing.assert_close(item[key], value, rtol=0, atol=1e-6)
    loaded = next(iter(datasets.pretrain_loader(ds, None, 3)))
    for key, value in ds.__getitems__([0, 1, 2]).items():
        assert torch.equal(loaded[key], value)


def reference_batch(store: Path, ds: datasets.PretrainDataset, ks: list[int]
                    ) -> dict[str, torch.Tensor]:
    """Items ``ks`` read one by one with zarr-python (whole chunks, then cropped) and collated:
    the per-item loader's stored batch."""
    group = open_arrays(store)
    items = []
    for k in ks:
        index, season, t = ds._draw(ds.indices[k])
        labels = np.asarray(group["label"][index])
        label = t.crop(labels[season]).copy()
        label[t.crop(np.asarray(group["s2_nodata"][index, season]))] = IGNORE_INDEX
        item = {"s1": t.crop(np.asarray(group["s1"][index, season])),
                "s2": t.crop(np.asarray(group["s2"][index, season]))[ds.bands],
                "noisy": t.crop(labels[season]), "label": label,
                "truth": t.crop(np.asarray(group["truth"][index, season])),
                **({"labels": labels} if ds.prepare.smoothing else {})}
        items.append({**{key: torch.from_numpy(np.ascontiguousarray(value))
                         for key, value in item.items()},
                      "season": torch.tensor(season), "window": torch.tensor([t.top, t.left]),
                      "flip": torch.tensor(datasets.NO_FLIP if t.flip is None else t.flip),
                      "angle": torch.tensor(t.angle, dtype=torch.float64)})
    return default_collate(items)


@pytest.mark.parametrize("case", ["9 bands", "13 bands", "no smoothing", "validation"])
def test_the_batch_read_into_its_rows_equals_the_collated_items(store, tmp_path, case):
    """Each array is decoded straight into the batch's rows: the same values, types and shapes
    as reading each item alone and collating them, S2 no-data ignored in the label."""
    nodata = write_store(tmp_path / "nodata.zarr", samples=5)
    zarr.open_array(str(nodata / "s2_nodata"), mode="r+")[1:3, :, 4:20, 2:11] = True
    settings = {"9 bands": PRETRAIN_SETTINGS, "13 bands": replace(PRETRAIN_SETTINGS, s2_bands=13),
                "no smoothing": replace(PRETRAIN_SETTINGS, smoothing=replace(
                    PRETRAIN_SETTINGS.smoothing, enabled=False))}.get(case, PRETRAIN_SETTINGS)
    for path in (store, nodata):
        ds = datasets.PretrainDataset(path, [4, 2, 1, 3, 0], settings, train=case != "validation")
        ds.set_epoch(6)
        batch, expected = ds.__getitems__([0, 1, 2, 3, 4]), reference_batch(path, ds, range(5))
        assert batch.keys() == expected.keys()
        for key, value in expected.items():
            assert batch[key].dtype == value.dtype and torch.equal(batch[key], value), key
    assert (batch["label"] == IGNORE_INDEX).sum() > (batch["noisy"] == IGNORE_INDEX).sum()


def test_workers_allocate_the_batch_in_shared_memory_and_hand_it_on(store, monkeypatch):
    """The worker's batch is the one the training process gets (no collation copy): allocated
    in shared memory there, as the default collation allocates its batch."""
    ds = datasets.PretrainDataset(store, [0, 1, 2, 3, 4, 5], PRETRAIN_SETTINGS)
    in_process = list(datasets.pretrain_loader(ds, None, 3))
    in_workers = list(datasets.pretrain_loader(ds, None, 3, num_workers=2))
    for got, expected in zip(in_workers, in_process, strict=True):
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[key], value) for key, value in expected.items())
        assert got["s2"].is_shared()
    assert not datasets.batch_array((2, 3), torch.uint8).is_shared()
    monkeypatch.setattr(datasets, "get_worker_info", lambda: object())  # as in a worker
    shared = datasets.batch_array((2, 3, 5), torch.uint16)
    assert shared.is_shared() and shared.shape == (2, 3, 5) and shared.is_contiguous()
    assert shared.untyped_storage().nbytes() == 60


def test_loaders_decode_with_zarrs_and_read_the_stored_values(store):
    from cromss.data.store import PIXEL_VARS, open_array, read_selections

    group = open_arrays(store)
    names = [name for name in PIXEL_VARS if name in group]
    assert {"s1", "s2", "label", "truth"} <= set(names)
    for name in names:
        fast, plain = open_array(group, name), group[name]
        assert type(fast.async_array.codec_pipeline).__name__ == "ZarrsCodecPipeline"
        assert type(plain.async_array.codec_pipeline).__name__ == "BatchedCodecPipeline"
        stored = plain[:]
        np.testing.assert_array_equal(fast[:], stored)
        picks = [(fast, (3,)), (fast, (1, 2)), (fast, (0, slice(1, 3)))]
        for got, (_, selection) in zip(read_selections(picks), picks, strict=True):
            assert got.dtype == stored.dtype
            np.testing.assert_array_equal(got, stored[selection])


def test_dataset_pickles_without_the_open_group_and_loads_in_workers(store):
    ds = datasets.SegmentationDataset(store, modality="s1", crop=16, seed=1)
    _ = ds[0]
    assert ds._group is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._group is None
    assert torch.equal(clone[2]["image"], ds[2]["image"])
    in_workers = next(iter(DataLoader(ds, batch_size=6, num_workers=2)))
    in_process = next(iter(DataLoader(ds, batch_size=6, num_workers=0)))
    assert torch.equal(in_workers["image"], in_process["image"])


def test_persistent_workers_draw_each_epoch_from_the_indices_epoch(store):
    """Fine-tuning keeps its workers across epochs: the epoch comes with each index."""
    from cromss.training import distributed

    ds = datasets.SegmentationDataset(store, modality="s2", crop=16, seed=2)
    sampler = distributed.ResumableSampler(ds, distributed.setup(), seed=2)
    loader = DataLoader(ds, batch_size=3, sampler=distributed.EpochIndices(sampler),
                        num_workers=2, persistent_workers=True)
    images = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        ds.set_epoch(epoch)  # the main process's copy only: the workers never see it
        order = list(sampler)
        images.append(torch.cat([batch["image"] for batch in loader]))
        expected = torch.stack([ds[index]["image"] for index in order])
        assert torch.equal(images[-1], expected)
    assert not torch.equal(images[0], images[1])


def test_segmentation_dataset_whole_tile_for_evaluation(store):
    ds = datasets.SegmentationDataset(store, modality="s2", s2_bands=13)
    item = ds[0]
    assert item["image"].shape == (13, 32, 32) and item["label"].shape == (32, 32)
    s1 = datasets.SegmentationDataset(store, modality="s1")[0]["image"]
    assert float(s1.min()) >= 0 and float(s1.max()) <= 1
    with pytest.raises(ValueError, match="modality"):
        datasets.SegmentationDataset(store, modality="s3")
    with pytest.raises(FileNotFoundError, match="no such Zarr store"):
        datasets.SegmentationDataset(store.parent / "missing.zarr", modality="s1")


def test_a_rotated_item_gets_a_bilinear_prior_and_a_nearest_hard_label(store):
    """The reference rotates the smoothing prior with the image (bilinear) and the label with
    nearest neighbours, then mixes Z' = (1 - a - b) one_hot(label) + prior part."""
    settings = replace(PRETRAIN_SETTINGS, rotate_p=1.0)
    ds = datasets.PretrainDataset(store, [0, 1, 2, 3], settings)
    item = prepared(ds, [2])[0]
    rng = np.random.default_rng((3, 0, 2))
    season = int(rng.integers(4))
    t = datasets.random_transform(rng, 32, 32, 16, 0.5, 1.0)
    assert t.angle
    labels = np.asarray(open_arrays(store)["label"][2, season])
    soft_full = smoothing.smoothed_targets_batch(torch.from_numpy(
        np.asarray(open_arrays(store)["label"][2:3])), [season], 9, alpha=0.15, beta=0.05)[0].numpy()
    hard_full = one_hot(labels, 9)
    expected = t(soft_full - 0.8 * hard_full) + 0.8 * one_hot(t(labels), 9)
    np.testing.assert_array_equal(item["label"].numpy(), t(labels))
    np.testing.assert_allclose(item["soft"].numpy(), expected, atol=1e-5)
    valid = item["label"] != IGNORE_INDEX
    torch.testing.assert_close(item["soft"].sum(0)[valid], torch.ones(int(valid.sum())))
    # the hard part is exactly the moved label's class, never a blend of two classes
    top = item["soft"].max(0).values[valid]
    assert (top >= 0.8).all()


def test_the_crop_is_scaled_as_the_whole_image_would_be(store):
    """Items scale only their crop (the scaling is per pixel): the same as the reference's order,
    scale the whole image, then crop, flip and rotate."""
    ds = datasets.SegmentationDataset(store, modality="s2", crop=16, seed=3, rotate_p=1.0)
    group = open_arrays(store)
    for index in range(3):
        rng = np.random.default_rng((3, 0, index))
        season = int(rng.integers(ds.num_seasons))
        transform = datasets.random_transform(rng, ds.height, ds.width, 16, 0.5, 1.0)
        image = datasets.model_input(np.asarray(group["s2"][index, season]), "s2", 13)
        torch.testing.assert_close(ds[index]["image"], torch.from_numpy(transform(image)),
                                   rtol=0, atol=1e-6)


def test_tiles_are_decoded_once_per_process(store, monkeypatch):
    ds = datasets.SegmentationDataset(store, modality="s2", crop=16, seed=5)
    first = ds.__getitems__([0, 1, 2])
    reads = []
    monkeypatch.setattr(datasets._StoreDataset, "read",
                        lambda self, requests: reads.extend(requests) or [])
    again = ds.__getitems__([0, 1, 2])  # the same epoch: the same draws, from the cache
    assert reads == []
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    full = datasets.TileCache(limit=10)
    full.add({"key": {"label": np.zeros(100, np.uint8)}})
    assert "key" not in full and full.size == 0
