"""Torch files of weights and checkpoints: atomic writes that never hold NaN or inf, and
``weights_only`` reads.

Every ``.pt`` file the workflow writes (checkpoints, pretrained models, encoders, fine-tuned
models) goes through :func:`save`; every file it reads, its own or a downloaded one, through
:func:`load`, which unpickles tensors, plain containers and :data:`SAFE_GLOBALS`, nothing else.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from cromss.atomic import write_file
from cromss.errors import CromssError

SAFE_GLOBALS = (argparse.Namespace,)
"""The one class beyond tensors and plain containers that ``weights_only`` reads allow: a Lightning
checkpoint of the released CromSS weights holds ``hyper_parameters = {"args": Namespace(...)}``
(``save_hyperparameters()`` of a module built from parsed arguments). Nothing else is unpickled."""


def non_finite(payload: Any, prefix: str = "", *, floats: bool = True) -> list[str]:
    """Dotted names of the floating-point tensors (and, with ``floats``, Python floats) in
    ``payload`` that hold NaN or inf."""
    if isinstance(payload, torch.Tensor):
        bad = payload.is_floating_point() and not bool(torch.isfinite(payload).all())
        return [prefix] if bad else []
    if isinstance(payload, float):
        return [] if not floats or math.isfinite(payload) else [prefix]
    items: Iterable[tuple[Any, Any]]
    if isinstance(payload, Mapping):
        items = payload.items()
    elif isinstance(payload, (list, tuple)):
        items = enumerate(payload)
    else:
        return []
    return [name for key, value in items
            for name in non_finite(value, f"{prefix}.{key}" if prefix else str(key), floats=floats)]


def non_finite_message(bad: list[str], what: str, keep: str | os.PathLike | None) -> str:
    """The error of a payload with non-finite values at the names ``bad``."""
    kept = f"; the last good checkpoint (if any) is kept at {keep}" if keep else ""
    return (f"non-finite values in {what} ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''})"
            f": stopping{kept}")


def save(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``payload`` to ``path`` atomically (a crash mid-write keeps the previous file).

    A payload with a non-finite tensor is refused before anything is written (floats such as a
    plateau scheduler's ``inf`` best are legitimate).
    """
    bad = non_finite(payload, floats=False)
    if bad:
        raise CromssError(non_finite_message(bad, f"the state to save to {path}", path))
    write_file(path, lambda handle: torch.save(payload, handle))


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a torch file with ``weights_only=True`` (and :data:`SAFE_GLOBALS`); a file that is not
    one, or that would unpickle anything else, raises :class:`CromssError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError ...
        raise CromssError(f"{path}: not a readable weights-only torch file ({err})") from err
    if not isinstance(payload, dict):
        raise CromssError(f"{path}: expected a dict, found {type(payload).__name__}")
    return payload


def read_weights(path: str | Path, keys: tuple[str, ...], what: str) -> dict[str, Any]:
    """A dict saved with ``torch.save``, read by :func:`load` (``weights_only``), with ``keys``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    payload = load(path)
    if not set(keys) <= set(payload):
        raise CromssError(f"{path}: is no {what} (expected keys {', '.join(map(repr, keys))})")
    return payload
