"""Single-process and ``torchrun`` (DistributedDataParallel) execution from one code path.

``torchrun --nproc_per_node N`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; without them the run is
one process. Under torchrun the process group is joined and the model wrapped in DDP even with
``--nproc_per_node 1``, so one GPU runs the same NCCL path as many. The backend is NCCL on CUDA
and gloo on CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Sampler


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    device: torch.device
    launched: bool = False
    """Started by torchrun: in a process group (and DDP) whatever the world size."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or self.launched


def setup() -> Context:
    """Join the process group if launched by ``torchrun``; pick this process's device."""
    launched = "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if (world_size > 1 or launched) and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(rank, world_size, device, launched)


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Sum a float64 tensor over all processes (identity in a single process)."""
    if ctx.distributed:
        values = values.to(ctx.device)
        dist.all_reduce(values)
    return values.cpu()


def any_process(flag: bool, ctx: Context) -> bool:
    """True on every process when ``flag`` is true on at least one."""
    if not ctx.distributed:
        return flag
    value = torch.tensor([float(flag)], device=ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def all_processes(flag: bool, ctx: Context) -> bool:
    """True on every process when ``flag`` is true on all of them."""
    return not any_process(not flag, ctx)


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


class ResumableSampler(DistributedSampler):
    """A DistributedSampler (seeded shuffle per epoch, one shard per process) that can start mid-epoch.

    ``start`` counts the items of this process's shard already consumed in the current epoch.
    """

    def __init__(self, dataset: Dataset, ctx: Context, seed: int, shuffle: bool = True):
        super().__init__(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle,
                         seed=seed, drop_last=False)
        self.start = 0

    def skip(self, batches: int, batch_size: int) -> None:
        """Start after the first ``batches`` batches of the shard. The last batch of an epoch may
        be partial (every shard has ``num_samples`` items, padded by DistributedSampler), so the
        items consumed are ``batches * batch_size`` clamped to the shard: a run stopped on that
        batch resumes with nothing left of the epoch but its end."""
        self.start = min(batches * batch_size, self.num_samples)

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


class EpochIndices(Sampler):
    """A :class:`ResumableSampler`'s indices as ``(epoch, index)`` pairs: DataLoader workers kept
    alive across epochs then draw each item for the epoch it is loaded in."""

    def __init__(self, sampler: ResumableSampler):
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.sampler.epoch, index) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)
