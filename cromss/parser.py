"""The ``cromss`` parser's parts the stage modules' ``register(groups)`` see: the command groups,
the type of what ``register`` gets, and a parser whose ``--help`` shows the defaults. A leaf
module: the stage modules never import the entry point, :mod:`cromss.cli`."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

GROUPS = {
    "data": "make, download, ingest and inspect the datasets and the scenes to map",
    "pretrain": "CromSS pretraining on the noisy-label store",
    "finetune": "transfer encoders to the downstream tasks and score the transfers",
    "weights": "encoder files with model cards: exported from a pretrained model or released",
    "report": "the paper's tables, the report's figures and the files DVC reads",
    "map": "class maps of whole scenes and their figures",
}
"""The command groups, in the order of the workflow."""

Groups = Mapping[str, "argparse._SubParsersAction[Parser]"]
"""What ``register`` gets: each group's sub-parsers, by group name."""


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that ends each option with its default, unless it has none (None, False, empty) or its
    help already says what happens without it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser whose ``--help`` shows the defaults (its sub-parsers too)."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - argparse's own
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)
