"""A batch decoded straight into its rows (cromss.data.rows): the values zarr reads, one call per
array, the damaged chunk named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from cromss.data.rows import read_rows
from cromss.data.store import open_array, open_arrays
from helpers.stores import write_store

SELECTIONS = {"s2": [(2, 1, slice(None), slice(3, 19), slice(0, 16)), (0, 3, slice(2, 5))],
              "label": [(4,), (1,)], "truth": [(3, 2, slice(8, 24), slice(5, 21)),
                                                (0, 0, slice(0, 16), slice(16, 32))]}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return write_store(tmp_path / "nol.zarr", samples=5, size=32)


@pytest.mark.parametrize("name", ["s2", "label", "truth"])
def test_rows_hold_what_zarr_reads_whichever_pipeline_opened_the_array(store, name):
    group = open_arrays(store)
    selections = SELECTIONS[name][:1] * 2 if name == "s2" else SELECTIONS[name]
    expected = np.stack([np.asarray(group[name][s]) for s in selections])
    for array in (open_array(group, name), group[name]):  # zarrs, then zarr-python's own
        out = np.zeros_like(expected)
        read_rows(array, selections, out)
        np.testing.assert_array_equal(out, expected)


def test_every_pixel_array_decodes_in_zarrs_itself(store):
    # read_rows falls back to zarr-python where zarrs cannot decode an array's codecs (the byte
    # shuffle among them): the stores' own arrays must not need that slower path
    from cromss.data.store import PIXEL_VARS

    group = open_arrays(store)
    names = [name for name in PIXEL_VARS if name in group]
    assert len(names) == len(PIXEL_VARS)
    for name in names:
        assert getattr(open_array(group, name).async_array.codec_pipeline, "impl", None), name


def test_rows_refuse_a_selection_they_cannot_place(store):
    array = open_array(open_arrays(store), "s2")
    with pytest.raises(ValueError, match="out has shape"):
        read_rows(array, SELECTIONS["s2"][:1], np.zeros((1, 13, 16, 17), np.uint16))
    with pytest.raises(ValueError, match="rows of one shape"):
        read_rows(array, SELECTIONS["s2"], np.zeros((2, 13, 16, 16), np.uint16))
    with pytest.raises(ValueError, match="starts with its sample"):
        read_rows(array, [(slice(0, 2),)], np.zeros((1, 2, 4, 13, 32, 32), np.uint16))
    with pytest.raises(ValueError, match="C-contiguous"):
        read_rows(array, [(0, 0)], np.zeros((1, 13, 32, 64), np.uint16)[..., ::2])


def test_a_damaged_chunk_is_named_by_store_array_and_chunk(store):
    shard = store / "s2" / "c" / "0" / "0" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    index = np.frombuffer(bytes(data[-(16 * 4 * 16 + 4):-4]), "<u8").reshape(-1, 2)
    chunk = 1 * 4 + 2  # sample 1, season 2
    data[int(index[chunk, 0] + index[chunk, 1] // 2)] ^= 0x10
    shard.write_bytes(bytes(data))
    array = open_array(zarr.open_group(str(store), mode="r"), "s2")
    out = np.zeros((2, 13, 32, 32), np.uint16)
    read_rows(array, [(0, 2), (1, 1)], out)  # intact chunks of the shard read
    with pytest.raises(ValueError, match=rf"{store}: array s2, chunk c/1/2/0/0/0 .*cannot be read"):
        read_rows(array, [(0, 2), (1, 2)], out)
