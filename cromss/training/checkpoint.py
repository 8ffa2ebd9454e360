"""Training checkpoints: atomic writes, ``weights_only`` reads, RNG state, stop on signals.

A checkpoint holds everything a run needs to continue exactly where it stopped: model, optimiser,
scheduler and grad-scaler states, the position in the data (epoch and batches done in it), the
running sums of the epoch, the log so far and the torch RNG states. The data order and every
augmentation are functions of ``(seed, epoch, index)``, so no NumPy or Python RNG state is needed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from cromss.atomic import atomic_path

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
SAFE_GLOBALS = (argparse.Namespace,)
"""The one class beyond tensors and plain containers that ``weights_only`` reads allow: a Lightning
checkpoint of the released CromSS weights holds ``hyper_parameters = {"args": Namespace(...)}``
(``save_hyperparameters()`` of a module built from parsed arguments). Nothing else is unpickled."""


def save(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``payload`` to ``path`` atomically (a crash mid-write keeps the previous file)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


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
