"""Config values never become shell code: every path of the config reaches its job's command as
one quoted argument (issue 23, point 2). A config whose every path holds spaces, quotes and
``$(touch .../pwned)`` plans, prints and runs its jobs with those paths, and the marker file is
never created."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from cromss.cli import build_parser
from helpers.workflow import TINY, copy_workflow, snakemake

HOSTILE = "dir with 'single' \"double\" quotes $(touch {marker})"


def hostile_root(tmp_path: Path) -> tuple[Path, Path]:
    """(a folder whose name would run ``touch MARKER`` if pasted unquoted into a shell, MARKER)."""
    marker = tmp_path / "pwned"
    return tmp_path / HOSTILE.format(marker=marker), marker


def hostile_config(workdir: Path, root: Path, source: str = "synthetic") -> Path:
    """The tiny config with every path-valued key under ``root``; the files they name exist."""
    config = yaml.safe_load(TINY.read_text())
    config["data"].update(raw_dir=str(root / "raw"), store_dir=str(root / "stores"), source=source)
    if source == "real":
        local = {part: str(root / "trees" / part) for part in ("ssl4eo_s12", "noldo", "dfc2020")}
        for tree in local.values():
            Path(tree).mkdir(parents=True)
        config["data"]["real"] = {"local": local, "download_dir": str(root / "downloads")}
    scene, model = root / "scene" / "S2_B04.tif", root / "models" / "model.pt"
    for path in (scene, model):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    config["maps"]["scenes"]["user"] = {"files": [str(scene)]}
    config["maps"]["models"]["given"] = {"path": str(model), "task": "dw"}
    path = workdir / f"hostile_{source}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def planned_commands(workdir: Path, config: Path) -> dict[str, list[list[str]]]:
    """Rule -> the arguments (as a POSIX shell splits them) of each command ``snakemake -n -p``
    prints."""
    out = snakemake(workdir, "-n", "-p", "--configfile", str(config),
                    "--replace-workflow-config").stdout
    commands: dict[str, list[list[str]]] = {}
    rule = None
    for line in out.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
        elif rule and line.startswith("Shell command: ") and line != "Shell command: None":
            commands.setdefault(rule, []).append(shlex.split(line.removeprefix("Shell command: ")))
    return commands


@pytest.mark.parametrize("source", ["synthetic", "real"])
def test_every_config_path_is_one_quoted_argument_of_its_command(tmp_path, source):
    workdir = tmp_path / "workflow"
    workdir.mkdir()
    copy_workflow(workdir)
    root, marker = hostile_root(tmp_path)
    commands = planned_commands(workdir, hostile_config(workdir, root, source))
    expected_rules = {"store", "quicklook", "pretrain", "transfer_runs", "transfer_table",
                      "ablation_table", "synthetic_scene", "scene_map", "map_figure"}
    assert expected_rules | ({"synthetic_world"} if source == "synthetic" else set()) <= set(commands)
    arguments = [arg for runs in commands.values() for command in runs for arg in command]
    # a path split by the shell leaves pieces such as `quotes` or `$(touch` as arguments
    pieces = [arg for arg in arguments if "pwned" in arg or "$(touch" in arg or arg == "quotes"]
    assert pieces and all(arg.startswith(str(root)) for arg in pieces), pieces
    if source == "synthetic":
        assert str(root / "raw" / "synthetic") in arguments
    else:
        assert all(str(root / "trees" / part) in arguments
                   for part in ("ssl4eo_s12", "noldo", "dfc2020"))
    assert str(root / "stores" / "dw_test.zarr") in arguments
    assert str(root / "scene" / "S2_B04.tif") in arguments
    assert str(root / "models" / "model.pt") in arguments
    assert str(root / "raw" / "scenes" / "synthetic" / "truth" / "dw.tif") in arguments
    assert not marker.exists()
    parser = build_parser()  # and every command is one the CLI knows, with valid arguments
    for runs in commands.values():
        for command in runs:
            arguments = command[command.index("cromss") + 1:] if command[0] == "torchrun" \
                else command[1:]
            parser.parse_args(arguments[:arguments.index(">")])


@pytest.mark.slow
def test_the_data_jobs_run_with_hostile_paths_and_execute_nothing(tmp_path):
    workdir = tmp_path / "workflow"
    workdir.mkdir()
    copy_workflow(workdir)
    root, marker = hostile_root(tmp_path)
    config = hostile_config(workdir, root)
    snakemake(workdir, "--cores", "2", "--configfile", str(config), "--replace-workflow-config",
              "results/quicklooks/dfc2020_test.png")
    assert (root / "raw" / "synthetic" / "dfc2020").is_dir()
    assert (root / "stores" / "dfc2020_test.zarr" / "zarr.json").is_file()
    assert (workdir / "results" / "quicklooks" / "dfc2020_test.png").stat().st_size > 1000
    assert "samples" in (workdir / "results" / "quicklooks" / "dfc2020_test.txt").read_text()
    assert not marker.exists()
