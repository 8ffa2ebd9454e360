"""The separable Gaussian of the smoothing priors (method §5) as matrix products: scipy's
``gaussian_filter`` kernel (truncated at ``truncate`` sigma, ``reflect`` borders) along each axis
of a stack of maps, with dense filter matrices for small maps and banded blocks for large ones."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor


def gaussian_kernel(sigma: float, truncate: float) -> Tensor:
    """The normalised 1-D kernel of ``scipy.ndimage.gaussian_filter1d`` (radius int(t s + 0.5))."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, not {sigma}")
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def reflect_indices(size: int, radius: int, after: int | None = None) -> Tensor:
    """Source index of each position of an axis padded in scipy's ``reflect`` mode by ``radius``
    before it and ``after`` (default ``radius``) after it."""
    positions = torch.arange(-radius, size + (radius if after is None else after)) % (2 * size)
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


@functools.lru_cache(maxsize=16)
def filter_matrices(height: int, width: int, sigma: float, truncate: float,
                    device: torch.device) -> tuple[Tensor, Tensor]:
    """float32 on ``device``: the H x H matrix that filters along y and the W x W one along x."""
    return (smoothing_matrix(height, sigma, truncate).float().to(device),
            smoothing_matrix(width, sigma, truncate).float().to(device))


BANDED_FROM = 160
"""Maps at least this large on both sides are filtered in bands (measured: 2.7x faster than the
dense matrices at 264 x 264, no faster at 128 and below; see benchmarks/)."""


def band_length(size: int, radius: int) -> int:
    """Length of an axis laid out for the banded filter: padded by ``radius`` on the left and out
    to a whole number of blocks of 2 ``radius``, one more than the axis needs."""
    block = 2 * radius
    return (-(-size // block) + 1) * block


@functools.lru_cache(maxsize=16)
def block_kernel(sigma: float, truncate: float, device: torch.device) -> Tensor:
    """B x 2B float32 weights on ``device`` (B = 2 radius) mapping one block of padded input onto the outputs
    of its own block (left half) and of the block before it (right half)."""
    kernel = gaussian_kernel(sigma, truncate)
    block = kernel.numel() - 1
    offsets = torch.arange(block).unsqueeze(1) - torch.arange(block).unsqueeze(0)  # p - i
    same = torch.where(offsets >= 0, kernel[offsets.clamp(min=0)], 0.0)
    previous = torch.where(offsets <= 0, kernel[(block + offsets).clamp(max=block)], 0.0)
    return torch.cat([same, previous], dim=1).float().to(device)


def banded_along_last(maps: Tensor, kernel: Tensor) -> Tensor:
    """G along the last axis (laid out by ``GaussianFilter.layout``, w long) of ``maps``: ... x (w - B).
    One small matrix product per block pair instead of a dense w x w one."""
    block = kernel.shape[0]
    *lead, columns = maps.shape
    across = (maps.reshape(-1, block) @ kernel).view(-1, columns // block, 2 * block)
    return (across[:, :-1, :block] + across[:, 1:, block:]).view(*lead, columns - block)


def banded_along_rows(maps: Tensor, kernel: Tensor) -> Tensor:
    """G along axis 1 (laid out by ``GaussianFilter.layout``, h long) of n x h x X maps: n x (h - B) x X.
    Output block j is one product of B x 2B weights with input rows [jB, jB + 2B), read in place
    as overlapping windows: no copy, and no partial sums to add."""
    block = kernel.shape[0]
    weights = torch.cat([kernel[:, :block], kernel[:, block:]]).T  # own block, then the next
    maps = maps.contiguous()
    count, rows, rest = maps.shape
    blocks = rows // block - 1
    out = torch.empty(count, blocks * block, rest, device=maps.device)
    for sample in range(count):
        windows = maps[sample].as_strided((blocks, 2 * block, rest), (block * rest, rest, 1))
        torch.matmul(weights, windows, out=out[sample].view(blocks, block, rest))
    return out


@dataclass(frozen=True)
class GaussianFilter:
    """G on H x W maps, as scipy's ``gaussian_filter`` with ``mode='reflect'``: dense matrices per
    axis, or banded blocks for maps at least ``BANDED_FROM`` on both sides.

    Maps come as stacks n x h x K x w (K maps per sample, rows outermost, so that filtering along
    y is one matrix product per sample over all K maps), laid out on the filter's grid by
    ``layout``. The result is n x H x K x W, or only each sample's window of side ``size``.
    """

    height: int
    width: int
    sigma: float = 3.0
    truncate: float = 4.0

    @property
    def radius(self) -> int:
        return int(self.truncate * self.sigma + 0.5)

    @property
    def banded(self) -> bool:
        return min(self.height, self.width) >= BANDED_FROM and self.radius > 0

    def layout(self, maps: Tensor) -> Tensor:
        """``maps`` (... x H x W) on the filter's grid: unchanged, or reflect-padded to whole
        blocks on both axes for the banded filter."""
        if not self.banded:
            return maps
        for axis, size in ((-2, self.height), (-1, self.width)):
            after = band_length(size, self.radius) - size - self.radius
            if max(self.radius, after) <= size:  # the edges mirrored (scipy's reflect): fast
                maps = torch.cat([maps.narrow(axis, 0, self.radius).flip(axis), maps,
                                  maps.narrow(axis, size - after, after).flip(axis)], dim=axis)
            else:  # pads wider than the map, reflected again and again
                maps = maps.index_select(axis, reflect_indices(size, self.radius, after).to(
                    maps.device))
        return maps

    def __call__(self, stacks: Tensor, windows: Tensor | None = None,
                 size: int | None = None) -> Tensor:
        """G of n x h x K x w ``stacks``; ``windows`` (n x 2: top, left) keeps only the size x size
        window of each sample, which dense matrices compute alone (the rows of the window)."""
        count, rows, maps, columns = stacks.shape
        if self.banded:
            kernel = block_kernel(self.sigma, self.truncate, stacks.device)
            down = banded_along_rows(stacks.reshape(count, rows, maps * columns), kernel)
            smoothed = banded_along_last(down.view(count, -1, maps, columns), kernel)
            smoothed = smoothed[:, :self.height, :, :self.width]
            if windows is None:
                return smoothed
            corners = windows.tolist()
            if all(corner == corners[0] for corner in corners):  # one window: a view
                (top, left), *_ = corners
                return smoothed[:, top:top + size, :, left:left + size]
            return torch.stack([smoothed[i, top:top + size, :, left:left + size]
                                for i, (top, left) in enumerate(corners)])
        along_h, along_w = filter_matrices(self.height, self.width, self.sigma, self.truncate,
                                           stacks.device)
        flat = stacks.reshape(count, rows, maps * columns)
        if windows is None:
            down = torch.matmul(along_h, flat)
            return (down.view(-1, columns) @ along_w.T).view(count, rows, maps, columns)
        assert size is not None, "windows need their size"
        span = torch.arange(size, device=stacks.device)
        windows = windows.to(stacks.device)
        down = torch.bmm(along_h[windows[:, :1] + span], flat)
        across = torch.bmm(down.view(count, size * maps, columns),
                           along_w[windows[:, 1:] + span].transpose(1, 2))
        return across.view(count, size, maps, size)
