"""What a job's log says: the header, one progress line per epoch, no tqdm bars in a file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

import cromss
from cromss import logs
from cromss.cli import build_parser, main


def options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(sub-command path, action) of every option and positional of every sub-command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from options(sub, (*path, name))
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield path, action


def test_every_option_has_help_text() -> None:
    missing = [f"cromss {' '.join(path)} {action.option_strings or action.dest}"
               for path, action in options(build_parser()) if not action.help]
    assert missing == []


def test_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"cromss {cromss.__version__}"


def test_every_job_log_starts_with_a_header_and_ends_with_its_time(
        tiny_world: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    png = tmp_path / "q.png"
    assert main(["data", "inspect", str(tiny_world["dw_test"]), "--png", str(png)]) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "cromss"]
    assert lines[0].startswith(f"version: cromss {cromss.__version__}")
    assert lines[1] == f"command: cromss data inspect {tiny_world['dw_test']} --png {png}"
    assert any(line.startswith("cpus: ") for line in lines)
    store_line = next(line for line in lines if line.startswith("store "))
    assert "2 samples x 1 seasons, 48 x 48 px" in store_line and "MiB" in store_line
    assert lines[-1].startswith("finished in ")


def test_header_shows_settings_one_per_line_and_the_device(tmp_path: Path) -> None:
    args = argparse.Namespace(settings='{"lr": 0.0005, "crop": {"dw": 64}}', threads=1,
                              store=tmp_path / "none.zarr", func=None, verbose=False)
    lines = list(logs.job_header(args, ["pretrain", "run", "--threads", "1"]))
    assert "settings:" in lines
    assert "  crop: {\"dw\": 64}" in lines and "  lr: 0.0005" in lines
    device = next(line for line in lines if line.startswith("device: "))
    assert "1 threads" in device and ("cpu" in device or "cuda" in device)


def test_epoch_line_reads_in_a_file() -> None:
    record = {"epoch": 2, "lr": 0.005, "train_loss": 0.51234, "val_loss": 61234.5,
              "label_precision": None, "time_s": 3.2}
    assert logs.epoch_line(record, 10) == (
        "epoch 3/10: lr 0.005, train_loss 0.5123, val_loss 6.123e+04, time_s 3.2")


def test_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    items = [1, 2, 3]
    assert logs.progress_bar(items) is items  # pytest's stderr is no terminal
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    assert list(logs.progress_bar(items, desc="x")) == items
    assert logs.progress_bar(items, disable=True) is items


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_long_loops_write_a_progress_line_per_interval_in_a_file(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    caplog.set_level(logging.INFO, logger="cromss")
    with logs.Progress("dw/s2/frozen/seed0 epoch 2/10", 400, "batches", interval=60,
                       clock=clock, initial=100) as progress:
        for _ in range(300):
            clock.now += 0.5  # 2 batches a second
            progress.update()
            progress.note(loss=0.41234)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2  # at 60 s and 120 s; none at the end of a 150 s loop
    assert lines[0] == ("dw/s2/frozen/seed0 epoch 2/10: 220/400 batches (55%), 2 batches/s, "
                        "90 s left, loss 0.4123")


def test_download_progress_counts_bytes(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    caplog.set_level(logging.INFO, logger="cromss")
    progress = logs.Progress("nol.zip", 4_000_000_000, "B", interval=30, clock=clock)
    clock.now = 30.0
    progress.update(1_500_000_000)
    assert caplog.records[-1].getMessage() == (
        "nol.zip: 1.5 GB of 4 GB (38%), 50 MB/s, 50 s left")
    quiet = logs.Progress("x", 10, "B", interval=0, clock=clock, enabled=False)
    quiet.update(5)
    assert len(caplog.records) == 1  # progress=False: no lines


def test_fine_tuning_epoch_lines_name_their_run() -> None:
    record = {"epoch": 0, "lr": 0.0005, "train_loss": 1.5}
    assert logs.epoch_line(record, 10, run="dw/s2/frozen/seed1") == (
        "dw/s2/frozen/seed1 epoch 1/10: lr 0.0005, train_loss 1.5")
