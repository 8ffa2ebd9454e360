"""The best fine-tuned run of a task: the ``model.pt`` beside the highest-scoring ``metrics.json``
of several runs, and a copy of it that outlives the runs' own model files (which the workflow
deletes once used, unless ``finetune.keep_models``: ``results/finetune/{task}/best/``)."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cromss.atomic import atomic_path, write_file
from cromss.errors import CromssError

log = logging.getLogger(__name__)

SCORE = ("strict", "mIoU")
"""The score that ranks fine-tuned runs (``metrics.json``: strict-convention mIoU)."""


def best_model(metrics: Sequence[str | Path]) -> tuple[Path, dict[str, Any]]:
    """The ``model.pt`` beside the best of several ``metrics.json`` files (highest mIoU; the
    first of equals), and its metrics."""
    if not metrics:
        raise CromssError("no metrics files to choose the best model from")
    ranked = []
    for path in map(Path, metrics):
        result = json.loads(path.read_text())
        try:
            score = float(result[SCORE[0]][SCORE[1]])
        except (KeyError, TypeError) as err:
            raise CromssError(f"{path}: no {'.'.join(SCORE)} score") from err
        ranked.append((score, path, result))
    score, path, result = max(ranked, key=lambda item: item[0])
    model = path.with_name("model.pt")
    if not model.is_file():
        raise CromssError(f"{model}: the best run's model (mIoU {score:.2f}) is missing")
    log.info("best of %d runs: %s (mIoU %.2f)", len(ranked), model, score)
    return model, result


def save_best(metrics: Sequence[str | Path], out: str | Path, choice: str | Path) -> Path:
    """Copy the best run's model to ``out`` and say which run it is in ``choice`` (JSON: the run,
    its score and the runs it was chosen from), both atomically."""
    model, result = best_model(metrics)
    with atomic_path(out) as tmp:
        shutil.copyfile(model, tmp)
    record = {"run": str(model.parent), "score": ".".join(SCORE),
              "value": result[SCORE[0]][SCORE[1]], "chosen_from": [str(m) for m in metrics]}
    text = json.dumps(record, indent=1) + "\n"
    write_file(choice, lambda handle: handle.write(text.encode()))
    return Path(out)
