"""The ``cromss`` command line: ``cromss GROUP COMMAND``, one group per stage of the workflow.

Each stage module exposes ``register(groups)``, which adds its commands to the groups of
:data:`GROUPS` (``groups["data"]`` ...); handlers import their heavy dependencies (torch, rasterio)
lazily, so that ``cromss --help`` and the light commands never import torch. Every ``--help``
shows the defaults.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time

from cromss import __version__, allocator, logs
from cromss.errors import CromssError
from cromss.parser import GROUPS, Parser

COMMAND_MODULES = (
    "cromss.sources.cli",
    "cromss.data.cli",
    "cromss.training.cli",
    "cromss.weights.cli",
    "cromss.report.cli",
    "cromss.predict.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cromss", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"cromss {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="group", required=True, metavar="GROUP")
    groups = {name: sub.add_parser(name, help=text, description=text).add_subparsers(
        dest="command", required=True, metavar="COMMAND") for name, text in GROUPS.items()}
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    allocator.keep_freed_memory()
    args = build_parser().parse_args(argv)
    logs.configure(args.verbose)
    started = time.perf_counter()
    try:  # the user's input and the system's errors are one line; anything else is a bug
        logs.log_header(args, argv)
        status = int(args.func(args) or 0)
    except CromssError as err:  # the user's input: one line, no traceback
        print(f"cromss {args.group} {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, read-only, permissions, missing files: one line, no traceback
        print(f"cromss {args.group} {args.command}: error: {os_error_message(err)}",
              file=sys.stderr)
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
