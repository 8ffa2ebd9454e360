"""System errors reach the user as one line naming the path and the cause, with nothing left over."""

from __future__ import annotations

import errno
import json
import os

import pytest

from cromss import atomic
from cromss.cli import main
from cromss.training import checkpoint, pretrain
from test_finetune import SETTINGS, stores  # noqa: F401 (fixture)


def test_disk_full_while_checkpointing_is_one_line_and_leaves_no_partial(stores, tmp_path,  # noqa: F811
                                                                         monkeypatch, capsys):
    real = checkpoint.torch.save

    def disk_full(payload, handle):
        real({"half": 1}, handle)  # some bytes reach the disk, then it is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a Python file raises it

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    out = tmp_path / "run"
    code = main(["finetune", "--task", "dfc2020", "--modality", "s1", "--encoder", "random",
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
    code = main(["pretrain", "--store", str(tmp_path / "nol.zarr"), "--settings",
                 json.dumps(settings), "--out", str(tmp_path / "out")])
    assert code == 2
    assert f"error: {tmp_path / 'out'}: read-only file system" in capsys.readouterr().err
