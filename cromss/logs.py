"""What every ``cromss`` job writes to its log: a header, readable progress lines, tqdm on a terminal.

A Snakemake job's log is a file, so progress goes there as one line per epoch, per N samples or
per file (``progress_line``), and within a long loop (``Progress``: batches of an epoch, tiles
of a map, bytes of a download) a line every ``PROGRESS_SECONDS``; tqdm bars (``progress_bar``)
appear only when stderr is a terminal.
The header (``job_header``) says what ran: the command line, the settings it read, the code
version, the device and threads, and the size of every Zarr store it names.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import cromss

log = logging.getLogger("cromss")
T = TypeVar("T")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(verbose: bool = False) -> None:
    """Timestamped lines on stderr (the job's log file under Snakemake)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT)


@functools.cache
def code_version() -> str:
    """``cromss 0.2.0`` plus the git commit of the checkout it runs from (``+dirty`` if edited)."""
    version = f"cromss {cromss.__version__}"
    root = Path(cromss.__file__).resolve().parents[1]
    try:
        # the commit itself, never a tag name (--exclude: no tag describes it)
        commit = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty",
                                 "--abbrev=12", "--exclude=*"], capture_output=True, text=True,
                                timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return version
    return f"{version} (git {commit.stdout.strip()})" if commit.returncode == 0 else version


def git_commit() -> str | None:
    """The commit of the checkout (``None`` outside git), e.g. for model cards."""
    version = code_version()
    return version.split("(git ", 1)[1].rstrip(")") if "(git " in version else None


