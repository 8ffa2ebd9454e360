"""A batch read straight from a store: each item's selection decoded by zarrs into its row of a
preallocated batch array (no array per item, no copy into the batch afterwards; measured in
benchmarks/README.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from zarrs._internal import ChunkItem  # the chunk description zarrs' own pipeline hands to Rust

from cromss.data.store import chunk_name, read_selections
from cromss.errors import CromssError

if TYPE_CHECKING:
    import zarr

Selection = tuple[int | slice, ...]


def read_rows(array: zarr.Array, selections: Sequence[Selection], out: np.ndarray) -> None:
    """``out[k] = array[selections[k]]`` for every ``k``, decoded by zarrs (``array`` from
    :func:`cromss.data.store.open_array`) straight into ``out`` (C-contiguous).

    Each selection is basic: its first entry the sample (an int), then ints and slices of step 1
    (the axes it leaves out taken whole), all within one file of the array (a shard, or a chunk
    of an unsharded store). A chunk that cannot be read raises CromssError naming store, array
    and chunk, as :func:`read_selections` does.
    """
    if not out.flags.c_contiguous:
        raise ValueError("read_rows writes into a C-contiguous array")
    files = array.shards or array.chunks
    bounds = [_bounds(array, selection) for selection in selections]
    row = [stop - start for axis, (start, stop) in enumerate(bounds[0])
           if axis and not isinstance(_entry(selections[0], axis), (int, np.integer))]
    if any([b - a for a, b in ranges] != [b - a for a, b in bounds[0]] for ranges in bounds):
        raise ValueError("read_rows reads rows of one shape")
    if out.shape != (len(selections), *row):
        raise ValueError(f"out has shape {out.shape}, the selections give {(len(selections), *row)}")
    view = out.reshape(len(selections), *[stop - start for start, stop in bounds[0][1:]])
    pipeline = getattr(array.async_array.codec_pipeline, "impl", None)
    if pipeline is None:  # not opened by open_array, or a layout zarrs cannot decode
        for k, value in enumerate(read_selections([(array, s) for s in selections])):
            out[k] = value
        return
    items = [_chunk_item(array, files, k, ranges, view.shape) for k, ranges in enumerate(bounds)]
    try:
        # one item a call: zarrs spreads several over rayon's global pool, whose threads a
        # forked DataLoader worker lacks (the call would wait forever); one runs on this thread
        for item in items:
            pipeline.retrieve_chunks_and_apply_index([item], view)
    except Exception as err:  # zarrs names only the file: find the chunk as zarr reads it
        read_selections([(array, selection) for selection in selections])
        raise CromssError(f"{chunk_name(array, selections[0])}: cannot be read ({err}); the "
                          "store is damaged, ingest it again") from err


def _bounds(array: zarr.Array, selection: Selection) -> list[tuple[int, int]]:
    """(start, stop) on every axis of ``array`` (an int ``i``: ``(i, i + 1)``)."""
    if not selection or not isinstance(selection[0], (int, np.integer)):
        raise ValueError(f"a row's selection starts with its sample (an int), not {selection}")
    bounds = []
    for axis, size in enumerate(array.shape):
        entry = _entry(selection, axis)
        if isinstance(entry, slice):
            start, stop, step = entry.indices(size)
            if step != 1:
                raise ValueError(f"slices of step 1 only, not {entry}")
            bounds.append((start, stop))
        else:
            bounds.append((int(entry) % size, int(entry) % size + 1))
    return bounds


def _entry(selection: Selection, axis: int) -> int | slice:
    """The selection's entry on ``axis`` (an axis it leaves out: all of it)."""
    return selection[axis] if axis < len(selection) else slice(None)


def _chunk_item(array: zarr.Array, files: tuple[int, ...], row: int,
                bounds: Sequence[tuple[int, int]], shape: tuple[int, ...]) -> ChunkItem:
    """The description zarrs reads row ``row`` of the batch ``shape`` by: its file (a shard, or
    a chunk), the part of it, and where that goes in the batch."""
    coords = tuple(start // size for (start, _), size in zip(bounds, files))
    if any((stop - 1) // size != c for (_, stop), size, c in zip(bounds, files, coords)):
        raise ValueError(f"{chunk_name(array, tuple(slice(*b) for b in bounds))}: a row is read "
                         "from one file of the array")
    key = (array.async_array.store_path / array.metadata.encode_chunk_key(coords)).path
    return ChunkItem(key, [slice(start - c * size, stop - c * size)
                           for (start, stop), size, c in zip(bounds, files, coords)],
                     list(files), [slice(row, row + 1),
                                   *[slice(0, stop - start) for start, stop in bounds[1:]]],
                     list(shape))
