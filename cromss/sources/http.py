"""Downloads a researcher can rely on: resume, retry, verify, never a half file under the final name.

A download writes to ``<target>.part`` and resumes it with an HTTP ``Range`` request after an
interruption. The resume carries ``If-Range`` with the file's ``ETag`` (or ``Last-Modified``), kept
in ``<target>.part.validator``: a file that changed on the server in between is downloaded anew,
never stitched from two versions. A server that gives neither is only resumed when an expected
checksum will verify the result; otherwise the download starts over. Transient failures (dropped
connections, timeouts, 5xx, 429) are retried with exponential backoff. A body without
``Content-Length`` is only complete when the server confirms it (a ``Range`` request beyond it
answers 416), or when an expected size or checksum matches. The finished ``.part`` is checked
against the expected size and MD5/SHA-256 and only then renamed to the target. ``checksums.json``
beside the targets records size and SHA-256 of every file on its first (complete, verified)
download, so a later download of the same name must match. A redirect loop is an error naming the
URL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from cromss import logs
from cromss.atomic import atomic_path
from cromss.errors import CromssError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
NETWORK_CHUNK_BYTES = 1 << 16
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
CHECKSUMS_FILE = "checksums.json"


@dataclass(frozen=True)
class Expected:
    """What a downloaded file must match; ``None`` fields are not checked."""

    size: int | None = None
    md5: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient failures are retried."""

    attempts: int = 6
    backoff_s: float = 2.0
    timeout_s: float = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based): doubling each time."""
        return self.backoff_s * 2**attempt


class TransientError(Exception):
    """A failure worth retrying (the next attempt resumes from the ``.part`` file)."""


def file_digests(path: Path) -> dict[str, str]:
    """MD5 and SHA-256 of a file, read once."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            md5.update(block)
            sha256.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


def verify(path: Path, expected: Expected, *, label: str) -> dict[str, Any]:
    """Check size and checksums of ``path``; return its size and digests or raise ValueError."""
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        raise CromssError(f"{label}: size {size} bytes, expected {expected.size}")
    digests = file_digests(path)
    for kind in ("md5", "sha256"):
        want = getattr(expected, kind)
        if want is not None and digests[kind] != want.lower():
            raise CromssError(f"{label}: {kind} {digests[kind]} does not match the expected {want}")
    return {"size": size, **digests}


def part_path(target: Path) -> Path:
    """The sibling a download grows in before it is verified."""
    return target.with_name(target.name + ".part")


def validator_path(part: Path) -> Path:
    """Where the ETag / Last-Modified of the file a ``.part`` holds the beginning of is kept."""
    return part.with_name(part.name + ".validator")


