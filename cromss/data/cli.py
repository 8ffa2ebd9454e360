"""Command-line sub-commands of this stage (filled in by the stage)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's sub-commands."""
