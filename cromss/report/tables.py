"""Tables 1-4: our transfer results (mean and std over seeds) with the published values beside them.

Tables 1-3 hold every published row (paper order) with ours beside it where we ran it, then our
rows without a published counterpart; each row states the paper's backbone and ours. Released
weights (``release-13B-midF`` ...) are the paper's own encoders: their rows are the paper's
``CromSS-midF 13B`` and so on. S1 rows of CromSS encoders are told apart by their S2 partner's
bands; the paper's S1 CromSS rows are those of the 13-band models (table 2 says so, tables 1 and 3
leave it empty).

Inputs are the ``metrics.json`` files written by ``cromss finetune evaluate`` and the pretraining
``log.jsonl`` files (contracts in ``docs/architecture.md``). Values are in percent. The main
columns use the *strict* convention (a class absent from prediction and ground truth has IoU 0);
``mIoU_ref`` uses the reference convention (IoU 1), which is the one the paper's code reports.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cromss.config import variant_settings, with_defaults
from cromss.errors import CromssError
from cromss.weights.released import RELEASES, release

METRICS = ("OA", "AA", "mIoU", "mF1")
KEY_COLUMNS = ("input", "backbone", "weights", "s2_bands", "setting", "pretraining")
MATCH_KEYS = ["input", "weights", "s2_bands", "setting"]
PAPER_S1_PARTNER_BANDS = "13"
"""S2 bands of the pairs the paper's S1 CromSS rows come from."""
PAPER_SETTING = {"frozen": "frozen", "finetuned": "fine-tuned"}
PAPER_FUSION_NAME = {"middle": "CromSS-midF", "late": "CromSS-lateF"}
REFERENCE_COLUMNS = ("dataset", "model", "input", "backbone", "weights", "s2_bands", "setting",
                     *[c for m in METRICS for c in (m, f"{m}_std")], "bold_in_paper")
RUN_KEYS = ("task", "modality", "weights", "setting", "seed", "strict", "reference")
PERCENT_LOG_KEYS = ("kept_proportion", "label_precision", "selection_precision_s1",
                    "selection_precision_s2")
ABLATION_COLUMNS = ("weights", "fusion", "selection", "smoothing", "epochs", "val_loss",
                    "kept_proportion", "label_precision", "selection_precision_s1",
                    "selection_precision_s2", "transfer", "mIoU", "mIoU_std", "mIoU_ref",
                    "mIoU_ref_std", "seeds")
LOG_KEYS = ("epoch", "val_loss", "kept_proportion", "label_precision",
            "selection_precision_s1", "selection_precision_s2")
CONVENTION_NOTE = ("OA, AA, mIoU, mF1: strict convention (a class absent from prediction and "
                   "ground truth counts as IoU/F1 0); mIoU_ref: reference convention (counts as "
                   "1). Mean ± sample std over seeds; paper_*: published values (Liu et al., "
                   "TGRS 2025).")


# ---------------------------------------------------------------------------------------- inputs

def load_run(path: str | Path) -> dict[str, Any]:
    """Read one ``metrics.json``; raise ``ValueError`` naming the file if a key is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metrics file not found")
    try:
        run = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CromssError(f"{path}: not valid JSON ({err})") from err
    missing = [k for k in RUN_KEYS if k not in run]
    missing += [f"{conv}.{m}" for conv in ("strict", "reference") if conv in run
                for m in METRICS if m not in run[conv]]
    if missing:
        raise CromssError(f"{path}: metrics file lacks {', '.join(missing)}")
    if run["setting"] not in PAPER_SETTING:
        raise CromssError(f"{path}: setting {run['setting']!r} is not one of "
                          f"{sorted(PAPER_SETTING)}")
    return {**run, "path": str(path)}


def load_reference(path: str | Path) -> pd.DataFrame:
    """Read a ``paper_table*.csv`` (schema in ``shared/method.md`` §9)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: reference table not found")
    table = pd.read_csv(path, dtype={"s2_bands": "string", "bold_in_paper": "string"})
    missing = [c for c in REFERENCE_COLUMNS if c not in table.columns]
    if missing:
        raise CromssError(f"{path}: reference table lacks columns {', '.join(missing)}")
    table["s2_bands"] = table["s2_bands"].fillna("")
    # S1 rows have no S2 input; table 2 notes the S2 partner of S1 CromSS rows there, tables 1
    # and 3 leave it empty: S1 rows are matched without it
    s1 = table["input"] == "S1"
    table.loc[s1, "s2_bands"] = ""
    table.loc[s1 & table["weights"].str.startswith("CromSS"), "s2_bands"] = PAPER_S1_PARTNER_BANDS
    duplicated = table.duplicated(["input", "weights", "s2_bands", "setting"])
    if duplicated.any():
        rows = table.loc[duplicated, ["input", "weights", "s2_bands", "setting"]]
        raise CromssError(f"{path}: duplicate rows {rows.values.tolist()}")
    return table


