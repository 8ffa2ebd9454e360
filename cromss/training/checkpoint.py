"""Training checkpoints: atomic writes, ``weights_only`` reads, RNG state, stop on signals.

A checkpoint holds everything a run needs to continue exactly where it stopped: model, optimiser,
scheduler and grad-scaler states, the position in the data (epoch and batches done in it), the
running sums of the epoch, the log so far and the torch RNG states. The data order and every
augmentation are functions of ``(seed, epoch, index)``, so no NumPy or Python RNG state is needed.
Nothing non-finite is ever saved: :func:`save` refuses a payload with a NaN or infinite tensor
(weights, BatchNorm running statistics, optimiser moments), so the last good checkpoint survives.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from cromss.atomic import atomic_path
from cromss.cli import CromssError

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
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
    if isinstance(payload, Mapping):
        items = payload.items()
    elif isinstance(payload, (list, tuple)):
        items = enumerate(payload)
    else:
        return []
    return [name for key, value in items
            for name in non_finite(value, f"{prefix}.{key}" if prefix else str(key), floats=floats)]


def require_finite(payload: Any, what: str, keep: str | os.PathLike | None = None, *,
                   floats: bool = True) -> None:
    """Stop the run with a clear message if ``payload`` holds NaN or inf (nothing is written)."""
    bad = non_finite(payload, floats=floats)
    if bad:
        kept = f"; the last good checkpoint (if any) is kept at {keep}" if keep else ""
        raise CromssError(f"non-finite values in {what} ({', '.join(bad[:5])}"
                          f"{', ...' if len(bad) > 5 else ''}): stopping{kept}")


def save(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``payload`` to ``path`` atomically (a crash mid-write keeps the previous file).

    A payload with a non-finite tensor is refused before anything is written (floats such as a
    plateau scheduler's ``inf`` best are legitimate).
    """
    require_finite(payload, f"the state to save to {path}", path, floats=False)
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as handle:  # a Python file: disk full is an OSError, not
                torch.save(payload, handle)  # torch's "unexpected pos" RuntimeError
        except OSError as err:
            raise OSError(err.errno, err.strerror, str(path)) from err


def write_log(records: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write the epoch records as JSON lines, atomically; NaN or inf is refused, never written."""
    require_finite(records, f"the log {path}")
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in records))


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (and :data:`SAFE_GLOBALS`); a file that is not
    one, or that would unpickle anything else, raises ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError ...
        raise ValueError(f"{path}: not a readable weights-only torch file ({err})") from err
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected a dict, found {type(payload).__name__}")
    return payload


def check_same_run(saved: Mapping[str, Any], current: Mapping[str, Any], path: str | os.PathLike,
                   resumable: tuple[str, ...] = ()) -> None:
    """Refuse to resume ``path`` if its run differs from this one in any key but ``resumable``."""
    changed = sorted(k for k in set(saved) | set(current)
                     if k not in resumable and saved.get(k) != current.get(k))
    if changed:
        raise CromssError(f"{path}: checkpoint of a different run (settings {changed}); delete it "
                          "to start afresh, or rerun with the settings it was written with")


def rng_state() -> dict[str, Any]:
    """The torch CPU and CUDA generator states."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class StopRequest:
    """Set by SIGTERM / SIGINT while :func:`catch_stop_signals` is active; the loop polls it."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    def handler(self, signum: int, _frame: Any) -> None:
        self.signal = signum


@contextlib.contextmanager
def catch_stop_signals() -> Iterator[StopRequest]:
    """Turn SIGTERM / SIGINT into a polled flag for the duration of the block (main thread only)."""
    request = StopRequest()
    previous = {sig: signal.signal(sig, request.handler) for sig in STOP_SIGNALS}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
