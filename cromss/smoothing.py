"""Spatial-temporal label smoothing (method §5): priors from the four seasonal noisy label maps.

M = (N(G * mean_t Z(t)) + N(G * Z(tau))) / 2 with G a per-class Gaussian (sigma 3, truncated at
4 sigma, scipy ``reflect`` borders) and N the per-pixel renormalisation over classes. Ignored pixels
(255) carry no one-hot mass; a pixel with no mass in its neighbourhood gets the uniform prior 1/C.

``smoothing_prior_batch`` is the fast path (torch, separable Gaussian as two 1-D convolutions over
the whole batch of one-hot stacks); ``reference_smoothing_prior`` is the equations written literally
with ``scipy.ndimage.gaussian_filter``, one class and one map at a time, as the reference does.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from cromss.constants import IGNORE_INDEX


def gaussian_kernel(sigma: float, truncate: float) -> Tensor:
    """The normalised 1-D kernel of ``scipy.ndimage.gaussian_filter1d`` (radius int(t s + 0.5))."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, not {sigma}")
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def reflect_indices(size: int, radius: int) -> Tensor:
    """Source index of each position of an axis padded by ``radius`` in scipy's ``reflect`` mode."""
    positions = torch.arange(-radius, size + radius) % (2 * size)
    return torch.where(positions < size, positions, 2 * size - 1 - positions)


@functools.lru_cache(maxsize=16)
def smoothing_matrix(size: int, sigma: float, truncate: float) -> Tensor:
    """The size x size matrix of the 1-D Gaussian filter with reflect borders (float64).

    Row i holds the kernel weights folded onto the source pixels, so filtering an axis is one
    matrix product: exact, whatever the size, and fast in BLAS.
    """
    kernel = gaussian_kernel(sigma, truncate)
    radius = (kernel.numel() - 1) // 2
    sources = reflect_indices(size, radius).unfold(0, kernel.numel(), 1)  # size x K
    rows = torch.arange(size).unsqueeze(1).expand_as(sources)
    matrix = torch.zeros(size, size, dtype=torch.float64)
    return matrix.index_put_((rows, sources), kernel.expand_as(sources), accumulate=True)


def gaussian_smooth(maps: Tensor, sigma: float = 3.0, truncate: float = 4.0) -> Tensor:
    """Gaussian filter of every 2-D map of ``maps`` (... x H x W), as scipy's ``gaussian_filter``
    with ``mode='reflect'``: one matrix product per axis."""
    height, width = maps.shape[-2:]
    along_w = smoothing_matrix(width, sigma, truncate).to(maps.device, maps.dtype)
    along_h = smoothing_matrix(height, sigma, truncate).to(maps.device, maps.dtype)
    smoothed = maps.reshape(-1, width) @ along_w.T
    return torch.matmul(along_h, smoothed.reshape(-1, height, width)).reshape(maps.shape)


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """... x H x W class indices -> ... x C x H x W float one-hot; ignored pixels are all zero."""
    classes = torch.arange(num_classes, device=labels.device).view(num_classes, 1, 1)
    return (labels.long().unsqueeze(-3) == classes).to(torch.float32)


def normalise(maps: Tensor) -> Tensor:
    """N(.): divide by the sum over classes (dim -3); the uniform 1/C where that sum is 0."""
    total = maps.sum(dim=-3, keepdim=True)
    uniform = torch.full_like(maps, 1.0 / maps.shape[-3])
    return torch.where(total > 0, maps / torch.where(total > 0, total, 1.0), uniform)


def class_index(labels: Tensor, num_classes: int) -> tuple[Tensor, bool]:
    """Labels as int64 with the ignore value moved to ``num_classes`` (an extra dump class), and
    whether any pixel is ignored."""
    ignored = labels == IGNORE_INDEX
    low, high = (int(value) for value in torch.aminmax(torch.where(ignored, 0, labels.long())))
    if low < 0 or high >= num_classes:
        raise ValueError(f"labels must be class indices below {num_classes} or {IGNORE_INDEX}, "
                         f"found values in [{low}, {high}]")
    return torch.where(ignored, num_classes, labels.long()), bool(ignored.any())


