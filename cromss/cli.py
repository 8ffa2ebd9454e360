"""The ``cromss`` command line: one sub-command group per stage of the workflow.

Each stage module exposes ``register(subparsers)``; handlers import their heavy dependencies
(torch, rasterio) lazily so that ``cromss --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time

from cromss import __version__, allocator, logs, warm

COMMAND_MODULES = (
    "cromss.data.cli",
    "cromss.sources.cli",
    "cromss.training.cli",
    "cromss.release",
    "cromss.report.cli",
    "cromss.predict.cli",
)


class CromssError(Exception):
    """An error caused by the user's input: printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cromss", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"cromss {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    forwarded = warm.forward(argv)  # a child of the workflow's warm server, if one runs
    if forwarded is not None:
        return forwarded
    allocator.keep_freed_memory()
    args = build_parser().parse_args(argv)
    logs.configure(args.verbose)
    started = time.perf_counter()
    try:
        logs.log_header(args, argv)
        status = int(args.func(args) or 0)
    except (CromssError, ValueError) as err:
        print(f"cromss {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, read-only, permissions, missing files: one line, no traceback
        print(f"cromss {args.command}: error: {os_error_message(err)}", file=sys.stderr)
        return 2
    logging.getLogger("cromss").info("finished in %.1f s", time.perf_counter() - started)
    return status


def os_error_message(err: OSError) -> str:
    """``PATH: cause`` (e.g. ``/data/nol.zarr/s2/c/0: no space left on device``) of an OSError."""
    if not (err.strerror and err.filename):
        return str(err)
    paths = f"{err.filename} -> {err.filename2}" if err.filename2 else str(err.filename)
    return f"{paths}: {err.strerror[0].lower()}{err.strerror[1:]}"


if __name__ == "__main__":
    sys.exit(main())