def load_log(path: str | Path) -> list[dict[str, Any]]:
    """Read a pretraining ``log.jsonl``: one JSON object per epoch, at least one epoch."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretraining log not found")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise CromssError(f"{path}:{number}: not valid JSON ({err})") from err
    if not records:
        raise CromssError(f"{path}: pretraining log is empty")
    return records


def variant_of_log(path: str | Path) -> str:
    """The variant a log belongs to: ``results/pretrain/{variant}/log.jsonl``."""
    return Path(path).parent.name


# ---------------------------------------------------------------------------------------- naming

def backbone_name(encoder: str) -> str:
    """Paper-style backbone name of an smp encoder: ``resnet18`` -> ``ResNet18``."""
    match = re.fullmatch(r"resnet(\d+)", encoder.lower())
    return f"ResNet{match.group(1)}" if match else encoder


def resolve_variants(settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Full settings of every variant, from the whole config, its ``pretrain`` section or the
    ``variants`` mapping alone), each completed with the schema's defaults (so selection and
    smoothing count as on unless switched off)."""
    if isinstance(settings.get("pretrain"), Mapping):
        settings = settings["pretrain"]
    if "variants" in settings:
        resolved = {name: variant_settings(dict(settings), name) for name in settings["variants"]}
    else:
        resolved = {name: dict(values) for name, values in settings.items()}
    unnamed = sorted(name for name, values in resolved.items() if "fusion" not in values)
    if unnamed:
        raise CromssError(f"pretraining variants without a fusion: {', '.join(unnamed)}")
    return {name: with_defaults(values, "pretrain") for name, values in resolved.items()}


def is_full_cromss(settings: Mapping[str, Any]) -> bool:
    """Whether a variant has every CromSS component on (selection and smoothing)."""
    return all(settings[part]["enabled"] for part in ("selection", "smoothing"))


def paper_weights_name(weights: str, variants: Mapping[str, Mapping[str, Any]]) -> str:
    """Paper name of our weights: ``random``, ``CromSS-midF``/``-lateF`` or ``CromSS-{variant}``.

    Released weights and variants with selection and smoothing on are named after the paper's
    rows; ablated encoders are never matched with published numbers.
    """
    if weights == "random":
        return "random"
    if weights in RELEASES:
        return PAPER_FUSION_NAME[release(weights).fusion]
    if weights not in variants:
        raise CromssError(f"weights {weights!r} is neither 'random' nor a known pretraining variant "
                          f"({sorted(variants)})")
    settings = variants[weights]
    fusion = settings["fusion"]
    if fusion in PAPER_FUSION_NAME and is_full_cromss(settings):
        return PAPER_FUSION_NAME[fusion]
    return f"CromSS-{weights}"


def partner_bands(weights: str, variants: Mapping[str, Mapping[str, Any]]) -> str:
    """S2 bands of the two-modality pretraining an S1 encoder comes from ("" for none)."""
    if weights in RELEASES:
        return str(release(weights).s2_bands)
    settings = variants.get(weights)
    return str(settings["s2_bands"]) if settings and settings["fusion"] in PAPER_FUSION_NAME else ""


def pretraining_origin(weights: str) -> str:
    """Where an encoder's pretraining happened: the authors' release or this workflow."""
    return "" if weights == "random" else "released" if weights in RELEASES else "this workflow"


def row_label(weights: str, s2_bands: str) -> str:
    """The paper's row name, e.g. ``CromSS-midF 13B`` (the bands of an S1 row: its S2 partner's)."""
    return f"{weights} {s2_bands}B" if s2_bands else weights


# ---------------------------------------------------------------------------------- aggregation

