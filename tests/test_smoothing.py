"""Spatial-temporal label smoothing (method §5): scipy equivalence, hand cases, properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from cromss.constants import IGNORE_INDEX
from cromss import gaussian_filter
from cromss.gaussian_filter import BANDED_FROM, GaussianFilter
from cromss.smoothing import (CHUNK_PIXELS, reference_smoothing_prior, smoothed_targets_batch,
                              smoothing_prior, smoothing_prior_batch, soft_labels)


def noisy_seasons(rng: np.random.Generator, size: tuple[int, int], ignored: float) -> np.ndarray:
    labels = rng.integers(0, 9, (4, *size)).astype(np.uint8)
    labels[rng.random(labels.shape) < ignored] = IGNORE_INDEX
    return labels


def filter_maps(maps: np.ndarray, windows: np.ndarray | None = None,
                size: int | None = None) -> np.ndarray:
    """G of n x K x H x W maps through ``GaussianFilter``'s n x h x K x w stacks."""
    filter_ = GaussianFilter(*maps.shape[-2:])
    stacks = filter_.layout(torch.from_numpy(maps)).float().permute(0, 2, 1, 3).contiguous()
    corners = None if windows is None else torch.from_numpy(windows)
    return filter_(stacks, corners, size).permute(0, 2, 1, 3).numpy()


@pytest.mark.parametrize("banded", [False, True])
@pytest.mark.parametrize("size", [(96, 96), (7, 5), (30, 41), (49, 24)])
def test_gaussian_filter_equals_scipy_reflect(size, banded, monkeypatch):
    monkeypatch.setattr(gaussian_filter, "BANDED_FROM", 1 if banded else 10**6)
    assert GaussianFilter(*size).banded == banded
    maps = np.random.default_rng(0).random((2, 3, *size))
    expected = ndimage.gaussian_filter(maps, (0, 0, 3.0, 3.0), mode="reflect", truncate=4.0)
    assert np.abs(filter_maps(maps) - expected).max() < 1e-5
    side = min(size) - 2
    windows = np.array([[0, 2], [2, size[1] - side]])
    cropped = filter_maps(maps, windows, side)
    for sample, (top, left) in enumerate(windows):
        window = expected[sample, :, top:top + side, left:left + side]
        assert np.abs(cropped[sample] - window).max() < 1e-5


@pytest.mark.parametrize("size, ignored", [((96, 96), 0.0), ((96, 96), 0.05), ((11, 6), 0.3)])
def test_prior_equals_scipy_reference(size, ignored):
    labels = noisy_seasons(np.random.default_rng(1), size, ignored)
    prior = smoothing_prior(labels, 2, 9)
    assert prior.shape == (9, *size)
    assert np.abs(prior - reference_smoothing_prior(labels, 2, 9)).max() < 1e-5
    assert np.allclose(prior.sum(axis=0), 1.0, atol=1e-5)


def test_prior_of_a_constant_class_is_that_class():
    labels = np.full((4, 10, 12), 3, dtype=np.uint8)
    expected = np.zeros((9, 10, 12))
    expected[3] = 1.0
    assert np.allclose(smoothing_prior(labels, 0, 9), expected, atol=1e-6)


def test_prior_mixes_temporal_and_spatial_halves():
    # Seasons 0-2 say class 1, season 3 says class 2 everywhere: Mt = (0, 3/4, 1/4), Ms = Z(tau).
    labels = np.ones((4, 8, 8), dtype=np.uint8)
    labels[3] = 2
    prior = smoothing_prior(labels, 3, 3)
    assert np.allclose(prior[:, 4, 4], [0.0, 0.375, 0.625], atol=1e-6)


def test_ignored_pixels_carry_no_mass_and_empty_neighbourhoods_are_uniform():
    labels = np.full((4, 6, 6), IGNORE_INDEX, dtype=np.uint8)
    assert np.allclose(smoothing_prior(labels, 0, 9), 1 / 9)
    labels[:, 0, 0] = 5  # the only labelled pixel decides every renormalised prior
    prior = smoothing_prior(labels, 0, 9)
    assert np.allclose(prior[5], 1.0, atol=1e-6)


def test_batch_equals_per_sample():
    rng = np.random.default_rng(2)
    labels = np.stack([noisy_seasons(rng, (20, 24), 0.1) for _ in range(3)])
    seasons = np.array([0, 3, 1])
    batch = smoothing_prior_batch(torch.from_numpy(labels), torch.from_numpy(seasons), 9).numpy()
    for sample, season, prior in zip(labels, seasons, batch, strict=True):
        assert np.allclose(prior, smoothing_prior(sample, int(season), 9), atol=1e-6)


