"""Atomic writes: an output appears complete under its final name, or not at all.

Files are written to a hidden sibling ``.NAME.XXXX.partial`` and moved over the final name with
one ``os.replace``: at every instant the final name holds either the previous complete file or the
new complete one. A directory (a Zarr store) cannot be replaced in one step, so the previous
version is first renamed to ``.NAME.old``; if the process dies between the two renames, the next
writer or reader of ``NAME`` (:func:`recover`) moves ``.NAME.old`` back. Partials left by a killed
process are swept the next time the same output is written (:func:`sweep`); an error inside the
block removes its own partial.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _backup(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def partials(final: str | os.PathLike) -> list[Path]:
    """The temporary siblings that writes of ``final`` create (left behind only by a kill)."""
    final = Path(final)
    return sorted(final.parent.glob(f".{final.name}.*.partial")) if final.parent.is_dir() else []


def recover(final: str | os.PathLike) -> None:
    """Finish an interrupted directory swap: bring ``.NAME.old`` back if ``NAME`` is missing."""
    final = Path(final)
    backup = _backup(final)
    if not (backup.exists() or backup.is_symlink()):
        return
    if final.exists() or final.is_symlink():
        _remove(backup)  # the swap completed; only the cleanup was interrupted
    else:
        os.replace(backup, final)
        log.warning("%s: restored the previous complete version after an interrupted write", final)


def sweep(final: str | os.PathLike) -> None:
    """Remove the partials of ``final`` left by killed writers and finish an interrupted swap."""
    for stale in partials(final):
        log.info("removing %s, left by an interrupted write", stale)
        _remove(stale)
    recover(final)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``final`` (file or directory) and move it into place on success.

    On any exception the temporary path is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    tmp.rmdir()  # the caller decides whether it becomes a file or a directory
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{final}: nothing was written")
        exists = final.exists() or final.is_symlink()
        if exists and not overwrite:
            raise FileExistsError(f"{final} exists already")
        if exists and tmp.is_dir():
            backup = _backup(final)
            os.replace(final, backup)
            os.replace(tmp, final)
            _remove(backup)
        else:
            os.replace(tmp, final)
    finally:
        _remove(tmp)


def ensure_writable(directory: str | os.PathLike) -> Path:
    """Create ``directory`` if needed and prove a file can be written in it, before long work.

    Raises the OSError (read-only, permission, disk full) with the directory named.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test.", suffix=".partial") as probe:
        probe.write(b"\0")
        probe.flush()
    return directory
