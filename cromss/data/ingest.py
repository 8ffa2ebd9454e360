"""Raw layouts -> Zarr stores (:mod:`cromss.data.store`), validating every file on the way.

Samples are streamed in batches, so the size of a dataset is bounded by disk, not memory; the store
appears under its final name only when every sample was read and checked.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cromss.constants import (DFC_CLASSES, DFC_COLORS, DFC_REMAP, DW_CLASSES, DW_COLORS,
                              DW_EXPERT_REMAP, IGNORE_INDEX, NOISY_DW_REMAP, OSM_CLASSES,
                              OSM_COLORS, OSM_REMAP)
from cromss.data import layouts
from cromss.data.layouts import Roots, dfc2020, noldo
from cromss.atomic import naming_failures
from cromss.data import partitioned
from cromss.data.store import (SHARD_SAMPLES, create_store, make_batch, store_attrs,
                                 open_arrays, update_attrs, write_region)
from cromss.errors import CromssError

if TYPE_CHECKING:
    import xarray as xr

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreSpec:
    """What one store holds: its dataset, split, classes, raw codes and their remap."""

    dataset: str
    split: str
    classes: tuple[str, ...]
    colors: tuple[str, ...]
    remap: dict[int, int]
    codes: tuple[int, ...]  # every raw label code the source may hold


STORES = {
    "nol": StoreSpec("ssl4eo_s12_nol", "pretrain", DW_CLASSES, DW_COLORS, NOISY_DW_REMAP,
                     tuple(range(9))),
    **{f"dw_{s}": StoreSpec("ssl4eo_s12_dw", s, DW_CLASSES, DW_COLORS, DW_EXPERT_REMAP,
                            tuple(range(11))) for s in ("train", "test")},
    **{f"osm_{s}": StoreSpec("ssl4eo_s12_osm", s, OSM_CLASSES, OSM_COLORS, OSM_REMAP,
                             tuple(range(14))) for s in ("train", "test")},
    **{f"dfc2020_{s}": StoreSpec("dfc2020", s, DFC_CLASSES, DFC_COLORS, DFC_REMAP,
                                 tuple(range(11))) for s in ("train", "test")},
}


def remap_labels(raw: np.ndarray, remap: dict[int, int]) -> np.ndarray:
    """Raw codes -> class indices through a lookup table; unlisted codes become IGNORE_INDEX."""
    table = np.full(256, IGNORE_INDEX, np.uint8)
    for code, index in remap.items():
        table[code] = index
    return table[raw.astype(np.uint8)]


def samples_of(store: str, roots: Roots) -> tuple[int, Iterator[Callable[[], layouts.Sample]]]:
    """The number of samples of ``store`` in the raw trees and a reader for each."""
    if store == "nol":
        return noldo.iter_nol(roots.ssl4eo_s12, roots.noldo, roots.truth)
    task, split = store.rsplit("_", 1)
    if task in ("dw", "osm"):
        return noldo.iter_tiles(roots.noldo / f"ssl4eo_s12_{task}" / store, task)
    return dfc2020.iter_dfc(roots.dfc2020, "validation" if split == "train" else "test")


def _worker_environment() -> None:
    """A reading process keeps one GDAL environment for its lifetime."""
    import rasterio

    global _WORKER_ENV  # entered once per worker process, left at its exit
    _WORKER_ENV = rasterio.Env()
    _WORKER_ENV.__enter__()


_WORKER_ENV = None


def read_samples(readers: Iterator[Callable[[], layouts.Sample]], workers: int = 1
                 ) -> Iterator[layouts.Sample]:
    """The samples of ``readers`` in order, read by ``workers`` processes (forked before any
    thread starts; at most two samples per worker read ahead)."""
    if workers <= 1:
        yield from (reader() for reader in readers)
        return
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_environment)
    pending: deque = deque()
    try:
        for reader in readers:
            pending.append(pool.submit(reader))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _checked(sample: layouts.Sample, spec: StoreSpec) -> layouts.Sample:
    for season, path in enumerate(sample.label_paths):
        layouts.check_codes(sample.label[season], spec.codes, path)
        if sample.truth is not None:
            layouts.check_codes(sample.truth[season], spec.codes, path)
    return sample


Buffers = dict[str, np.ndarray]
"""Batch arrays by name, kept from one batch to the next (see :func:`_stack`)."""


def _stack(arrays: list[np.ndarray], buffers: Buffers | None, name: str) -> np.ndarray:
    """``np.stack(arrays)``, into ``buffers[name]`` when given (made at the first batch, then
    reused: a fresh array of a whole batch costs more to fault in than to fill)."""
    if buffers is None:
        return np.stack(arrays)
    shape, dtype = (len(arrays), *arrays[0].shape), np.result_type(*arrays)
    buffer = buffers.get(name)
    if buffer is None or buffer.shape[1:] != shape[1:] or len(buffer) < len(arrays) or (
            buffer.dtype != dtype):
        buffer = buffers[name] = np.empty(shape, dtype)
    return np.stack(arrays, out=buffer[:len(arrays)])


def _batch(samples: list[layouts.Sample], spec: StoreSpec, buffers: Buffers | None = None
           ) -> xr.Dataset:
    """The store batch of ``samples``, its images stacked into ``buffers`` when given (which
    must then not be in use: the writer thread writes from the batch before)."""
    truth = [s.truth for s in samples]
    if any(t is None for t in truth) and not all(t is None for t in truth):
        raise CromssError(f"truth maps exist for some samples only ({samples[0].sample_id}...)")
    return make_batch(
        s1=_stack([s.s1 for s in samples], buffers, "s1"),
        s2=_stack([s.s2 for s in samples], buffers, "s2"),
        label=remap_labels(np.stack([s.label for s in samples]), spec.remap),
        truth=None if truth[0] is None else remap_labels(
            np.stack([t for t in truth if t is not None]), spec.remap),
        sample_id=[s.sample_id for s in samples],
        crs=[s.grid.epsg for s in samples],
        transform=np.array([s.grid.transform for s in samples]),
        time=np.stack([s.time for s in samples]),
    )


def _chunks(items: Iterator[layouts.Sample], size: int) -> Iterator[list[layouts.Sample]]:
    chunk: list[layouts.Sample] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _attrs(store: str, roots: Roots) -> dict[str, Any]:
    spec = STORES[store]
    source = {"nol": [roots.ssl4eo_s12, roots.noldo]}.get(
        store, [roots.dfc2020 if store.startswith("dfc") else roots.noldo])
    attrs = store_attrs(dataset=spec.dataset, split=spec.split, classes=spec.classes,
                        colors=spec.colors, label_remap=spec.remap,
                        source=", ".join(str(p) for p in source))
    attrs.update(s1_nodata_pixels=0, s2_nodata_pixels=0, s2_filled_bands=[])
    return attrs


def _samples(store: str, roots: Roots) -> tuple[int, Iterator[Callable[[], layouts.Sample]]]:
    if store not in STORES:
        raise CromssError(f"unknown store {store!r}; known: {', '.join(STORES)}")
    total, readers = samples_of(store, roots)
    if total == 0:
        raise FileNotFoundError(f"{roots.noldo.parent}: no samples of {store} found")
    return total, readers


def init_ingest(store: str, roots: Roots, out: str | os.PathLike, partitions: int = 1,
                shard_samples: int = SHARD_SAMPLES) -> partitioned.Plan:
    """Create the partial store of ``out`` with its arrays at their final shape (from the first
    sample's shapes), or keep the one a previous run made for the same plan."""
    total, readers = _samples(store, roots)
    plan = partitioned.Plan(store, total, partitions, shard_samples)
    spec = STORES[store]

    def create(path: Path) -> None:
        import rasterio

        with rasterio.Env():
            template = _batch([_checked(next(readers)(), spec)], spec)
        create_store(path, template, total, {**_attrs(store, roots), "ingest_plan": plan.as_dict()},
                     shard_samples)

    partitioned.prepare(out, plan, create)
    return plan


def ingest_partition(store: str, roots: Roots, out: str | os.PathLike, index: int,
                     workers: int = 1) -> dict[str, Any]:
    """Write partition ``index`` of the partial store of ``out`` (made by :func:`init_ingest`) and
    record its completion; a finished partition is not written again. Returns its counts."""
    total, readers = _samples(store, roots)
    plan = partitioned.read_plan(out, store, total)
    start, stop = plan.bounds(index)
    spec = STORES[store]
    with partitioned.claim(out, index) as done:
        if done is not None:
            log.info("%s: partition %d was finished before; not written again", store, index)
            return done
        import rasterio

        counts: dict[str, Any] = {"samples": 0, "s1_nodata_pixels": 0, "s2_nodata_pixels": 0,
                                  "s2_filled_bands": []}
        # one GDAL environment for all files (rasterio otherwise sets one up per open and warp)
        samples = read_samples(itertools.islice(readers, start, stop), workers)
        # a shard is compressed and written in a thread while the next is read; the thread starts
        # at the first write, after the reading processes forked
        with (naming_failures(out), rasterio.Env(),
              ThreadPoolExecutor(1, thread_name_prefix="store-writer") as writer):
            pending: Future | None = None
            buffers: tuple[Buffers, Buffers] = ({}, {})  # one written, the other filled
            for number, chunk in enumerate(_chunks((_checked(sample, spec) for sample in samples),
                                                   plan.shard_samples)):
                batch = _batch(chunk, spec, buffers[number % 2])
                if pending is not None:
                    pending.result()
                pending = writer.submit(write_region, partitioned.store_path(out), batch,
                                        start + counts["samples"])
                counts["samples"] += len(chunk)
                partitioned.heartbeat(out, index)
                counts["s1_nodata_pixels"] += int(batch["s1_nodata"].sum())
                counts["s2_nodata_pixels"] += int(batch["s2_nodata"].sum())
                counts["s2_filled_bands"] = sorted(set(counts["s2_filled_bands"]).union(
                    *(sample.s2_filled for sample in chunk)))
                log.info("%s: partition %d: %d / %d samples", store, index, counts["samples"],
                         stop - start)
            if pending is not None:
                pending.result()
        partitioned.finish(out, index, counts)
    return counts


def publish_ingest(store: str, out: str | os.PathLike) -> dict[str, Any]:
    """Check every partition finished, total their counts into the store's attributes, validate
    the whole store and move it under its final name ``out`` atomically. Returns the counts."""
    counts = partitioned.totals(out)
    update_attrs(partitioned.store_path(out), {key: counts[key] for key in (
        "s1_nodata_pixels", "s2_nodata_pixels", "s2_filled_bands")}, drop=("ingest_plan",))
    partitioned.publish(out, open_arrays)
    _warn(store, counts)
    return counts


def ingest(store: str, raw: str | os.PathLike | Roots, out: str | os.PathLike,
           workers: int = 1, partitions: int = 1, shard_samples: int = SHARD_SAMPLES
           ) -> dict[str, Any]:
    """Read the raw layout of ``store`` and write the Zarr store ``out`` atomically, in one process:
    :func:`init_ingest`, every :func:`ingest_partition`, :func:`publish_ingest` (a cluster runs
    the partitions as separate jobs; the store is the same, bit for bit).

    ``raw`` is one root holding ``ssl4eo_s12/``, ``noldo/`` and ``dfc2020/`` or the
    :class:`~cromss.data.layouts.Roots` of trees elsewhere (read in place). Returns counts:
    samples written and S1 pixels without data, which are filled, flagged in ``s1_nodata`` and
    counted in the store attribute ``s1_nodata_pixels``. S2 bands a source lacks (B10 of the
    @DW/@OSM tiles) are filled with the band mean and listed in ``s2_filled_bands``. ``workers``
    processes read the files while this one writes. A run killed before the end resumes from
    its finished partitions.
    """
    roots = raw if isinstance(raw, Roots) else Roots.under(raw)
    try:
        plan = init_ingest(store, roots, out, partitions, shard_samples)
        for index in range(plan.partitions):
            ingest_partition(store, roots, out, index, workers)
        return publish_ingest(store, out)
    except Exception:
        partitioned.discard(out)  # bad input: no partial output (a killed run resumes instead)
        raise


def _warn(store: str, counts: dict[str, Any]) -> None:
    if counts["s1_nodata_pixels"]:
        log.warning("%s: %d S1 pixels without data were filled with the band mean and flagged "
                    "in s1_nodata", store, counts["s1_nodata_pixels"])
    if counts["s2_nodata_pixels"]:
        log.warning("%s: %d S2 pixels without data (NaN) were stored as 0, flagged in s2_nodata "
                    "and their labels are ignored in training", store, counts["s2_nodata_pixels"])
    if counts["s2_filled_bands"]:
        log.warning("%s: S2 bands %s are not in the source files; they hold the band mean (0 after "
                    "normalisation), listed in the store attribute s2_filled_bands", store,
                    counts["s2_filled_bands"])
