"""A store written by many jobs: one partial store, created up front, that partition jobs fill.

The partial lives beside the final store ``NAME`` as ``.NAME.parts/``: ``store.zarr`` (its arrays at
their final shape, the plan in its attribute ``ingest_plan``) and ``parts/`` where each partition
records its counts once its chunks are written (``NNNNN.json``) and, while it writes, its owner
(``NNNNN.owner``: host and process id, touched after every write). A finished partition is never
written again; a partition another live process writes is refused; the store appears under
``NAME`` only when every partition finished and the whole store validated (:func:`publish`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cromss.atomic import atomic_path, naming_failures, owner_alive, write_file
from cromss.errors import CromssError

STALE_SECONDS = 15 * 60
"""An owner stamp of another host untouched this long belongs to a dead job."""


@dataclass(frozen=True)
class Plan:
    """How a store's samples are split: ``partitions`` ranges, each a whole number of shards."""

    store: str
    num_samples: int
    partitions: int
    shard_samples: int

    def __post_init__(self) -> None:
        if self.partitions < 1 or self.shard_samples < 1:
            raise CromssError(f"{self.store}: partitions ({self.partitions}) and samples per shard "
                              f"({self.shard_samples}) must be at least 1")

    def bounds(self, index: int) -> tuple[int, int]:
        """The samples ``[start, stop)`` of partition ``index`` (empty past the last sample)."""
        if not 0 <= index < self.partitions:
            raise CromssError(f"{self.store}: partition {index} not in 0..{self.partitions - 1}")
        shards = math.ceil(self.num_samples / self.shard_samples)
        size = math.ceil(shards / self.partitions) * self.shard_samples
        return min(index * size, self.num_samples), min((index + 1) * size, self.num_samples)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parts_dir(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(f".{out.name}.parts")


def store_path(out: str | os.PathLike) -> Path:
    """The partial store of ``out``."""
    return parts_dir(out) / "store.zarr"


def _marker(out: str | os.PathLike, index: int, suffix: str) -> Path:
    return parts_dir(out) / "parts" / f"{index:05d}.{suffix}"


def _plan_of(out: str | os.PathLike) -> dict[str, Any] | None:
    meta = store_path(out) / "zarr.json"
    if not meta.is_file():
        return None
    return json.loads(meta.read_text()).get("attributes", {}).get("ingest_plan")


def _live_owners(out: str | os.PathLike) -> list[str]:
    folder = parts_dir(out) / "parts"
    stamps = sorted(folder.glob("*.owner")) if folder.is_dir() else []
    return [f"{stamp.name}: {stamp.read_text().strip()}" for stamp in stamps if _owned(stamp)]


def _owned(stamp: Path) -> bool:
    try:
        owner = json.loads(stamp.read_text())
        age = time.time() - stamp.stat().st_mtime
    except (OSError, ValueError):
        return False
    return owner_alive(owner["host"], owner["pid"], age, STALE_SECONDS)


def prepare(out: str | os.PathLike, plan: Plan, create: Callable[[Path], None]) -> None:
    """Make the partial store of ``out`` for ``plan`` with ``create(path)``, unless one made for
    the same plan exists (its finished partitions are kept); one for another plan is replaced,
    unless a live process still writes into it."""
    if _plan_of(out) == plan.as_dict():
        return
    live = _live_owners(out)
    if live:
        raise RuntimeError(f"{parts_dir(out)}: partitions are being written by live processes "
                           f"({'; '.join(live)}); not replaced")
    with atomic_path(parts_dir(out)) as tmp, naming_failures(out):
        (tmp / "parts").mkdir(parents=True)
        create(tmp / "store.zarr")


def read_plan(out: str | os.PathLike, store: str, num_samples: int) -> Plan:
    """The plan of the partial store of ``out``; ValueError if there is none or it no longer
    matches the raw data (``num_samples``)."""
    found = _plan_of(out)
    if found is None:
        raise CromssError(f"{store_path(out)}: no partial store; run the ingest's init step first")
    plan = Plan(**found)
    if plan.store != store or plan.num_samples != num_samples:
        raise CromssError(f"{store_path(out)}: made for {plan.store} with {plan.num_samples} "
                          f"samples, but {store} has {num_samples} now; run the init step again")
    return plan


@contextlib.contextmanager
def claim(out: str | os.PathLike, index: int) -> Iterator[dict[str, Any] | None]:
    """Own partition ``index`` while the block writes it; yields its counts if it was finished
    before (nothing to write), else None. RuntimeError if a live process owns it."""
    done = _marker(out, index, "json")
    if done.is_file():
        yield json.loads(done.read_text())
        return
    stamp = _marker(out, index, "owner")
    if stamp.exists() and _owned(stamp):
        raise RuntimeError(f"{stamp}: partition {index} is being written by "
                           f"{stamp.read_text().strip()}; not written twice")
    stamp.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    try:
        yield None
    finally:
        stamp.unlink(missing_ok=True)


def heartbeat(out: str | os.PathLike, index: int) -> None:
    """Show that the owner of partition ``index`` is still writing."""
    _marker(out, index, "owner").touch()


def finish(out: str | os.PathLike, index: int, counts: dict[str, Any]) -> None:
    """Record partition ``index`` finished, after all its chunks were written."""
    write_file(_marker(out, index, "json"),
               lambda handle: handle.write(json.dumps(counts, sort_keys=True).encode()))


def totals(out: str | os.PathLike) -> dict[str, Any]:
    """The counts of every partition added up; ValueError naming the unfinished ones."""
    found = _plan_of(out)
    if found is None:
        raise CromssError(f"{store_path(out)}: no partial store to publish")
    plan = Plan(**found)
    markers = [_marker(out, index, "json") for index in range(plan.partitions)]
    missing = [index for index, marker in enumerate(markers) if not marker.is_file()]
    if missing:
        raise CromssError(f"{parts_dir(out)}: partitions {missing} of {plan.partitions} are not "
                          "finished; run them before publishing")
    total: dict[str, Any] = {"samples": 0, "s1_nodata_pixels": 0, "s2_nodata_pixels": 0,
                             "s2_filled_bands": set()}
    for marker in markers:
        counts = json.loads(marker.read_text())
        for key in ("samples", "s1_nodata_pixels", "s2_nodata_pixels"):
            total[key] += counts[key]
        total["s2_filled_bands"] |= set(counts["s2_filled_bands"])
    if total["samples"] != plan.num_samples:
        raise CromssError(f"{parts_dir(out)}: partitions hold {total['samples']} samples, the plan "
                          f"{plan.num_samples}")
    total["s2_filled_bands"] = sorted(total["s2_filled_bands"])
    return total


def publish(out: str | os.PathLike, check: Callable[[Path], object]) -> None:
    """Validate the partial store with ``check(path)`` and move it under ``out`` atomically
    (replacing a previous version); the partial folder is removed."""
    check(store_path(out))
    with atomic_path(out) as tmp:
        os.replace(store_path(out), tmp)
    shutil.rmtree(parts_dir(out), ignore_errors=True)


def discard(out: str | os.PathLike) -> None:
    """Remove the partial store of ``out``, unless a live process still writes into it."""
    if not _live_owners(out):
        shutil.rmtree(parts_dir(out), ignore_errors=True)
