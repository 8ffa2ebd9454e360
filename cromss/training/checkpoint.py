"""Training checkpoints: what a run saves to resume, RNG state, stop on signals, finite checks.

A checkpoint holds everything a run needs to continue exactly where it stopped: model, optimiser,
scheduler and grad-scaler states, the position in the data (epoch and batches done in it), the
running sums of the epoch, the log so far and the torch RNG states. The data order and every
augmentation are functions of ``(seed, epoch, index)``, so no NumPy or Python RNG state is needed.
Nothing non-finite is ever saved: :func:`cromss.weights.files.save` (which writes the checkpoint
files) refuses a payload with a NaN or infinite tensor (weights, BatchNorm running statistics,
optimiser moments), so the last good checkpoint survives.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from cromss.atomic import atomic_path
from cromss.errors import CromssError
from cromss.weights.files import non_finite, non_finite_message

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def require_finite(payload: Any, what: str, keep: str | os.PathLike | None = None, *,
                   floats: bool = True) -> None:
    """Stop the run with a clear message if ``payload`` holds NaN or inf (nothing is written)."""
    bad = non_finite(payload, floats=floats)
    if bad:
        raise CromssError(non_finite_message(bad, what, keep))


def write_log(records: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write the epoch records as JSON lines, atomically; NaN or inf is refused, never written."""
    require_finite(records, f"the log {path}")
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in records))


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
