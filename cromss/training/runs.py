"""A group of fine-tuning runs in one process: every setting and seed of one (task, modality,
encoder), each trained, then evaluated on the test store by the process that trained it.

One process pays the start-up (torch + smp imports, about 6-10 s of CPU) once for the whole
group instead of once per run and once more per evaluation. Each run's outputs
(``model.pt``, ``log.jsonl``, ``metrics.json``) are written as soon as it completes, and a run
that fails does not stop the others: the group ends with an error naming the failed runs.

A completed run also keeps hard links to its outputs, with the key of everything it was computed
from, in ``<run>/.complete/``, until the whole group has succeeded. Snakemake deletes all outputs
of a job that failed; when the job is rerun, a run whose key is unchanged gets its outputs back
from those links instead of being trained again, and an interrupted run resumes from its
``checkpoint.pt``. Once every run is done the links go, so that a run model the workflow deletes
as temporary (``finetune.keep_models: false``) leaves no copy behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cromss.atomic import atomic_path
from cromss.errors import CromssError
from cromss.settings import Finetune, as_dict

log = logging.getLogger(__name__)

OUTPUTS = ("model.pt", "log.jsonl", "metrics.json")
COMPLETE = ".complete"
KEY = "key.json"


@dataclass(frozen=True)
class Run:
    """One fine-tuning run of a group and its output directory."""

    setting: str
    seed: int
    out: Path


def group_runs(settings: list[str], seeds: list[int], out_pattern: str) -> list[Run]:
    """The runs of a group; ``out_pattern`` names each directory with ``{setting}`` and ``{seed}``."""
    if "{setting}" not in out_pattern or "{seed}" not in out_pattern:
        raise CromssError(f"--out {out_pattern!r} must contain {{setting}} and {{seed}}")
    return [Run(s, n, Path(out_pattern.format(setting=s, seed=n))) for s in settings for n in seeds]


def file_digest(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def store_stamp(store: Path) -> list[Any]:
    """A store's identity for the key: its path and the time its metadata was written."""
    meta = Path(store) / "zarr.json"
    return [str(store), meta.stat().st_mtime_ns if meta.exists() else None]


def run_key(run: Run, *, task: str, modality: str, encoder: str, train: Path, test: Path,
            settings: Finetune, weights_name: str | None) -> dict[str, Any]:
    """Everything a run's outputs are computed from."""
    return {"task": task, "modality": modality, "setting": run.setting, "seed": run.seed,
            "encoder": "random" if encoder == "random" else file_digest(encoder),
            "weights_name": weights_name, "train": store_stamp(train), "test": store_stamp(test),
            "settings": as_dict(settings)}


def restore(run: Run, key: dict[str, Any]) -> bool:
    """Link a completed run's outputs back into place if its key matches; True if done so."""
    done = run.out / COMPLETE
    try:
        if json.loads((done / KEY).read_text()) != key:
            return False
    except (OSError, ValueError):
        return False
    if not all((done / name).is_file() for name in OUTPUTS):
        return False
    for name in OUTPUTS:
        with atomic_path(run.out / name) as tmp:
            os.link(done / name, tmp)
    return True


def record(run: Run, key: dict[str, Any]) -> None:
    """Keep hard links to a completed run's outputs with its key (replaced atomically)."""
    with atomic_path(run.out / COMPLETE) as tmp:
        tmp.mkdir()
        for name in OUTPUTS:
            os.link(run.out / name, tmp / name)
        (tmp / KEY).write_text(json.dumps(key, sort_keys=True))


def finetune_group(*, task: str, modality: str, encoder: str, setting: list[str], seed: list[int],
                   train: Path, test: Path, settings: Finetune, out: str,
                   weights_name: str | None = None) -> None:
    """Train and evaluate every (setting, seed) run of one group; see the module docstring."""
    from cromss.training.finetune import evaluate, finetune

    failed = []
    for run in group_runs(setting, seed, out):
        key = run_key(run, task=task, modality=modality, encoder=encoder, train=train, test=test,
                      settings=settings, weights_name=weights_name)
        if restore(run, key):
            log.info("%s: complete already (same inputs), outputs restored", run.out)
            continue
        try:
            finetune(task=task, modality=modality, encoder=encoder, setting=run.setting,
                     seed=run.seed, train=train, settings=settings, out=run.out,
                     weights_name=weights_name)
            evaluate(run.out / "model.pt", test, run.out / "metrics.json")
        except Exception as err:
            if str(err).startswith("interrupted by signal"):
                raise
            log.exception("%s failed", run.out)
            failed.append(f"{run.out} ({err})")
            continue
        record(run, key)
        log.info("%s: done", run.out)
    if failed:
        raise CromssError(f"{len(failed)} of the group's runs failed (the others are complete): "
                          + "; ".join(failed))
    for run in group_runs(setting, seed, out):
        shutil.rmtree(run.out / COMPLETE, ignore_errors=True)