def auth_headers(url: str) -> dict[str, str]:
    """An ``Authorization`` header for Hugging Face when ``HF_TOKEN`` is set (gated or private files)."""
    token = os.environ.get("HF_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token and "huggingface.co" in url else {}


def _raise_for_status(response: requests.Response, url: str) -> None:
    status = response.status_code
    if status in (404, 410):
        raise FileNotFoundError(f"{url}: not found on the server (HTTP {status}); check the base URL, "
                                "revision and file name in the config")
    if status in TRANSIENT_STATUS:
        raise TransientError(f"HTTP {status}")
    if status in (401, 403):
        raise CromssError(f"{url}: access denied (HTTP {status}); set HF_TOKEN for gated Hugging Face "
                          "files or check the credentials of this host")
    if status >= 400:
        raise CromssError(f"{url}: HTTP {status}")


def _resume_offset(response: requests.Response, offset: int) -> int:
    """Byte offset the response body starts at: 0 for a full answer (200), ``offset`` for a 206."""
    if response.status_code != 206:
        return 0
    content_range = response.headers.get("Content-Range", "")
    start = content_range.removeprefix("bytes ").split("-", 1)[0]
    if not (start.isdigit() and int(start) == offset):
        raise TransientError(f"asked for bytes from {offset}, got range {content_range!r}")
    return offset


def _total_size(response: requests.Response, start: int) -> int | None:
    if response.status_code == 206:
        total = response.headers.get("Content-Range", "").rsplit("/", 1)[-1]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return start + int(length) if length and length.isdigit() else None


def _fetch_once(session: requests.Session, url: str, part: Path, policy: RetryPolicy,
                progress: bool, checksummed: bool) -> bool:
    """One attempt: continue ``part`` from its current size to the end of the remote file.

    Without a validator a resume is only attempted when a checksum (``checksummed``) will catch a
    file stitched from two versions; otherwise ``part`` is downloaded again from its first byte.
    True when the server stated (or confirmed) the file's length and ``part`` has all of it; False
    when the body ended without the server having said how long it is.
    """
    offset = part.stat().st_size if part.exists() else 0
    tag_file = validator_path(part)
    validator = tag_file.read_text() if offset and tag_file.is_file() else None
    if offset and not validator and not checksummed:
        log.info("%s: the server gave no ETag or Last-Modified; downloading again from the start",
                 url)
        offset = 0
    headers = auth_headers(url)
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator  # a changed file comes back whole (200), not as a tail
    try:
        with session.get(url, headers=headers, stream=True, timeout=policy.timeout_s) as response:
            if response.status_code == 416 and offset:
                return True  # nothing beyond the part: it holds the whole file
            _raise_for_status(response, url)
            start = _resume_offset(response, offset)
            current = response.headers.get("ETag") or response.headers.get("Last-Modified")
            if start and validator and current and current != validator:
                part.unlink()  # the server ignored If-Range and answered from a changed file
                raise TransientError(f"the remote file changed ({validator} -> {current}); "
                                     "starting over")
            if start == 0:
                tag_file.unlink(missing_ok=True)
                if current:
                    tag_file.write_text(current)
            total = _total_size(response, start)
            with open(part, "r+b" if start else "wb") as handle, logs.Progress(
                    part.name[:-5], total, "B", enabled=progress, initial=start,
                    logger=log) as bar:
                handle.seek(start)
                handle.truncate()
                for block in response.iter_content(NETWORK_CHUNK_BYTES):
                    handle.write(block)
                    bar.update(len(block))
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
        raise TransientError(f"{type(err).__name__}: {err}") from err
    except requests.TooManyRedirects as err:
        raise CromssError(f"{url}: too many redirects ({err}); the server redirects in a loop, "
                          "check the URL in the config") from err
    received = part.stat().st_size
    if total is None:
        return False
    if received < total:
        raise TransientError(f"connection closed after {received} of {total} bytes")
    return True


def _check_registry(target: Path, facts: dict[str, Any]) -> None:
    """Record ``facts`` for a new name in ``checksums.json``; a known name must match them."""
    registry = target.parent / CHECKSUMS_FILE
    known = json.loads(registry.read_text()) if registry.exists() else {}
    recorded = known.get(target.name)
    if recorded is None:
        known[target.name] = {"size": facts["size"], "sha256": facts["sha256"]}
        with atomic_path(registry) as tmp:
            tmp.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
    elif (recorded["size"], recorded["sha256"]) != (facts["size"], facts["sha256"]):
        raise CromssError(f"{target.name}: size/sha256 differ from those recorded in {registry} on its "
                          "first download; the remote file changed or the download is corrupt")


def download(url: str, target: str | os.PathLike, expected: Expected = Expected(), *,
             policy: RetryPolicy = RetryPolicy(), session: requests.Session | None = None,
             progress: bool = True) -> Path:
    """Download ``url`` to ``target`` (resuming, retrying, verifying); return ``target``.

    An existing ``target`` is kept when its size matches what is expected or recorded. A file that
    fails verification is removed and ValueError names the URL and the mismatch.
    """
    target = Path(target)
    if target.exists():
        _check_existing(target, expected)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    session = session or requests.Session()
    confirmed = False
    checksummed = bool(expected.md5 or expected.sha256)
    for attempt in range(policy.attempts):
        try:
            # a body of unstated length may have been cut: ask for what follows it
            confirmed = (_fetch_once(session, url, part, policy, progress, checksummed)
                         or _fetch_once(session, url, part, policy, progress, checksummed))
            break
        except TransientError as err:
            if attempt + 1 == policy.attempts:
                raise CromssError(f"{url}: giving up after {policy.attempts} attempts ({err}); "
                                  f"rerun to resume from {part}") from err
            log.warning("%s: %s; retrying in %.1f s", url, err, policy.delay(attempt))
            time.sleep(policy.delay(attempt))
    try:
        if not confirmed and expected == Expected():
            raise CromssError(f"{url}: the server sent no Content-Length and ignores Range requests, "
                              "so a cut-off body cannot be told from a complete one; give the file's "
                              "size or checksum in the config")
        facts = verify(part, expected, label=url)
        _check_registry(target, facts)
    except ValueError:
        part.unlink()
        validator_path(part).unlink(missing_ok=True)
        raise
    os.replace(part, target)
    validator_path(part).unlink(missing_ok=True)
    log.info("downloaded %s (%d bytes)", target, facts["size"])
    return target


def _check_existing(target: Path, expected: Expected) -> None:
    registry = target.parent / CHECKSUMS_FILE
    recorded = json.loads(registry.read_text()).get(target.name) if registry.exists() else None
    sizes = {size for size in (expected.size, (recorded or {}).get("size")) if size is not None}
    if sizes and target.stat().st_size not in sizes:
        raise CromssError(f"{target}: {target.stat().st_size} bytes, expected {sorted(sizes)}; "
                          "delete it to download it again")
