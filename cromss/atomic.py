"""Atomic writes: an output appears complete under its final name, or not at all.

Files are written to a hidden sibling ``.NAME.XXXX.partial`` and moved over the final name with
one ``os.replace``: at every instant the final name holds either the previous complete file or the
new complete one. A directory (a Zarr store) cannot be replaced in one step, so the previous
version is first renamed to ``.NAME.old``; if the process dies between the two renames, the next
writer or reader of ``NAME`` (:func:`recover`) moves ``.NAME.old`` back. Partials left by a killed
process are swept the next time the same output is written (:func:`sweep`), never those of a
live writer (the writer's pid and host are in the partial's name); an error inside the
block removes its own partial. A failed write (disk full, read-only) is raised as the OSError with
the final path named, whichever library wrote it (:func:`named`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)
PROBE_BYTES = 1 << 16
STALE_PARTIAL_SECONDS = 24 * 3600
"""A partial of another host's writer untouched this long is swept (its liveness is unknown)."""
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO})
"""The OS errors of a write that failed for the output's file system, not for its input."""


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


def owner_alive(host: str, pid: int, age: float, stale_after: float) -> bool:
    """Whether process ``pid`` of ``host`` may still be writing: on this host, whether it runs;
    on another, whether its work was touched within ``stale_after`` seconds (``age`` ago)."""
    if host != socket.gethostname():
        return age < stale_after
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_prefix(final: Path) -> str:
    return f".{final.name}.{os.getpid()}@{socket.gethostname()}."


def _writer_alive(partial: Path, final: Path) -> bool:
    """Whether the partial's writer (pid@host in its name) may still be writing it."""
    owner = partial.name[len(f".{final.name}."):-len(".partial")].rpartition(".")[0]
    pid, _, host = owner.partition("@")
    if not (pid.isdigit() and host):
        return False  # a partial named before writers were stamped
    try:
        age = time.time() - partial.lstat().st_mtime
    except OSError:
        return False
    return owner_alive(host, int(pid), age, STALE_PARTIAL_SECONDS)


def sweep(final: str | os.PathLike) -> None:
    """Remove the partials of ``final`` left by killed writers (a live writer's are kept) and
    finish an interrupted swap."""
    final = Path(final)
    for stale in partials(final):
        if _writer_alive(stale, final):
            log.info("keeping %s: its writer may still be running", stale)
            continue
        log.info("removing %s, left by an interrupted write", stale)
        _remove(stale)
    recover(final)


def os_error_of(err: BaseException | None) -> OSError | None:
    """The OSError behind ``err``: itself, or the one a library wrapped (torch's C++ writer turns a
    failed write into ``RuntimeError: ... unexpected pos``, with the OSError as its context)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def named(err: OSError, path: str | os.PathLike) -> OSError | None:
    """The OSError of a failed write of ``path`` (disk full, read-only, quota) behind ``err``, with
    ``path`` named when ``err`` names no file (zarr, rasterio and torch raise it without one); an
    error without an errno (GDAL's "Write failed") is told by a probe write beside ``path``.
    ``None`` when ``err`` is not such a failure (e.g. an input file that is missing)."""
    if err.filename:
        return None
    source = err if err.errno is not None else _probe(Path(path).parent)
    if source is None or source.errno not in WRITE_ERRNOS:
        return None
    return OSError(source.errno, source.strerror or str(source), str(path))


def _probe(directory: Path) -> OSError | None:
    """The OSError a small synced write in ``directory`` raises now, if any."""
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test.",
                                         suffix=".partial") as probe:
            probe.write(bytes(PROBE_BYTES))
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        return err
    return None


@contextlib.contextmanager
def naming_failures(path: str | os.PathLike) -> Iterator[None]:
    """Raise a failed write inside the block that names no file as the OSError naming ``path``."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        cause = os_error_of(err)
        if cause is None:
            raise
        better = named(cause, path)
        if better is None:
            raise
        raise better from err


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``final`` (file or directory) and move it into place on success.

    On any exception the temporary path is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep(final)
    tmp = Path(tempfile.mkdtemp(prefix=_owner_prefix(final), suffix=".partial", dir=final.parent))
    tmp.rmdir()  # the caller decides whether it becomes a file or a directory
    try:
        with naming_failures(final):
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


def write_file(final: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Write the file ``final`` atomically through ``write(handle)``, e.g.
    ``write_file(path, lambda f: torch.save(state, f))``; a failed write raises the OSError naming
    ``final`` and leaves neither a partial nor a changed ``final``."""
    with atomic_path(final) as tmp, open(tmp, "wb") as handle:
        write(handle)
    return Path(final)


def _scratch_name(final: Path) -> Path:
    return final.with_name(f"{final.name}~work")  # its partials do not match those of ``final``


@contextlib.contextmanager
def scratch_dir(final: str | os.PathLike) -> Iterator[Path]:
    """A temporary working directory beside ``final``, removed on exit.

    Named ``.NAME~work.XXXX.partial``: one left by a killed process is swept the next time a
    scratch directory for ``final`` is made, and the swap of ``final`` itself never touches it.
    """
    work = _scratch_name(Path(final))
    work.parent.mkdir(parents=True, exist_ok=True)
    sweep(work)
    path = Path(tempfile.mkdtemp(prefix=_owner_prefix(work), suffix=".partial", dir=work.parent))
    try:
        with naming_failures(final):
            yield path
    finally:
        _remove(path)


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
