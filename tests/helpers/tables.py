"""Hand-made metrics files and pretraining logs for the tables and the report."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import ROOT

REFERENCE_DFC = ROOT / "reference" / "paper_table1_dfc2020.csv"

PRETRAIN = {
    "selection": {"enabled": True}, "smoothing": {"enabled": True},
    "variants": {"midF": {"fusion": "middle"}, "lateF": {"fusion": "late"},
                 "midF-nosel": {"fusion": "middle", "selection": {"enabled": False}}},
}


def make_run(path: Path, *, task: str = "dfc2020", modality: str = "s2", weights: str = "midF",
             setting: str = "frozen", seed: int = 0, miou: float = 40.0, oa: float = 70.0,
             encoder: str | None = "resnet18", class_names: tuple[str, ...] = ("a", "b"),
             confusion: list[list[int]] | None = None, tiles: list[list[int]] | None = None
             ) -> Path:
    """Write a metrics.json with the given headline numbers (AA = OA - 10, mF1 = mIoU + 10) and,
    where given, per-tile flattened confusion matrices."""
    strict = {"OA": oa, "AA": oa - 10, "mIoU": miou, "mF1": miou + 10, "IoU": [miou, miou],
              "F1": [miou + 10] * 2}
    run = {"task": task, "modality": modality, "weights": weights, "s2_bands": 13,
           "setting": setting, "seed": seed, "num_classes": len(class_names),
           "class_names": list(class_names),
           "confusion_matrix": confusion or [[5, 1], [2, 4]], "strict": strict,
           "reference": {**strict, "mIoU": miou + 5}}
    if encoder:
        run["encoder"] = encoder
    if tiles is not None:
        run["tile_confusion_matrices"] = tiles
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run))
    return path


def write_log(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def epoch(number: int, kept: float, val_loss: float, precision: float) -> dict:
    return {"epoch": number, "lr": 0.005, "train_loss": 2.0, "val_loss": val_loss,
            "kept_proportion": kept, "label_precision": 0.7,
            "selection_precision_s1": precision, "selection_precision_s2": precision + 0.05}