def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for a single value)."""
    series = pd.Series(values, dtype=float)
    return float(series.mean()), float(series.std(ddof=1))


def run_row(run: Mapping[str, Any], variants: Mapping[str, Mapping[str, Any]],
            encoder: str | None) -> dict[str, Any]:
    """The table keys and metric values of one run."""
    encoder_name = run.get("encoder") or encoder
    if not encoder_name:
        raise CromssError(f"{run['path']}: no 'encoder' in the metrics file and none given")
    is_s1 = run["modality"] == "s1"
    return {
        "input": run["modality"].upper(),
        "backbone": backbone_name(encoder_name),
        "weights": paper_weights_name(run["weights"], variants),
        "s2_bands": (partner_bands(run["weights"], variants) if is_s1
                     else str(run.get("s2_bands", ""))),
        "setting": PAPER_SETTING[run["setting"]],
        "pretraining": pretraining_origin(run["weights"]),
        "seed": run["seed"],
        "path": run["path"],
        **{m: float(run["strict"][m]) for m in METRICS},
        "mIoU_ref": float(run["reference"]["mIoU"]),
    }


def aggregate_runs(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Mean and std over seeds per (input, backbone, weights, s2_bands, setting)."""
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        raise CromssError("no metrics files given")
    repeated = frame[frame.duplicated([*KEY_COLUMNS, "seed"], keep=False)]
    if not repeated.empty:
        raise CromssError(f"the same row and seed appear twice: {', '.join(repeated['path'])}")
    records = []
    for key, group in frame.groupby(list(KEY_COLUMNS), sort=False):
        record = dict(zip(KEY_COLUMNS, key))
        for metric in (*METRICS, "mIoU_ref"):
            record[metric], record[f"{metric}_std"] = mean_std(group[metric].tolist())
        record["seeds"] = len(group)
        records.append(record)
    return pd.DataFrame(records)


