"""`cromss finetune best`: the model of the run with the highest test mIoU, copied with a record
of the choice; errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cromss.cli import main
from cromss.errors import CromssError
from cromss.training.best import best_model


def write_run(root: Path, name: str, miou: float | None, model: bytes | None = b"weights") -> Path:
    run = root / name
    run.mkdir(parents=True)
    scores = {"strict": {"mIoU": miou}} if miou is not None else {"OA": 50.0}
    (run / "metrics.json").write_text(json.dumps(scores))
    if model is not None:
        (run / "model.pt").write_bytes(model + name.encode())
    return run / "metrics.json"


def test_the_best_run_is_copied_and_the_choice_recorded(tmp_path: Path) -> None:
    metrics = [write_run(tmp_path, "a", 31.5), write_run(tmp_path, "b", 40.25),
               write_run(tmp_path, "c", 40.25)]  # equal to b: the first of equals
    out, choice = tmp_path / "best/model.pt", tmp_path / "best/choice.json"
    assert main(["finetune", "best", "--metrics", *map(str, metrics), "--out", str(out),
                 "--choice", str(choice)]) == 0
    assert out.read_bytes() == (tmp_path / "b/model.pt").read_bytes()
    record = json.loads(choice.read_text())
    assert record["run"] == str(tmp_path / "b") and record["value"] == 40.25
    assert record["chosen_from"] == [str(m) for m in metrics]
    assert sorted(p.name for p in out.parent.iterdir()) == ["choice.json", "model.pt"]


def test_a_missing_model_or_score_is_named(tmp_path: Path) -> None:
    gone = write_run(tmp_path, "gone", 50.0, model=None)
    with pytest.raises(CromssError, match=f"{tmp_path / 'gone/model.pt'}.*missing"):
        best_model([write_run(tmp_path, "kept", 10.0), gone])
    unscored = write_run(tmp_path, "unscored", None)
    with pytest.raises(CromssError, match=f"{unscored}: no strict.mIoU"):
        best_model([unscored])
    with pytest.raises(CromssError, match="no metrics files"):
        best_model([])
