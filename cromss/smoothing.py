"""Spatial-temporal label smoothing (method §5): priors from the four seasonal noisy label maps.

M = (N(G * mean_t Z(t)) + N(G * Z(tau))) / 2 with G a per-class Gaussian (sigma 3, truncated at
4 sigma, scipy ``reflect`` borders) and N the per-pixel renormalisation over classes. Ignored pixels
(255) carry no one-hot mass; a pixel with no mass in its neighbourhood gets the uniform prior 1/C.

``smoothed_targets_batch`` is the fast path: the priors and soft labels of a whole batch, the
separable Gaussian as one matrix product per axis over chunks of one-hot stacks (dense matrices,
or banded blocks for large maps), and only on each sample's training crop when asked for.
``reference_smoothing_prior`` is the equations written literally with
``scipy.ndimage.gaussian_filter``, one class and one map at a time, as the reference does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from cromss.constants import IGNORE_INDEX
from cromss.gaussian_filter import GaussianFilter


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """Z: ... x H x W labels -> ... x C x H x W float one-hot; ignored pixels are all zero."""
    classes = torch.arange(num_classes, device=labels.device).view(num_classes, 1, 1)
    return (labels.long().unsqueeze(-3) == classes).to(torch.float32)


PRIOR_KINDS = ("spatial_temporal", "spatial", "temporal")
"""M = (Mt + Ms) / 2 (the method), or the spatial prior Ms or the temporal prior Mt alone."""

PRIOR_STACKS = {"spatial_temporal": ("mean", "sampled"), "spatial": ("sampled",),
                "temporal": ("mean",)}
"""The one-hot stacks each prior filters: mean_t Z(t) and/or Z(tau)."""

CHUNK_PIXELS = 72 * 96 * 96
"""Map pixels filtered together (72 maps of 96 x 96): enough rows for efficient matrix products,
few enough to stay in the CPU cache (the fastest measured, see benchmarks/)."""


def checked_shares(alpha: float, beta: float) -> None:
    """a and b of Z' = (1 - a - b) Z(tau) + a M + b / C must be shares."""
    if alpha < 0 or beta < 0 or alpha + beta > 1:
        raise ValueError(f"alpha and beta must be >= 0 with alpha + beta <= 1, not {alpha}, {beta}")


def add_label_mass(targets: Tensor, labels: Tensor, mass: float) -> Tensor:
    """Add ``mass`` to each labelled pixel's class in ``targets`` (... x C x H x W, in place);
    labels ... x H x W, ignored pixels get nothing."""
    valid = labels != IGNORE_INDEX
    index = torch.where(valid, labels.long(), 0).unsqueeze(-3)
    return targets.scatter_add_(-3, index, valid.unsqueeze(-3).to(targets.dtype) * mass)


def complete_samples(grid: Tensor, num_classes: int) -> np.ndarray:
    """Per sample of ``grid`` (N x ...), whether it has no ignored pixel (on the CPU); raises on
    values that are neither a class nor ``IGNORE_INDEX``."""
    flat = grid.reshape(len(grid), -1)
    if flat.numel() == 0:
        return np.ones(len(grid), dtype=bool)
    low, high = flat.amin(dim=1), flat.amax(dim=1)
    complete = high < num_classes
    others = flat[~complete]
    wrong = others[(others >= num_classes) & (others != IGNORE_INDEX)]
    if bool((low < 0).any()) or wrong.numel():
        found = torch.cat([low[low < 0], wrong])
        raise ValueError(f"labels must be class indices below {num_classes} or {IGNORE_INDEX}, "
                         f"found values in [{int(found.min())}, {int(found.max())}]")
    return complete.cpu().numpy()