def format_value(value: Any) -> str:
    """Numbers short (4 significant digits), everything else as compact JSON or text."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(", ", ": "), default=str)
    return str(value)


def progress_line(what: str, done: int, total: int | None, values: Mapping[str, Any]) -> str:
    """``what 3/10: train_loss 0.5123, val_loss 0.61, lr 0.005`` (``None`` values left out)."""
    count = f"{done}/{total}" if total else str(done)
    pairs = ", ".join(f"{key} {format_value(value)}" for key, value in values.items()
                      if value is not None)
    return f"{what} {count}: {pairs}" if pairs else f"{what} {count}"


def epoch_line(record: Mapping[str, Any], epochs: int, run: str | None = None) -> str:
    """``[run ]epoch 3/10: lr 0.005, train_loss 0.51, ...`` of one log record (0-based epoch);
    ``run`` names the run where one job trains several (a fine-tuning group)."""
    return progress_line(f"{run} epoch" if run else "epoch", int(record["epoch"]) + 1, epochs,
                         {key: value for key, value in record.items() if key != "epoch"})


PROGRESS_SECONDS = float(os.environ.get("CROMSS_PROGRESS_SECONDS", "60"))
"""Seconds between two progress lines of a long loop in a log file (environment variable
``CROMSS_PROGRESS_SECONDS``); a loop shorter than that writes none."""


def amount(count: float, unit: str) -> str:
    """``1234567`` bytes as ``1.23 MB``; other units as the plain number."""
    if unit != "B":
        return f"{count:.4g}" if isinstance(count, float) else str(count)
    for prefix in ("", "k", "M", "G", "T"):
        if abs(count) < 1000 or prefix == "T":
            return f"{count:.3g} {prefix}B" if prefix else f"{count:.0f} B"
        count /= 1000
    raise AssertionError("unreachable")


class Progress:
    """Progress of one long loop: a tqdm bar on a terminal; in a log file a line every
    ``interval`` seconds, e.g. ``dw/s2/frozen/seed0 epoch 3/10: 120/400 batches (30%), 4.1
    batches/s, 68 s left``. ``update(n)`` counts what is done; use it as a context manager."""

    def __init__(self, what: str, total: float | None, unit: str, *, enabled: bool = True,
                 logger: logging.Logger = log, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic, initial: float = 0) -> None:
        self.what, self.total, self.unit, self.logger, self.clock = what, total, unit, logger, clock
        self.interval = PROGRESS_SECONDS if interval is None else interval
        self.enabled, self.done, self.initial = enabled, initial, initial
        self.values: dict[str, Any] = {}
        self.started = self.last = clock()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=what, leave=False,
                            dynamic_ncols=True, unit=unit, unit_scale=unit == "B")

    def line(self, now: float) -> str:
        rate = (self.done - self.initial) / max(now - self.started, 1e-9)
        count = (f"{amount(self.done, self.unit)} of {amount(self.total, self.unit)}"
                 if self.unit == "B" and self.total else
                 f"{self.done}/{self.total} {self.unit}" if self.total else
                 f"{amount(self.done, self.unit)}{'' if self.unit == 'B' else ' ' + self.unit}")
        speed = f"{amount(rate, 'B')}/s" if self.unit == "B" else f"{rate:.3g} {self.unit}/s"
        parts = [count + (f" ({100 * self.done / self.total:.0f}%)" if self.total else ""), speed]
        if self.total and rate > 0:
            parts.append(f"{(self.total - self.done) / rate:.0f} s left")
        parts += [f"{key} {format_value(value)}" for key, value in self.values.items()]
        return f"{self.what}: {', '.join(parts)}"

    def note(self, **values: Any) -> None:
        """Values shown with the progress (e.g. the current loss)."""
        self.values = values
        if self.bar is not None:
            self.bar.set_postfix({key: format_value(value) for key, value in values.items()})

    def update(self, count: float = 1) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        now = self.clock()
        if self.enabled and now - self.last >= self.interval and (
                self.total is None or self.done < self.total):
            self.last = now
            self.logger.info(self.line(now))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(iterable: Iterable[T], **options: Any) -> Iterable[T]:
    """A tqdm bar on a terminal; the plain iterable in a log file or when ``disable`` is set."""
    if options.pop("disable", False) or not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, leave=False, dynamic_ncols=True, **options)


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        names = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
        return f"cuda x{torch.cuda.device_count()} ({', '.join(sorted(names))})"
    return "cpu"


def _paths(value: Any) -> list[Path]:
    values = value if isinstance(value, (list, tuple)) else [value]
    return [Path(v) for v in values if isinstance(v, (str, Path))]


def store_sizes(args: argparse.Namespace) -> dict[str, str]:
    """``{store path: "N samples x T seasons, H x W px, S MiB"}`` of every existing ``.zarr`` argument."""
    sizes = {}
    for value in vars(args).values():
        for path in _paths(value):
            if path.suffix != ".zarr" or not path.is_dir():
                continue
            from cromss.data.store import open_arrays

            try:
                n, seasons, _, height, width = open_arrays(path)["s2"].shape
            except (OSError, KeyError, ValueError) as err:
                sizes[str(path)] = f"unreadable ({err})"
                continue
            mib = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
            sizes[str(path)] = (f"{n} samples x {seasons} seasons, {height} x {width} px, "
                                f"{mib:.1f} MiB")
    return sizes


def _settings(args: argparse.Namespace) -> Any:
    if not getattr(args, "settings", None):
        return None
    from cromss.config import load_settings

    try:
        return load_settings(args.settings)
    except (OSError, ValueError) as err:  # the command itself reports it
        return f"unreadable ({err})"


def job_header(args: argparse.Namespace, argv: list[str]) -> Iterator[str]:
    """The header lines of a job's log, the cheap ones first (torch is imported for the device)."""
    yield f"version: {code_version()}"
    yield f"command: cromss {shlex.join(argv)}"
    yield f"working directory: {os.getcwd()}"
    options = {key: value for key, value in vars(args).items()
               if key not in ("func", "settings", "verbose") and value not in (None, [], False)}
    yield "options: " + ", ".join(f"{key}={format_value(value)}" for key, value in options.items())
    settings = _settings(args)
    if isinstance(settings, dict):
        yield "settings:"
        yield from (f"  {key}: {format_value(value)}" for key, value in sorted(settings.items()))
    elif settings is not None:
        yield f"settings: {settings}"
    if "torch" in sys.modules or getattr(args, "threads", None) is not None:
        import torch

        if getattr(args, "threads", None):
            torch.set_num_threads(args.threads)
        yield (f"device: {_device()}, torch {torch.__version__}, "
               f"{torch.get_num_threads()} threads")
    yield f"cpus: {len(os.sched_getaffinity(0))} available, python {sys.version.split()[0]}"
    yield from (f"store {path}: {size}" for path, size in store_sizes(args).items())


def log_header(args: argparse.Namespace, argv: list[str]) -> None:
    """Write the job header to the log (rank 0 only under torchrun)."""
    if os.environ.get("RANK", "0") != "0":
        return
    for line in job_header(args, argv):
        log.info(line)
