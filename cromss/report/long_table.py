"""Every transfer result as one tidy long table: ``results/tables/results_long.csv``.

One row per task, modality, weights, setting, seed and metric (the layout benchmark leaderboards
such as GEO-Bench-2 take). ``metric`` is ``OA``, ``AA``, ``mIoU`` or ``mF1`` under the strict
absent-class convention, with an ``_ref`` suffix under the reference one; ``value`` in percent;
``source`` the ``metrics.json`` it comes from. :func:`runs_from_long` turns the table back into the
runs tables 1-4 are computed from (:mod:`cromss.report.tables`), so each of them follows from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cromss.errors import CromssError
from cromss.report.tables import METRICS

KEYS = ("task", "modality", "weights", "encoder", "s2_bands", "setting", "seed")
COLUMNS = (*KEYS, "metric", "value", "source")
CONVENTION_SUFFIX = {"strict": "", "reference": "_ref"}


def long_table(runs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The long table of runs read by ``tables.load_run``, sorted by its keys and metric."""
    rows = []
    for run in runs:
        keys = {k: run.get(k) for k in KEYS}
        keys["s2_bands"] = "" if keys["s2_bands"] is None else str(keys["s2_bands"])
        keys["encoder"] = keys["encoder"] or ""
        for convention, suffix in CONVENTION_SUFFIX.items():
            for metric in METRICS:
                rows.append({**keys, "metric": metric + suffix,
                             "value": float(run[convention][metric]), "source": run["path"]})
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    repeated = frame[frame.duplicated([*KEYS, "metric"], keep=False)]
    if not repeated.empty:
        raise CromssError("the same run appears twice: "
                          + ", ".join(sorted(set(repeated["source"]))))
    return frame.sort_values([*KEYS, "metric"], kind="stable").reset_index(drop=True)


def read_long_table(path: str | Path) -> pd.DataFrame:
    """Read ``results_long.csv`` back (keys as written: ``s2_bands`` and ``encoder`` as text)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: long results table not found")
    frame = pd.read_csv(path, dtype={"s2_bands": "string", "encoder": "string"},
                        keep_default_na=False)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise CromssError(f"{path}: long results table lacks columns {', '.join(missing)}")
    return frame.astype({"seed": int, "value": float})


def runs_from_long(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The runs (as ``tables.load_run`` gives them, scores only) of a long table."""
    runs = []
    for keys, group in frame.groupby(list(KEYS), sort=False):
        run: dict[str, Any] = dict(zip(KEYS, keys))
        run["seed"] = int(run["seed"])
        run["s2_bands"] = int(run["s2_bands"]) if run["s2_bands"] else None
        values = dict(zip(group["metric"], group["value"].astype(float)))
        for convention, suffix in CONVENTION_SUFFIX.items():
            missing = [m + suffix for m in METRICS if m + suffix not in values]
            if missing:
                raise CromssError(f"long table: run {keys} lacks {', '.join(missing)}")
            run[convention] = {m: values[m + suffix] for m in METRICS}
        run["path"] = str(group["source"].iloc[0])
        runs.append(run)
    return runs