def with_paper(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Every published row (paper order, its values as ``paper_*``, its backbone, model and bold
    marks) with our matching rows beside it, then our rows the paper does not have."""
    values = [c for m in METRICS for c in (m, f"{m}_std")]
    published = paper[[*MATCH_KEYS, "model", "backbone", *values, "bold_in_paper"]].rename(
        columns={"backbone": "paper_backbone", "bold_in_paper": "paper_bold",
                 **{c: f"paper_{c}" for c in values}})
    published = published.assign(_paper_row=range(len(published)))
    table = published.merge(ours, on=MATCH_KEYS, how="outer")
    ours_only = table["_paper_row"].isna()
    table = pd.concat([table[~ours_only].sort_values(["_paper_row", "pretraining"], kind="stable"),
                       order_rows(table[ours_only])], ignore_index=True)
    table.insert(0, "label", [row_label(w, b) for w, b in zip(table["weights"], table["s2_bands"])])
    return table.drop(columns="_paper_row").astype({"seeds": "Int64"})


def order_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Paper order: S1 before S2, random first, then weights and bands, frozen before fine-tuned."""
    order = table.assign(_random=table["weights"] != "random",
                         _setting=table["setting"] != "frozen")
    order = order.sort_values(["input", "_random", "weights", "s2_bands", "_setting"],
                              kind="stable")
    return order.drop(columns=["_random", "_setting"]).reset_index(drop=True)


def transfer_table(runs: Sequence[Mapping[str, Any]], reference: pd.DataFrame, task: str,
                   variants: Mapping[str, Mapping[str, Any]], encoder: str | None = None
                   ) -> pd.DataFrame:
    """Table 1/2/3 of ``task``: every published row, our mean and std over seeds beside it."""
    wrong = [run["path"] for run in runs if run["task"] != task]
    if wrong:
        raise CromssError(f"metrics of another task than {task!r}: {', '.join(wrong)}")
    ours = aggregate_runs(run_row(run, variants, encoder) for run in runs)
    return with_paper(ours, reference)


def ablation_table(logs: Mapping[str, Sequence[Mapping[str, Any]]],
                   variants: Mapping[str, Mapping[str, Any]],
                   runs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Table 4: per variant its components (yes/no), last-epoch selection statistics (percent)
    and downstream mIoU (percent).

    ``runs`` are the ablation task's metrics; a ``random`` run set adds a baseline row.
    """
    unknown = sorted(set(logs) - set(variants))
    if unknown:
        raise CromssError(f"logs of variants without settings: {', '.join(unknown)}")
    by_weights: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        if run["weights"] != "random" and run["weights"] not in logs:
            raise CromssError(f"{run['path']}: weights {run['weights']!r} have no pretraining log")
        by_weights.setdefault(run["weights"], []).append(run)
    for weights, group in by_weights.items():
        transfers = {(r["task"], r["modality"], r["setting"]) for r in group}
        if len(transfers) > 1:
            raise CromssError(f"weights {weights!r}: metrics of several transfers "
                              f"{sorted(transfers)}")
    rows = [ablation_row(name, variants[name], logs[name], by_weights.get(name, []))
            for name in variants if name in logs]
    if "random" in by_weights:
        rows.insert(0, ablation_row("random", {}, [], by_weights["random"]))
    table = pd.DataFrame(rows).reindex(columns=list(ABLATION_COLUMNS))
    return table.astype({"epochs": "Int64", "seeds": "Int64"})


def yes_no(flag: Any) -> str:
    return "yes" if flag else "no"


def ablation_row(name: str, settings: Mapping[str, Any], log: Sequence[Mapping[str, Any]],
                 runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One row of table 4."""
    row: dict[str, Any] = {"weights": name}
    if log:
        last = log[-1]
        missing = [k for k in LOG_KEYS if k not in last]
        if missing:
            raise CromssError(f"variant {name!r}: last log record lacks {', '.join(missing)}")
        row |= {
            "fusion": settings["fusion"],
            "selection": yes_no(settings["selection"]["enabled"]),
            "smoothing": yes_no(settings["smoothing"]["enabled"]),
            "epochs": int(last["epoch"]) + 1,
            "val_loss": float(last["val_loss"]),
            **{key: 100.0 * float(last[key]) for key in PERCENT_LOG_KEYS},
        }
    strict = [float(r["strict"]["mIoU"]) for r in runs]
    reference = [float(r["reference"]["mIoU"]) for r in runs]
    row["transfer"] = (f"{runs[0]['task']}/{runs[0]['modality']}/{runs[0]['setting']}"
                       if runs else "")
    row["mIoU"], row["mIoU_std"] = mean_std(strict) if runs else (math.nan, math.nan)
    row["mIoU_ref"], row["mIoU_ref_std"] = mean_std(reference) if runs else (math.nan, math.nan)
    row["seeds"] = len(runs)
    return row


# ------------------------------------------------------------------------------- DVC summaries

CURVE_COLUMNS = ("epoch", "lr", "train_loss", "val_loss", "kept_proportion", "label_precision",
                 "selection_precision_s1", "selection_precision_s2")


def metrics_summary(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Headline numbers, nested ``{task: {modality: {weights: {setting: {...}}}}}``: mean OA,
    mean and std of mIoU (strict), mean mIoU_ref and the number of seeds (the tables have the rest).

    ``dvc metrics show`` flattens it to one column per path, e.g. ``dw.s2.midF.frozen.mIoU``.
    """
    frame = pd.DataFrame([{**{k: run[k] for k in ("task", "modality", "weights", "setting")},
                           "seed": run["seed"], "path": run["path"],
                           **{m: float(run["strict"][m]) for m in METRICS},
                           "mIoU_ref": float(run["reference"]["mIoU"])} for run in runs])
    if frame.empty:
        raise CromssError("no metrics files given")
    keys = ["task", "modality", "weights", "setting"]
    repeated = frame[frame.duplicated([*keys, "seed"], keep=False)]
    if not repeated.empty:
        raise CromssError(f"the same run and seed appear twice: {', '.join(repeated['path'])}")
    summary: dict[str, Any] = {}
    for key, group in frame.groupby(keys):
        node = summary
        for part in key:
            node = node.setdefault(str(part), {})
        mean, std = mean_std(group["mIoU"].tolist())
        node |= {"OA": round(float(group["OA"].mean()), 4), "mIoU": round(mean, 4),
                 "mIoU_std": None if math.isnan(std) else round(std, 4),
                 "mIoU_ref": round(float(group["mIoU_ref"].mean()), 4), "seeds": len(group)}
    return summary


def pretrain_curves(log: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The per-epoch columns of a pretraining log that ``dvc plots`` draws (absent ones empty)."""
    return pd.DataFrame(list(log)).reindex(columns=list(CURVE_COLUMNS))
