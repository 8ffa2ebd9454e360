"""System errors reach the user as one line naming the path and the cause, with nothing left over."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys

import pytest

from cromss import atomic
from cromss.cli import main
from cromss.errors import CromssError
from cromss.training import checkpoint, pretrain
from helpers.settings import FINETUNE_SETTINGS as SETTINGS


def test_disk_full_while_checkpointing_is_one_line_and_leaves_no_partial(stores, tmp_path,
                                                                         monkeypatch, capsys):
    real = checkpoint.torch.save

    def disk_full(payload, handle):
        real({"half": 1}, handle)  # some bytes reach the disk, then it is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a Python file raises it

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    out = tmp_path / "run"
    code = main(["finetune", "run", "--task", "dfc2020", "--modality", "s1", "--encoder", "random",
                 "--setting", "finetuned", "--seed", "0", "--train", str(stores[0]),
                 "--settings", json.dumps({**SETTINGS, "checkpoint_every": 1}), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"error: {out / 'checkpoint.pt'}: no space left on device" in err
    assert "Traceback" not in err
    assert list(out.iterdir()) == []  # no partial, no half checkpoint


def test_read_only_output_is_refused_before_any_training(tmp_path, monkeypatch, capsys):
    def read_only(*args, dir, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))

    monkeypatch.setattr(atomic.tempfile, "NamedTemporaryFile", read_only)
    monkeypatch.setattr(pretrain, "Trainer", lambda *a, **k: pytest.fail("training started"))
    settings = {"name": "midF", "fusion": "middle", "encoder": "resnet18", "epochs": 1,
                "batch_size": 2, "crop": 32}
    code = main(["pretrain", "run", "--store", str(tmp_path / "nol.zarr"), "--settings",
                 json.dumps(settings), "--out", str(tmp_path / "out")])
    assert code == 2
    assert f"error: {tmp_path / 'out'}: read-only file system" in capsys.readouterr().err


def not_logged(stderr: str) -> list[str]:
    """The lines of ``stderr`` that are not log records (the job header, progress)."""
    return [line for line in stderr.splitlines()
            if not re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ", line)]


def _cromss(code: str, tmp_path) -> subprocess.CompletedProcess:
    """Run ``code`` (which ends in ``sys.exit(main([...]))``) in a fresh interpreter."""
    return subprocess.run([sys.executable, "-c", "import sys\nfrom cromss.cli import main\n" + code],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_a_user_mistake_is_one_line_and_exit_status_2(tmp_path):
    done = _cromss(f"sys.exit(main(['data', 'synth', '--settings', '{{not: [valid', "
                   f"'--out', {str(tmp_path / 'raw')!r}]))", tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert not_logged(done.stderr) == [
        "cromss data synth: error: --settings (inline JSON): not valid JSON (Expecting property name "
        "enclosed in double quotes: line 1 column 2 (char 1)) nor flow-style YAML"]
    assert not (tmp_path / "raw").exists()


def test_a_bug_inside_a_library_keeps_its_traceback_and_is_not_a_user_error(tmp_path):
    # a ValueError raised inside numpy is a bug, not a config typo: a traceback and exit status 1
    done = _cromss("import numpy as np\nimport cromss.data.synthetic as synthetic\n"
                   "synthetic.synthesise = lambda *args: np.zeros(3).reshape(2, 2)\n"
                   f"sys.exit(main(['data', 'synth', '--out', {str(tmp_path / 'raw')!r}]))",
                   tmp_path)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "ValueError: cannot reshape array of size 3 into shape (2,2)" in done.stderr
    assert "error:" not in done.stderr


def test_main_lets_an_internal_value_error_through(monkeypatch, tmp_path):
    import cromss.data.synthetic as synthetic

    def broken(*args):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(synthetic, "synthesise", broken)
    with pytest.raises(ValueError, match="an internal invariant broke") as raised:
        main(["data", "synth", "--out", str(tmp_path / "raw")])
    assert not isinstance(raised.value, CromssError)
