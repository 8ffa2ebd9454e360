"""Atomic writes survive a death at any rename, sweep what killed writers left, check writability."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from cromss import atomic
from cromss.atomic import atomic_path, ensure_writable, partials, recover, sweep


class Died(BaseException):
    """Stands for the process being killed (not an Exception: nothing may catch it)."""


def die_on_rename(monkeypatch, number: int) -> None:
    """The ``number``-th ``os.replace`` of the atomic module kills the process before it happens."""
    real, count = os.replace, [0]

    def replace(src, dst):
        count[0] += 1
        if count[0] == number:
            raise Died()
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)


def test_a_file_is_replaced_by_one_rename(tmp_path, monkeypatch):
    final = tmp_path / "checkpoint.pt"
    final.write_text("old")
    renames = []
    real = os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda s, d: (renames.append(d), real(s, d)))
    with atomic_path(final) as tmp:
        tmp.write_text("new")
    assert final.read_text() == "new" and renames == [final]


def test_a_death_before_the_rename_keeps_the_previous_file(tmp_path, monkeypatch):
    final = tmp_path / "checkpoint.pt"
    final.write_text("old")
    die_on_rename(monkeypatch, 1)
    with pytest.raises(Died), atomic_path(final) as tmp:
        tmp.write_text("new")
    assert final.read_text() == "old"


@pytest.mark.parametrize("death", [1, 2])  # before either rename of the directory swap
def test_the_previous_store_survives_a_death_in_the_swap(tmp_path, monkeypatch, death):
    final = tmp_path / "nol.zarr"
    (final / "s2").mkdir(parents=True)
    (final / "zarr.json").write_text("old")
    die_on_rename(monkeypatch, death)
    with pytest.raises(Died), atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "zarr.json").write_text("new")
    monkeypatch.undo()
    recover(final)  # what the next reader or writer does first
    assert (final / "zarr.json").read_text() == "old" and (final / "s2").is_dir()
    with atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "zarr.json").write_text("new")
    assert (final / "zarr.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nol.zarr"]


def test_stale_partials_of_the_output_are_swept_others_kept(tmp_path):
    final = tmp_path / "checkpoint.pt"
    (tmp_path / ".checkpoint.pt.abc123.partial").write_bytes(b"x" * 100)
    (tmp_path / ".checkpoint.pt.def456.partial").mkdir()
    (tmp_path / ".model.pt.abc123.partial").write_bytes(b"y")
    assert len(partials(final)) == 2
    with atomic_path(final) as tmp:
        tmp.write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.pt.abc123.partial",
                                                          "checkpoint.pt"]
    sweep(tmp_path / "model.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_an_error_inside_the_block_leaves_no_partial(tmp_path):
    final = tmp_path / "store.zarr"

    def disk_full(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "chunk").write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "chunk"))

    with pytest.raises(OSError, match="No space left"), atomic_path(final) as tmp:
        disk_full(tmp)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_found_before_work(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            ensure_writable(tmp_path / "out")
    finally:
        tmp_path.chmod(0o700)


def test_ensure_writable_creates_and_leaves_nothing(tmp_path):
    assert ensure_writable(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list((tmp_path / "a" / "b").iterdir()) == []