def test_targets_of_a_mixed_batch_equal_the_formula_on_the_scipy_prior():
    # more than one chunk, samples with and without ignored pixels interleaved
    rng = np.random.default_rng(4)
    size = (64, 60)
    labels = np.stack([noisy_seasons(rng, size, 0.05 * (i % 2))
                       for i in range(2 * CHUNK_PIXELS // (9 * size[0] * size[1]) + 3)])
    seasons = rng.integers(0, 4, len(labels))
    given = torch.from_numpy(labels).long()
    targets = smoothed_targets_batch(given, seasons, 9, alpha=0.2, beta=0.1)
    assert torch.equal(given, torch.from_numpy(labels).long())  # the input is left untouched
    for sample, season, target in zip(labels, seasons, targets.numpy(), strict=True):
        expected = soft_labels(sample[season], reference_smoothing_prior(sample, season, 9), 9,
                               alpha=0.2, beta=0.1)
        assert np.abs(target - expected).max() < 1e-5


def test_large_maps_are_filtered_in_bands_with_the_same_values():
    rng = np.random.default_rng(6)
    size = (BANDED_FROM + 3, BANDED_FROM)
    assert GaussianFilter(*size).banded and not GaussianFilter(BANDED_FROM - 1, 200).banded
    labels = np.stack([noisy_seasons(rng, size, ignored) for ignored in (0.0, 0.01)])
    targets = smoothed_targets_batch(torch.from_numpy(labels), [1, 3], 9)
    for sample, season, target in zip(labels, [1, 3], targets.numpy(), strict=True):
        expected = soft_labels(sample[season], reference_smoothing_prior(sample, season, 9), 9)
        assert np.abs(target - expected).max() < 1e-5


@pytest.mark.parametrize("size, ignored", [((40, 36), 0.0), ((40, 36), 0.05),
                                           ((BANDED_FROM, BANDED_FROM + 2), 0.01)])
def test_windows_are_crops_of_the_full_map_targets(size, ignored):
    rng = np.random.default_rng(7)
    labels = np.stack([noisy_seasons(rng, size, ignored * (i % 2)) for i in range(3)])
    seasons, side = [0, 3, 2], 24
    windows = np.array([[0, 0], [size[0] - side, size[1] - side], [5, 9]])
    full = smoothed_targets_batch(labels, seasons, 9)
    cropped = smoothed_targets_batch(labels, seasons, 9, windows=windows, window_size=side)
    assert cropped.shape == (3, 9, side, side)
    for sample, (top, left) in enumerate(windows):
        window = full[sample, :, top:top + side, left:left + side]
        torch.testing.assert_close(cropped[sample], window, rtol=0, atol=1e-6)


@pytest.mark.parametrize("ignored", [0.0, 0.05])
def test_flipped_maps_give_flipped_targets(ignored):
    # G with reflect borders commutes with flips; flipped (negative-stride) input is accepted
    rng = np.random.default_rng(8)
    labels = np.stack([noisy_seasons(rng, (30, 26), ignored) for _ in range(2)])
    targets = smoothed_targets_batch(labels, [1, 2], 9)
    flipped = smoothed_targets_batch(labels[..., ::-1, :], [1, 2], 9)
    torch.testing.assert_close(flipped, targets.flip(-2), rtol=0, atol=1e-6)


def test_bad_windows_raise():
    labels = np.zeros((2, 4, 10, 10), dtype=np.uint8)
    with pytest.raises(ValueError, match="inside the 10x10 maps"):
        smoothed_targets_batch(labels, [0, 1], 9, windows=[[0, 0], [0, 4]], window_size=7)
    with pytest.raises(ValueError, match="one \\(top, left\\) per sample"):
        smoothed_targets_batch(labels, [0, 1], 9, windows=[[0, 0]], window_size=4)
    with pytest.raises(ValueError, match="without windows"):
        smoothed_targets_batch(labels, [0, 1], 9, window_size=4)


@pytest.mark.parametrize("ignored", [0.0, 0.2])
def test_spatial_and_temporal_priors_are_the_two_halves(ignored):
    labels = noisy_seasons(np.random.default_rng(5), (16, 16), ignored)
    labels[0, :, 8:] = 1  # season 0 differs from the others on the right half
    batch = torch.from_numpy(labels)[None]
    spatial, temporal, both = (smoothing_prior_batch(batch, [0], 9, prior=kind)[0].numpy()
                               for kind in ("spatial", "temporal", "spatial_temporal"))
    np.testing.assert_allclose(both, (spatial + temporal) / 2, atol=1e-6)
    for prior in (spatial, temporal):
        np.testing.assert_allclose(prior.sum(0), 1, atol=1e-5)
    assert spatial[1, 8, 15] > 0.5 > temporal[1, 8, 15]
    with pytest.raises(ValueError, match="prior"):
        smoothing_prior_batch(batch, [0], 9, prior="seasonal")


def test_bad_inputs_raise():
    labels = np.zeros((4, 6, 6), dtype=np.uint8)
    labels[0, 0, 0] = 9
    with pytest.raises(ValueError, match="class indices below 9"):
        smoothing_prior(labels, 0, 9)
    with pytest.raises(ValueError, match="seasons"):
        smoothing_prior(np.zeros((4, 6, 6), dtype=np.uint8), 4, 9)
    with pytest.raises(ValueError, match="T x H x W"):
        smoothing_prior(np.zeros((6, 6), dtype=np.uint8), 0, 9)


def test_soft_labels_hand_case_numpy_and_torch():
    labels = np.array([[1, IGNORE_INDEX]])
    prior = np.zeros((3, 1, 2), dtype=np.float32)
    prior[2] = 1.0
    soft = soft_labels(labels, prior, 3, alpha=0.15, beta=0.06)
    assert isinstance(soft, np.ndarray)
    # labelled pixel: 0.79 one-hot(1) + 0.15 one-hot(2) + 0.02; ignored: no one-hot part
    assert np.allclose(soft[:, 0, 0], [0.02, 0.81, 0.17])
    assert np.allclose(soft[:, 0, 1], [0.02, 0.02, 0.17])
    soft_t = soft_labels(torch.from_numpy(labels), torch.from_numpy(prior), 3, 0.15, 0.06)
    assert torch.allclose(soft_t, torch.from_numpy(soft))


def test_soft_labels_sum_to_one_on_labelled_pixels():
    labels = noisy_seasons(np.random.default_rng(3), (16, 16), 0.0)
    soft = soft_labels(labels[0], smoothing_prior(labels, 0, 9), 9)
    assert np.allclose(soft.sum(axis=0), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="prior shape"):
        soft_labels(labels[0], np.zeros((8, 16, 16)), 9)
