"""Safe unpacking of zip and tar archives (also tar streams split into parts) into a final folder.

Every member is checked at its final (renamed) place before it is written: absolute names, ``..``
components and links that point outside the target, with the links already unpacked resolved, are
refused with ValueError (tar goes through the standard library's ``tarfile.data_filter``).
Extraction happens in a temporary sibling that is renamed into place, so an interrupted unpack
leaves nothing under the final name.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

from cromss.atomic import atomic_path
from cromss.errors import CromssError

Rename = Callable[[str], str | None]
"""Maps an archive member name to its relative output name, or ``None`` to skip the member."""


def checked_member_name(archive: Path, name: str) -> PurePosixPath:
    """``name`` as a relative path inside the target, or ValueError when it would escape it."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and ":" in path.parts[0]) or ".." in path.parts:
        raise CromssError(f"{archive}: member {name!r} would be written outside the target folder; "
                          "refusing to unpack this archive")
    return path


class ConcatenatedFiles(io.RawIOBase):
    """Read several files (``x.tar.gz.partaa``, ``partab``, ...) as one stream, without joining them."""

    def __init__(self, paths: Iterable[Path]):
        super().__init__()
        self._pending = list(paths)
        self._current: io.BufferedReader | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001 - memoryview from io
        while True:
            if self._current is None:
                if not self._pending:
                    return 0
                self._current = open(self._pending.pop(0), "rb")  # noqa: SIM115 - closed at its end
            count = self._current.readinto(buffer)
            if count:
                return count
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
        super().close()


def _zip_is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def extract_zip(archive: Path, into: Path, rename: Rename | None = None) -> int:
    """Unpack the members of a zip file into ``into``; return the number of files written."""
    written = 0
    with zipfile.ZipFile(archive) as bundle:
        for info in bundle.infolist():
            checked_member_name(archive, info.filename)
            if _zip_is_symlink(info):
                raise CromssError(f"{archive}: member {info.filename!r} is a symbolic link; refusing "
                                  "to unpack this archive")
            name = rename(info.filename) if rename else info.filename
            if name is None or info.is_dir():
                continue
            destination = into / checked_member_name(archive, name)
            destination.parent.mkdir(parents=True, exist_ok=True)
            with bundle.open(info) as source, open(destination, "wb") as sink:
                while block := source.read(1 << 20):
                    sink.write(block)
            written += 1
    return written


def extract_tar(stream: io.IOBase | Path, into: Path, rename: Rename | None = None, *,
                label: str | Path = "archive") -> int:
    """Unpack a (possibly gzip-compressed) tar stream into ``into``; return the number of members."""
    written = 0

    def accept(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        nonlocal written
        checked_member_name(Path(label), member.name)
        name = rename(member.name) if rename else member.name
        if name is None:
            return None
        member = member.replace(name=str(checked_member_name(Path(label), name)), deep=False)
        if member.islnk():  # a hard link names its target by archive name: rename it too
            target = rename(member.linkname) if rename else member.linkname
            if target is None:
                raise ValueError(f"{label}: member {name!r} links to {member.linkname!r}, which is "
                                 "not unpacked; refusing to unpack this archive")
            linkname = str(checked_member_name(Path(label), target))
            member = member.replace(linkname=linkname, deep=False)
        try:  # checked at its final place, with the links already on disk resolved
            member = tarfile.data_filter(member, dest)
        except tarfile.FilterError as err:
            raise ValueError(f"{label}: member {name!r}: {err}; refusing to unpack this "
                             "archive") from err
        written += 1
        return member

    if isinstance(stream, Path):
        with tarfile.open(stream, mode="r:*") as bundle:
            bundle.extractall(into, filter=accept)
    else:
        with tarfile.open(fileobj=stream, mode="r|*") as bundle:
            bundle.extractall(into, filter=accept)
    return written


def _hoist(folder: Path, name: str) -> None:
    """When ``folder`` holds only ``folder/name/``, move that folder's content one level up."""
    entries = list(folder.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and entries[0].name == name:
        inner = folder.with_name(folder.name + ".hoist")
        os.replace(entries[0], inner)
        folder.rmdir()
        os.replace(inner, folder)


def unpack(archive: Path, final: Path, rename: Rename | None = None) -> Path:
    """Unpack a zip or tar file into ``final`` atomically; a top folder named like ``final`` is dropped.

    An existing ``final`` is taken as a finished unpack and left alone.
    """
    if final.exists():
        return final
    with atomic_path(final) as tmp:
        tmp.mkdir()
        if zipfile.is_zipfile(archive):
            count = extract_zip(archive, tmp, rename)
        elif tarfile.is_tarfile(archive):
            count = extract_tar(archive, tmp, rename, label=archive)
        else:
            raise CromssError(f"{archive}: neither a zip nor a tar file")
        if count == 0:
            raise CromssError(f"{archive}: no member was selected for unpacking")
        _hoist(tmp, final.name)
    return final


def unpack_parts(parts: list[Path], final: Path, rename: Rename | None = None) -> Path:
    """Unpack a tar(.gz) split into ``parts`` (in order) into ``final`` atomically, streaming."""
    if final.exists():
        return final
    with atomic_path(final) as tmp:
        tmp.mkdir()
        with io.BufferedReader(ConcatenatedFiles(parts), buffer_size=1 << 20) as stream:
            count = extract_tar(stream, tmp, rename, label=parts[0].name.rsplit(".part", 1)[0])
        if count == 0:
            raise CromssError(f"{parts[0]}...: no member was selected for unpacking")
        _hoist(tmp, final.name)
    return final
