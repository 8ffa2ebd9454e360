"""Downloads and archives against a loopback server: resume, retry, checksums, 404, malicious archives."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from cromss.sources.archives import unpack, unpack_parts
from cromss.sources.ssl4eo import location_rename
from cromss.sources.http import Expected, RetryPolicy, download, part_path
from helpers.loopback import LoopbackServer

FAST = RetryPolicy(attempts=4, backoff_s=0.01, timeout_s=5)
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, not repetitive within a block


@pytest.fixture()
def served(tmp_path: Path):
    root = tmp_path / "remote"
    root.mkdir()
    (root / "blob.bin").write_bytes(PAYLOAD)
    with LoopbackServer(root) as server:
        yield server


def test_dropped_connection_resumes_with_range(served: LoopbackServer, tmp_path: Path) -> None:
    served.drop_after["/blob.bin"] = 300_000
    target = tmp_path / "local" / "blob.bin"
    expected = Expected(size=len(PAYLOAD), md5=hashlib.md5(PAYLOAD).hexdigest())
    download(f"{served.url}/blob.bin", target, expected, policy=FAST, progress=False)
    assert target.read_bytes() == PAYLOAD
    assert not part_path(target).exists()
    ranges = [r for method, path, r in served.requests if path == "/blob.bin"]
    assert ranges[0] is None and len(ranges) == 2
    resumed_from = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_from <= 300_000  # what reached the .part before the drop
    recorded = json.loads((target.parent / "checksums.json").read_text())["blob.bin"]
    assert recorded == {"size": len(PAYLOAD), "sha256": hashlib.sha256(PAYLOAD).hexdigest()}


def test_transient_5xx_is_retried(served: LoopbackServer, tmp_path: Path) -> None:
    served.fail_first["/blob.bin"] = 2
    target = download(f"{served.url}/blob.bin", tmp_path / "b.bin", policy=FAST, progress=False)
    assert target.read_bytes() == PAYLOAD
    assert len(served.requests) == 3


def test_retries_exhausted_keeps_part_for_resume(served: LoopbackServer, tmp_path: Path) -> None:
    served.fail_first["/blob.bin"] = 10
    with pytest.raises(Exception, match="giving up after 4 attempts"):
        download(f"{served.url}/blob.bin", tmp_path / "b.bin", policy=FAST, progress=False)
    assert not (tmp_path / "b.bin").exists()


def test_checksum_mismatch_removes_file(served: LoopbackServer, tmp_path: Path) -> None:
    target = tmp_path / "blob.bin"
    with pytest.raises(ValueError, match=r"md5 .* does not match the expected 0{32}"):
        download(f"{served.url}/blob.bin", target, Expected(md5="0" * 32), policy=FAST, progress=False)
    assert not target.exists() and not part_path(target).exists()


def test_recorded_checksum_guards_later_downloads(served: LoopbackServer, tmp_path: Path) -> None:
    target = tmp_path / "blob.bin"
    download(f"{served.url}/blob.bin", target, policy=FAST, progress=False)
    target.unlink()
    (served.root / "blob.bin").write_bytes(PAYLOAD[::-1])
    with pytest.raises(ValueError, match="differ from those recorded"):
        download(f"{served.url}/blob.bin", target, policy=FAST, progress=False)
    assert not target.exists()


def test_404_names_the_url(served: LoopbackServer, tmp_path: Path) -> None:
    url = f"{served.url}/missing.zip"
    with pytest.raises(FileNotFoundError, match=rf"{url}: not found .*HTTP 404"):
        download(url, tmp_path / "missing.zip", policy=FAST, progress=False)
    assert not any(tmp_path.glob("missing.zip*"))


def _tar_with(member: tarfile.TarInfo, path: Path, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as bundle:
        ok = tarfile.TarInfo("top/ok.txt")
        ok.size = 2
        bundle.addfile(ok, io.BytesIO(b"ok"))
        member.size = len(data)
        bundle.addfile(member, io.BytesIO(data) if data else None)
    return path


def test_zip_with_parent_reference_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("top/ok.txt", "ok")
        bundle.writestr("top/../../escaped.txt", "x")
    with pytest.raises(ValueError, match=r"escaped.txt.* outside the target folder"):
        unpack(archive, tmp_path / "out" / "top")
    assert not (tmp_path / "out" / "top").exists() and not (tmp_path / "escaped.txt").exists()


def test_tar_with_absolute_path_is_refused(tmp_path: Path) -> None:
    archive = _tar_with(tarfile.TarInfo(str(tmp_path / "abs.txt")), tmp_path / "abs.tar.gz", b"x")
    with pytest.raises(ValueError, match="outside the target folder"):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "abs.txt").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_tar_link_escaping_is_refused(tmp_path: Path, kind: bytes) -> None:
    link = tarfile.TarInfo("top/link")
    link.type = kind
    link.linkname = "../../../etc/passwd" if kind == tarfile.SYMTYPE else "/etc/passwd"
    archive = _tar_with(link, tmp_path / "link.tar.gz")
    with pytest.raises(ValueError, match="refusing to unpack"):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _tar_of(path: Path, members: list[tuple[str, bytes, str | None, bytes]]) -> Path:
    """A tar.gz of (name, type, linkname, data) members, in order."""
    with tarfile.open(path, "w:gz") as bundle:
        for name, kind, linkname, data in members:
            info = tarfile.TarInfo(name)
            info.type, info.size = kind, len(data)
            if linkname is not None:
                info.linkname = linkname
            bundle.addfile(info, io.BytesIO(data) if data else None)
    return path


@pytest.mark.parametrize("split", [False, True])
def test_link_inside_before_the_rename_but_outside_after_is_refused(tmp_path: Path,
                                                                     split: bool) -> None:
    """``wrap/0000001/up -> ../..`` stays inside as archived; as ``0000001/up`` it leaves."""
    archive = _tar_of(tmp_path / "s1.tar.gz", [
        ("wrap/0000001", tarfile.DIRTYPE, None, b""),
        ("wrap/0000001/up", tarfile.SYMTYPE, "../..", b""),
        ("wrap/0000001/up/escaped.txt", tarfile.REGTYPE, None, b"x"),
    ])
    final = tmp_path / "data" / "out"
    with pytest.raises(ValueError, match=r"s1.tar.gz.*0000001/up.*refusing to unpack"):
        if split:
            unpack_parts([archive], final, location_rename(None))
        else:
            unpack(archive, final, location_rename(None))
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "data" / "escaped.txt").exists()
    assert not final.exists() and not list(final.parent.iterdir())


def test_hard_link_follows_its_target_through_the_rename(tmp_path: Path) -> None:
    archive = _tar_of(tmp_path / "s1.tar.gz", [
        ("wrap/0000001/a.tif", tarfile.REGTYPE, None, b"abc"),
        ("wrap/0000001/b.tif", tarfile.LNKTYPE, "wrap/0000001/a.tif", b""),
    ])
    final = unpack(archive, tmp_path / "out", location_rename(None))
    assert (final / "0000001" / "b.tif").read_bytes() == b"abc"


def test_hard_link_to_a_member_left_out_is_refused(tmp_path: Path) -> None:
    archive = _tar_of(tmp_path / "s1.tar.gz", [
        ("outside.txt", tarfile.REGTYPE, None, b"abc"),
        ("wrap/0000001/b.tif", tarfile.LNKTYPE, "outside.txt", b""),
    ])
    with pytest.raises(ValueError, match="b.tif.*outside.txt.*not unpacked"):
        unpack(archive, tmp_path / "out", location_rename(None))
    assert not (tmp_path / "out").exists()


def test_split_tar_parts_unpack_with_rename(tmp_path: Path) -> None:
    whole = tmp_path / "x.tar.gz"
    with tarfile.open(whole, "w:gz") as bundle:
        for name in ("s1/0000001/a.tif", "s1/0000002/b.tif"):
            info = tarfile.TarInfo(name)
            info.size = 3
            bundle.addfile(info, io.BytesIO(name[-5:].encode()[:3]))
    data = whole.read_bytes()
    parts = []
    for i, start in enumerate(range(0, len(data), 40)):
        parts.append(tmp_path / f"x.tar.gz.parta{'abcdefghijklmnopqrstuvwxyz'[i]}")
        parts[-1].write_bytes(data[start:start + 40])
    final = unpack_parts(parts, tmp_path / "out",
                         rename=lambda n: n.removeprefix("s1/") if "0000002" in n else None)
    assert sorted(p.relative_to(final).as_posix() for p in final.rglob("*.tif")) == ["0000002/b.tif"]
    assert (final / "0000002" / "b.tif").read_bytes() == b"b.t"


def test_cut_body_without_content_length_is_resumed_not_accepted(served: LoopbackServer,
                                                                 tmp_path: Path) -> None:
    served.no_length.add("/blob.bin")
    served.drop_after["/blob.bin"] = 300_000
    target = download(f"{served.url}/blob.bin", tmp_path / "blob.bin", policy=FAST, progress=False)
    assert target.read_bytes() == PAYLOAD
    recorded = json.loads((tmp_path / "checksums.json").read_text())["blob.bin"]
    assert recorded["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert [r is not None for _, _, r in served.requests] == [False, True]


def test_body_of_unknown_length_needs_a_range_answer_or_a_checksum(served: LoopbackServer,
                                                                   tmp_path: Path) -> None:
    served.no_length.add("/blob.bin")
    served.no_ranges.add("/blob.bin")
    with pytest.raises(ValueError, match="no Content-Length and ignores Range"):
        download(f"{served.url}/blob.bin", tmp_path / "blob.bin", policy=FAST, progress=False)
    assert not any(tmp_path.glob("blob.bin*")) and not (tmp_path / "checksums.json").exists()
    expected = Expected(sha256=hashlib.sha256(PAYLOAD).hexdigest())
    target = download(f"{served.url}/blob.bin", tmp_path / "blob.bin", expected, policy=FAST,
                      progress=False)
    assert target.read_bytes() == PAYLOAD


def test_file_changed_between_attempts_is_not_stitched(served: LoopbackServer,
                                                       tmp_path: Path) -> None:
    changed = bytes(reversed(PAYLOAD))
    served.drop_after["/blob.bin"] = 300_000
    served.replace_after_drop["/blob.bin"] = changed
    target = download(f"{served.url}/blob.bin", tmp_path / "blob.bin", policy=FAST, progress=False)
    assert target.read_bytes() == changed
    assert served.requests[1][2] is not None  # it did try to resume, with If-Range
    assert not list(tmp_path.glob("*.validator"))


def test_file_changed_without_validator_is_downloaded_anew(served: LoopbackServer,
                                                          tmp_path: Path) -> None:
    """No ETag/Last-Modified: a resume could append the new file's tail to the old head."""
    changed = bytes(reversed(PAYLOAD))
    served.no_validators.add("/blob.bin")
    served.drop_after["/blob.bin"] = 300_000
    served.replace_after_drop["/blob.bin"] = changed
    target = download(f"{served.url}/blob.bin", tmp_path / "blob.bin", policy=FAST, progress=False)
    assert target.read_bytes() == changed
    recorded = json.loads((tmp_path / "checksums.json").read_text())["blob.bin"]
    assert recorded["sha256"] == hashlib.sha256(changed).hexdigest()
    assert [r for _, _, r in served.requests] == [None, None]  # started over, no blind Range


def test_resume_without_validator_is_kept_when_a_checksum_verifies_it(served: LoopbackServer,
                                                                      tmp_path: Path) -> None:
    served.no_validators.add("/blob.bin")
    served.drop_after["/blob.bin"] = 300_000
    expected = Expected(sha256=hashlib.sha256(PAYLOAD).hexdigest())
    target = download(f"{served.url}/blob.bin", tmp_path / "blob.bin", expected, policy=FAST,
                      progress=False)
    assert target.read_bytes() == PAYLOAD
    assert served.requests[1][2] is not None  # resumed: the checksum catches a stitched file


def test_redirect_loop_names_the_url(served: LoopbackServer, tmp_path: Path) -> None:
    served.redirects["/loop"] = "/loop"
    url = f"{served.url}/loop"
    with pytest.raises(Exception, match=rf"{url}: too many redirects") as info:
        download(url, tmp_path / "loop", policy=FAST, progress=False)
    assert type(info.value).__name__ == "CromssError"
    assert not any(tmp_path.glob("loop*"))