def smoothing_prior_batch(season_labels: Tensor, seasons: Tensor, num_classes: int,
                          sigma: float = 3.0, truncate: float = 4.0) -> Tensor:
    """Priors M (N x C x H x W) of a batch: season_labels N x T x H x W, seasons N (indices of tau)."""
    if season_labels.dim() != 4:
        raise ValueError(f"season labels must be N x T x H x W, not {tuple(season_labels.shape)}")
    count, num_seasons, height, width = season_labels.shape
    seasons = torch.as_tensor(seasons, device=season_labels.device).long().reshape(-1)
    if seasons.numel() != count:
        raise ValueError(f"{seasons.numel()} seasons given for {count} samples")
    if bool(((seasons < 0) | (seasons >= num_seasons)).any()):
        raise ValueError(f"seasons must lie in [0, {num_seasons})")
    index, any_ignored = class_index(season_labels, num_classes)
    # One-hot maps built by scattering into C + 1 channels; the dump channel is dropped.
    empty = torch.zeros(count, num_classes + 1, height, width, device=index.device)
    mean_hot = empty.scatter_add(1, index, torch.full(index.shape, 1.0 / num_seasons,
                                                      device=index.device))[:, :num_classes]
    sampled = index[torch.arange(count, device=index.device), seasons].unsqueeze(1)
    sampled_hot = empty.scatter(1, sampled, 1.0)[:, :num_classes]
    if not any_ignored:
        # Every pixel has mass 1, so G keeps the class sums at 1 and both N() are the identity:
        # by linearity M = G * ((mean_t Z + Z(tau)) / 2), half the filtering.
        return gaussian_smooth((mean_hot + sampled_hot) / 2, sigma, truncate)
    smoothed = gaussian_smooth(torch.stack([mean_hot, sampled_hot], dim=1), sigma, truncate)
    return normalise(smoothed).mean(dim=1)


def smoothing_prior(season_labels: np.ndarray, season: int, num_classes: int,
                    sigma: float = 3.0, truncate: float = 4.0) -> np.ndarray:
    """Prior M (C x H x W, float32) of one location: season_labels T x H x W, tau = ``season``."""
    season_labels = np.asarray(season_labels)
    if season_labels.ndim != 3:
        raise ValueError(f"season labels must be T x H x W, not {season_labels.shape}")
    batch = torch.from_numpy(season_labels.astype(np.int64, copy=False))[None]
    prior = smoothing_prior_batch(batch, torch.tensor([season]), num_classes, sigma, truncate)
    return prior[0].numpy()


def reference_smoothing_prior(season_labels: np.ndarray, season: int, num_classes: int,
                              sigma: float = 3.0, truncate: float = 4.0) -> np.ndarray:
    """The same prior, literally: 2 x C calls of ``scipy.ndimage.gaussian_filter`` (float64)."""
    hot = np.stack([season_labels == c for c in range(num_classes)], axis=1).astype(np.float64)

    def smoothed(stack: np.ndarray) -> np.ndarray:
        maps = np.stack([ndimage.gaussian_filter(stack[c], sigma, mode="reflect",
                                                 truncate=truncate) for c in range(num_classes)])
        total = maps.sum(axis=0, keepdims=True)
        return np.where(total > 0, maps / np.where(total > 0, total, 1.0), 1.0 / num_classes)

    return (smoothed(hot.mean(axis=0)) + smoothed(hot[season])) / 2


def soft_labels(labels: Tensor | np.ndarray, prior: Tensor | np.ndarray, num_classes: int,
                alpha: float = 0.15, beta: float = 0.05) -> Tensor | np.ndarray:
    """Z' = (1 - a - b) Z(tau) + a M + b / C, for labels ... x H x W and prior ... x C x H x W.

    Returns the type it was given (numpy or torch); ignored pixels get a M + b / C.
    """
    if alpha < 0 or beta < 0 or alpha + beta > 1:
        raise ValueError(f"alpha and beta must be >= 0 with alpha + beta <= 1, not {alpha}, {beta}")
    as_numpy = isinstance(labels, np.ndarray)
    labels_t = torch.as_tensor(labels)
    prior_t = torch.as_tensor(prior, device=labels_t.device)
    if prior_t.shape != (*labels_t.shape[:-2], num_classes, *labels_t.shape[-2:]):
        raise ValueError(f"prior shape {tuple(prior_t.shape)} does not match labels "
                         f"{tuple(labels_t.shape)} with {num_classes} classes")
    # a M + b / C, plus (1 - a - b) scattered onto each labelled pixel's class: no one-hot stack
    target = torch.add(prior_t.to(torch.float32) * alpha, beta / num_classes)
    valid = labels_t != IGNORE_INDEX
    index = torch.where(valid, labels_t.long(), 0).unsqueeze(-3)
    target.scatter_add_(-3, index, valid.unsqueeze(-3).to(torch.float32) * (1 - alpha - beta))
    return target.numpy() if as_numpy else target
