"""The label-noise study (``snakemake noise_study``): selection precision and downstream mIoU of
pretraining variants against the label noise of the synthetic world, with bootstrap intervals.

One *arm* is a (noise level, variant) pair: its pretraining ``log.jsonl`` and the ``metrics.json``
of its downstream runs (one per fine-tuning seed). Selection and label precision are averaged
over the epochs after the ramp (those whose kept proportion is the last epoch's), the interval a
bootstrap over those epochs; mIoU is the strict mIoU of the summed tile confusion matrices, the
interval a bootstrap over test tiles and seeds (:mod:`cromss.report.bootstrap`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cromss.errors import CromssError
from cromss.report import bootstrap
from cromss.report.tables import load_log, load_run

COLUMNS = ("level", "variant", "epochs", "label_precision", "selection_precision",
           "selection_low", "selection_high", "seeds", "tiles", "miou", "miou_low", "miou_high",
           "ci_level")


@dataclass(frozen=True)
class Arm:
    """One (noise level, variant) pair: its pretraining log and its downstream metrics files."""

    level: float
    variant: str
    log: Path
    metrics: tuple[Path, ...]


def parse_arm(values: Sequence[str]) -> Arm:
    """``LEVEL VARIANT LOG METRICS...`` as ``--arm`` gives it."""
    if len(values) < 4:
        raise CromssError(f"--arm {' '.join(values)}: give LEVEL VARIANT LOG METRICS...")
    try:
        level = float(values[0])
    except ValueError as err:
        raise CromssError(f"--arm: noise level {values[0]!r} is not a number") from err
    return Arm(level, values[1], Path(values[2]), tuple(Path(p) for p in values[3:]))


def settled_epochs(log: Sequence[Mapping[str, Any]], path: Path) -> list[Mapping[str, Any]]:
    """The epochs after the selection ramp: those keeping the last epoch's proportion."""
    last = float(log[-1].get("kept_proportion", 1.0))
    epochs = [r for r in log if abs(float(r.get("kept_proportion", 1.0)) - last) < 1e-9
              and r.get("label_precision") is not None]
    if not epochs:
        raise CromssError(f"{path}: no epoch with a label precision (a world without truth?)")
    return epochs


def precision_row(log: Sequence[Mapping[str, Any]], modality: str, path: Path,
                  **options: Any) -> dict[str, Any]:
    """Label and selection precision (percent) of the settled epochs, the latter with its
    interval. An epoch without a selection precision kept every labelled pixel."""
    epochs = settled_epochs(log, path)
    key = f"selection_precision_{modality}"
    selected = [r[key] if r.get(key) is not None else r["label_precision"] for r in epochs]
    counts = np.array([[100.0 * v, 1.0] for v in selected])
    interval = bootstrap.contrast([{0: counts}], [1.0], score=bootstrap.mean_of_counts,
                                  **options)
    return {"epochs": len(epochs),
            "label_precision": 100.0 * float(np.mean([r["label_precision"] for r in epochs])),
            "selection_precision": interval.estimate, "selection_low": interval.low,
            "selection_high": interval.high}


def miou_row(runs: Sequence[Mapping[str, Any]], **options: Any) -> dict[str, Any]:
    """Strict mIoU over the runs' test tiles and seeds, with its bootstrap interval."""
    arm = {int(run["seed"]): np.asarray(run["tile_confusion_matrices"], dtype=np.int64)
           for run in runs}
    interval = bootstrap.contrast([arm], [1.0], **options)
    return {"seeds": interval.seeds, "tiles": interval.units, "miou": interval.estimate,
            "miou_low": interval.low, "miou_high": interval.high}


def noise_table(arms: Sequence[Arm], modality: str, **options: Any) -> pd.DataFrame:
    """One row per (level, variant), sorted by variant then level."""
    rows = []
    for arm in arms:
        runs = [load_run(p) for p in arm.metrics]
        for run, path in zip(runs, arm.metrics):
            if "tile_confusion_matrices" not in run:
                raise CromssError(f"{path}: no per-tile confusion matrices")
            if run["modality"] != modality:
                raise CromssError(f"{path}: a {run['modality']} run, the study is on {modality}")
        row = {"level": arm.level, "variant": arm.variant,
               **precision_row(load_log(arm.log), modality, arm.log, **options),
               **miou_row(runs, **options), "ci_level": options.get("level", bootstrap.LEVEL)}
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    if table.duplicated(["level", "variant"]).any():
        raise CromssError("two --arm of the same noise level and variant")
    return table.sort_values(["variant", "level"], ignore_index=True)


def noise_figure(table: pd.DataFrame) -> Figure:
    """Selection precision (label precision dashed) and downstream mIoU against the label noise,
    one line per variant, with the bootstrap intervals as error bars."""
    from cromss.report.figures import plt

    if table.empty:
        raise ValueError("an empty noise-study table")
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for number, (variant, rows) in enumerate(table.groupby("variant", sort=False)):
        colour = f"C{number}"
        x = rows["level"].to_numpy()
        for axis, (value, low, high) in ((left, ("selection_precision", "selection_low",
                                                 "selection_high")),
                                         (right, ("miou", "miou_low", "miou_high"))):
            y = rows[value].to_numpy()
            errors = np.clip([y - rows[low].to_numpy(), rows[high].to_numpy() - y], 0, None)
            axis.errorbar(x, y, yerr=errors, color=colour, marker="o", capsize=3, label=variant)
        left.plot(x, rows["label_precision"], color=colour, linestyle="--", alpha=0.6,
                  label=f"{variant}: label precision")
    level = float(table["ci_level"].iloc[0])
    left.set(xlabel="label noise (data.synthetic.label_noise)", ylabel="precision (%)",
             title=f"selection precision ({100 * level:.0f}% interval over epochs)")
    right.set(xlabel="label noise (data.synthetic.label_noise)", ylabel="mIoU (%)",
              title=f"downstream mIoU ({100 * level:.0f}% interval over tiles and seeds)")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    return figure
