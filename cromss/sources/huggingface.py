"""Hugging Face datasets over plain HTTP: NoLDO-S12 (labels and downstream tiles) and CromSS weights.

Files are fetched from ``<base_url>/datasets/<repo>/resolve/<revision>/<file>`` with the resumable,
verified :func:`cromss.sources.http.download`; ``HF_TOKEN`` is sent when set. The base URL is
configurable so a mirror (or the tests' loopback server) can stand in for huggingface.co.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cromss.sources.archives import unpack
from cromss.settings import Real, as_dict
from cromss.sources.http import Expected, RetryPolicy, download

NOLDO_REPO = "vikki23/NoLDO-S12"
NOLDO_FILES = ("ssl4eo_s12_nol.zip", "ssl4eo_s12_dw.zip", "ssl4eo_s12_osm.zip")
WEIGHT_FILES = tuple(f"weights-cromss-{bands}-{fusion}-epoch=199.ckpt"
                     for bands in ("13B", "9B") for fusion in ("midFusion", "lateFusion"))


def hf_url(base_url: str, repo: str, revision: str, filename: str) -> str:
    """The ``resolve`` URL of one file of a Hugging Face dataset repository."""
    return f"{base_url.rstrip('/')}/datasets/{repo}/resolve/{revision}/{filename.lstrip('/')}"


def retry_policy(real: Real) -> RetryPolicy:
    """The retry policy of the ``retry`` block of the real-data settings."""
    return RetryPolicy(**as_dict(real.retry))


def download_dir(real: Real, name: str) -> Path:
    """Where the archives of source ``name`` are kept (``download_dir`` of the settings)."""
    return Path(real.download_dir) / name


def weights_url(real: Real, section: Mapping[str, Any], filename: str) -> str:
    """The URL of one file of the repository named in ``section`` (repo, revision)."""
    return hf_url(real.huggingface_url, section["repo"], section["revision"], filename)


def fetch_repo_file(real: Real, section: Mapping[str, Any], filename: str,
                    folder: Path, *, progress: bool = True) -> Path:
    """Download one file of the repository named in ``section`` (repo, revision, md5 per file)."""
    url = weights_url(real, section, filename)
    target = folder / Path(filename).name
    expected = Expected(md5=section["md5"].get(filename))
    return download(url, target, expected, policy=retry_policy(real), progress=progress)


def fetch_noldo(real: Real, out: Path, *, progress: bool = True) -> list[Path]:
    """Download and unpack the NoLDO-S12 zips to ``out/noldo/<zip stem>/``."""
    section = {"repo": NOLDO_REPO, "files": list(NOLDO_FILES), **real.noldo}
    unpacked = []
    for filename in section["files"]:
        final = out / "noldo" / Path(filename).stem
        if final.exists():  # unpacked earlier or placed by hand: never downloaded again
            unpacked.append(final)
            continue
        archive = fetch_repo_file(real, section, filename, download_dir(real, "noldo"),
                                  progress=progress)
        unpacked.append(unpack(archive, final))
    return unpacked


def weights_section(real: Real) -> dict[str, Any]:
    """The ``weights`` block of the settings over its defaults (NoLDO-S12, all four files)."""
    return {"repo": NOLDO_REPO, "files": list(WEIGHT_FILES), **real.weights}


def fetch_weights(real: Real, out: Path, *, progress: bool = True) -> list[Path]:
    """Download the released CromSS checkpoints to ``out/weights/`` (verified, kept as they are)."""
    section = weights_section(real)
    return [fetch_repo_file(real, section, filename, out / "weights", progress=progress)
            for filename in section["files"]]