def class_index(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(int64 class indices with ignored pixels set to 0, float32 mass: 1 labelled, 0 ignored)."""
    valid = labels != IGNORE_INDEX
    return torch.where(valid, labels, 0).long(), valid.to(torch.float32)


def sample_chunks(members: np.ndarray, size: int) -> list[slice | np.ndarray]:
    """``members`` (sample indices) in chunks of at most ``size``: slices where contiguous."""
    chunks: list[slice | np.ndarray] = []
    for first in range(0, members.size, size):
        part = members[first:first + size]
        contiguous = part[-1] - part[0] + 1 == part.size
        chunks.append(slice(int(part[0]), int(part[-1]) + 1) if contiguous else part)
    return chunks


def smoothed_targets_batch(season_labels: Tensor | np.ndarray,
                           seasons: Tensor | np.ndarray | Sequence[int], num_classes: int, *,
                           alpha: float = 0.15, beta: float = 0.05, sigma: float = 3.0,
                           truncate: float = 4.0, prior: str = "spatial_temporal",
                           windows: np.ndarray | Sequence[tuple[int, int]] | None = None,
                           window_size: int | None = None) -> Tensor:
    """Soft targets Z' = (1 - a - b) Z(tau) + a M + b / C (float32, on the device of
    ``season_labels``: the training step's) of a batch: N x C x H x W, or N x C x S x S with
    ``windows``.

    season_labels N x T x H x W (255 = ignore), seasons N (tau of each sample). The prior is
    always that of the full maps; ``windows`` (N x 2: top, left) and ``window_size`` S return
    only each sample's training crop of it, and compute only that. Samples without ignored
    pixels filter one stack, a (mean_t Z(t) + Z(tau)) / 2 + b / C: there N() is the identity and
    G is linear and keeps constants. The others filter each stack and renormalise it.
    """
    checked_shares(alpha, beta)
    if prior not in PRIOR_KINDS:
        raise ValueError(f"smoothing prior must be one of {PRIOR_KINDS}, not {prior!r}")
    labels = (season_labels if isinstance(season_labels, Tensor)
              else torch.from_numpy(np.ascontiguousarray(season_labels)))
    device = labels.device
    if labels.ndim != 4:
        raise ValueError(f"season labels must be N x T x H x W, not {labels.shape}")
    count, num_seasons, height, width = labels.shape
    seasons = np.asarray(seasons.cpu() if isinstance(seasons, Tensor) else seasons
                         ).astype(np.int64).reshape(-1)
    if seasons.size != count:
        raise ValueError(f"{seasons.size} seasons given for {count} samples")
    if bool(((seasons < 0) | (seasons >= num_seasons)).any()):
        raise ValueError(f"seasons must lie in [0, {num_seasons})")
    corners = checked_windows(windows, window_size, count, height, width)
    out_height, out_width = (height, width)
    if corners is not None:
        assert window_size is not None  # checked_windows requires it with windows
        out_height, out_width = window_size, window_size
    filter_ = GaussianFilter(height, width, sigma, truncate)
    grid = filter_.layout(labels)
    complete = complete_samples(grid, num_classes)
    kinds = PRIOR_STACKS[prior]
    targets = torch.empty(count, num_classes, out_height, out_width, device=device)
    for separate, members in ((False, complete), (True, ~complete)):
        maps = num_classes * (len(kinds) if separate else 1) * grid.shape[-2] * grid.shape[-1]
        for rows in sample_chunks(np.flatnonzero(members), max(1, CHUNK_PIXELS // maps)):
            region = (None if corners is None else torch.from_numpy(corners[rows]), window_size)
            chunk_seasons = torch.from_numpy(seasons[rows]).to(device)
            picked = rows if isinstance(rows, slice) else torch.from_numpy(rows).to(device)
            if separate:
                part = separate_targets(*class_index(grid[picked]), chunk_seasons, num_classes,
                                        kinds, alpha, beta, filter_, region)
            else:
                part = complete_targets(grid[picked].long(), chunk_seasons,
                                        num_classes, kinds, alpha, beta, filter_, region)
            targets[picked] = part.permute(0, 2, 1, 3)
    if alpha + beta < 1:
        tau = labels[torch.arange(count, device=device), torch.from_numpy(seasons).to(device)]
        if corners is not None:
            tau = torch.stack([sample[top:top + window_size, left:left + window_size] for sample,
                               (top, left) in zip(tau, corners.tolist(), strict=True)])
        add_label_mass(targets, tau, 1 - alpha - beta)
    return targets


def checked_windows(windows: np.ndarray | Sequence[tuple[int, int]] | None,
                    size: int | None, count: int, height: int, width: int) -> np.ndarray | None:
    """The N x 2 (top, left) corners of the ``size`` windows, checked to lie in the maps."""
    if windows is None:
        if size is not None:
            raise ValueError("window_size given without windows")
        return None
    corners = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
    if size is None or size < 1 or len(corners) != count:
        raise ValueError(f"windows need a positive window_size and one (top, left) per sample, "
                         f"got {len(corners)} windows of size {size} for {count} samples")
    if ((corners < 0) | (corners + size > np.array([height, width]))).any():
        raise ValueError(f"windows of size {size} must lie inside the {height}x{width} maps")
    return corners


def season_weights(seasons: Tensor, num_seasons: int, kinds: Sequence[str],
                   share: float) -> Tensor:
    """n x T weight of each season's one-hot in the mean of the stacks ``kinds``, each ``share``."""
    weights = torch.zeros(seasons.numel(), num_seasons, device=seasons.device)
    if "mean" in kinds:
        weights += share / num_seasons
    if "sampled" in kinds:
        weights[torch.arange(seasons.numel(), device=seasons.device), seasons] += share
    return weights


Region = tuple[Tensor | None, int | None]
"""The (top, left) corners of each sample's window and its size; (None, None): the full maps."""


def complete_targets(index: Tensor, seasons: Tensor, num_classes: int, kinds: Sequence[str],
                     alpha: float, beta: float, filter_: GaussianFilter,
                     region: Region) -> Tensor:
    """a M + b / C (n x H x C x W) of samples without ignored pixels: G * (a mean of the
    stacks + b / C); index n x T x h x w."""
    count, num_seasons, rows, columns = index.shape
    hot = torch.full((count, rows, num_classes, columns), beta / num_classes,
                     device=index.device)
    weights = season_weights(seasons, num_seasons, kinds, alpha / len(kinds))
    hot.scatter_add_(2, index.transpose(1, 2),
                     weights[:, None, :, None].expand(count, rows, num_seasons, columns))
    return filter_(hot, *region)


def separate_targets(index: Tensor, mass: Tensor, seasons: Tensor, num_classes: int,
                     kinds: Sequence[str], alpha: float, beta: float, filter_: GaussianFilter,
                     region: Region) -> Tensor:
    """a M + b / C (n x H x C x W) of samples with ignored pixels: each stack filtered and
    renormalised (its scale cancels in N(), so each is built from unit masses); no mass in
    reach gives 1 / C."""
    count, _, rows, columns = index.shape
    samples = torch.arange(count, device=index.device)
    hot = torch.zeros(count, rows, len(kinds), num_classes, columns, device=index.device)
    for position, kind in enumerate(kinds):
        stack_index, stack_mass = ((index, mass) if kind == "mean" else
                                   (index[samples, seasons, None], mass[samples, seasons, None]))
        hot[:, :, position].scatter_add_(2, stack_index.transpose(1, 2),
                                         stack_mass.transpose(1, 2))
    smoothed = filter_(hot.view(count, rows, -1, columns), *region)
    smoothed = smoothed.view(count, smoothed.shape[1], len(kinds), num_classes, -1)
    total = smoothed.sum(dim=3, keepdim=True)
    share = alpha / len(kinds)
    scale = torch.where(total > 0, share / total, 0.0)
    empty = (total == 0).sum(dim=2)
    targets = empty.to(torch.float32).mul_(share / num_classes).add_(beta / num_classes)
    targets = torch.addcmul(targets, smoothed[:, :, 0], scale[:, :, 0])
    for position in range(1, len(kinds)):
        targets.addcmul_(smoothed[:, :, position], scale[:, :, position])
    return targets


def smoothing_prior_batch(season_labels: Tensor, seasons: Tensor | np.ndarray | Sequence[int],
                          num_classes: int, sigma: float = 3.0, truncate: float = 4.0,
                          prior: str = "spatial_temporal") -> Tensor:
    """Priors M (N x C x H x W): the soft targets with a = 1, b = 0."""
    return smoothed_targets_batch(season_labels, seasons, num_classes, alpha=1.0, beta=0.0,
                                  sigma=sigma, truncate=truncate, prior=prior)


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
    checked_shares(alpha, beta)
    as_numpy = isinstance(labels, np.ndarray)
    labels_t = torch.as_tensor(labels)
    prior_t = torch.as_tensor(prior, device=labels_t.device)
    if prior_t.shape != (*labels_t.shape[:-2], num_classes, *labels_t.shape[-2:]):
        raise ValueError(f"prior shape {tuple(prior_t.shape)} does not match labels "
                         f"{tuple(labels_t.shape)} with {num_classes} classes")
    # a M + b / C, plus (1 - a - b) scattered onto each labelled pixel's class: no one-hot stack
    target = torch.add(prior_t.to(torch.float32) * alpha, beta / num_classes)
    add_label_mass(target, labels_t, 1 - alpha - beta)
    return target.numpy() if as_numpy else target
