"""Spatial-temporal label smoothing (method §5): scipy equivalence, hand cases, properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from cromss.constants import IGNORE_INDEX
from cromss.smoothing import (gaussian_smooth, reference_smoothing_prior, smoothing_prior,
                              smoothing_prior_batch, soft_labels)


def noisy_seasons(rng: np.random.Generator, size: tuple[int, int], ignored: float) -> np.ndarray:
    labels = rng.integers(0, 9, (4, *size)).astype(np.uint8)
    labels[rng.random(labels.shape) < ignored] = IGNORE_INDEX
    return labels


@pytest.mark.parametrize("size", [(96, 96), (7, 5), (30, 41)])
def test_gaussian_smooth_equals_scipy_reflect(size):
    maps = np.random.default_rng(0).random((3, *size))
    expected = np.stack([ndimage.gaussian_filter(m, 3.0, mode="reflect", truncate=4.0)
                         for m in maps])
    smoothed = gaussian_smooth(torch.from_numpy(maps).float()).numpy()
    assert np.abs(smoothed - expected).max() < 1e-5


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
