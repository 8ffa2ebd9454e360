"""The command line's grammar: ``cromss GROUP COMMAND`` everywhere, every ``--help`` with its
defaults (the light commands importing no torch: tests/test_workflow.py)."""

from __future__ import annotations

import argparse

import pytest

from cromss.cli import GROUPS, build_parser, main


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def leaves() -> dict[str, argparse.ArgumentParser]:
    """``"group command"`` -> the command's parser, for every command."""
    return {f"{group} {name}": command for group, parser in subparsers(build_parser()).items()
            for name, command in subparsers(parser).items()}


def test_every_command_is_a_group_then_a_command():
    groups = subparsers(build_parser())
    assert list(groups) == list(GROUPS)
    commands = leaves()
    assert {"data synth", "data fetch", "data ingest", "data inspect", "data scene",
            "pretrain run", "finetune run", "finetune group", "finetune evaluate",
            "finetune best", "weights export", "weights release", "report tables", "report table4",
            "report claims", "report calibration", "report long-table", "report noise-study",
            "report figure", "report metrics-summary", "report plots-page", "map predict",
            "map figure"} == set(commands)
    for name, parser in commands.items():
        assert parser.prog == f"cromss {name}"
        assert callable(parser.get_default("func")), name


@pytest.mark.parametrize("name", sorted(leaves()))
def test_every_help_shows_the_defaults(name):
    parser = leaves()[name]
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        default = action.default
        if (action.help and "default" not in action.help and action.option_strings
                and default not in (None, False, [], argparse.SUPPRESS)):
            assert f"(default: {default})" in text, (name, action.dest)


def test_the_defaults_read_as_a_user_expects(capsys):
    with pytest.raises(SystemExit):
        main(["map", "predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "tile side in px (multiple of 32) (default: 256)" in text
    assert "(default: None)" not in text  # options without a default say what happens instead
