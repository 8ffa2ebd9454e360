"""The paper's claims, tested on this run: ``results/tables/claims.{csv,md}``.

Comparative claims are read off the published tables (``reference/``): a claim is a contrast of
published rows (two, or four for a difference of gains) and the direction the paper's numbers
show. Families, per task, input and setting where the paper has the rows:

- ``pretraining beats random``: CromSS (midF, lateF) minus random init;
- ``gain larger for S2 than S1``: (CromSS - random) on S2 minus the same on S1;
- ``middle vs late fusion``: CromSS-midF minus CromSS-lateF;
- ``frozen CromSS vs fine-tuned random``: frozen CromSS minus fine-tuned random init.

Mechanism claims the method rests on, on this run only (no published counterpart):

- ``selection precision``: the share of right noisy labels among the pixels the selection keeps
  exceeds the share among all pixels, per modality (pretraining log, the epochs after the ramp);
- ``ablation``: each component (selection, smoothing) raises the downstream mIoU of the ablation
  transfer (a variant with that one component off against the full variant);
- ``smoothing calibration``: label smoothing lowers over-confidence, measured as the calibration
  error (ECE) of the pretrained model against the true map on held-out locations
  (:mod:`cromss.report.calibration`; synthetic data only).

Every claim that this run can test gets its effect (our mIoU contrast, in points; the paper's
beside it), a paired bootstrap interval over seeds and test tiles (:mod:`cromss.report.bootstrap`)
and a verdict at the stated level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cromss.errors import CromssError
from cromss.report import bootstrap
from cromss.report.calibration import ece_of_counts
from cromss.report.tables import is_full_cromss, run_row

METRIC = "mIoU"
CROMSS = ("CromSS-midF", "CromSS-lateF")
S1_PARTNER = "13"
"""S2 bands of the pretraining pairs the paper's S1 CromSS rows come from."""
COLUMNS = ("family", "claim", "task", "metric", "direction", "paper_effect", "paper_std", "effect",
           "low", "high", "level", "seeds", "units", "seeds_agreeing", "verdict", "arms")
"""``effect``, ``low``, ``high`` and ``paper_effect`` are in the claimed direction (positive
supports the claim); ``direction`` is the sign of the contrast the claim states (``arms``: the
rows and their weights); ``paper_std``: the published contrast's std (from the rows' stds)."""
TASK_OF_DATASET = {"DFC2020": "dfc2020", "SSL4EO-S12@DW": "dw", "SSL4EO-S12@OSM": "osm"}

ArmKey = tuple[str, str, str, str, str]
"""(task, input, paper weights name, s2_bands, paper setting)."""


@dataclass(frozen=True)
class Claim:
    """A contrast of arms and the sign the claim gives it."""

    family: str
    statement: str
    task: str
    arms: tuple[ArmKey, ...]
    weights: tuple[float, ...]
    direction: int
    paper_effect: float = float("nan")
    paper_std: float = float("nan")
    metric: str = METRIC


def _direction(effect: float) -> int:
    return 1 if effect > 0 else -1


def _bands(row_input: str, weights: str, bands: str) -> str:
    return S1_PARTNER if row_input == "S1" and weights.startswith("CromSS") else (
        "" if row_input == "S1" else bands)


def paper_claims(reference: pd.DataFrame) -> list[Claim]:
    """The comparative claims of one published table (``tables.load_reference``), skipping
    contrasts whose published effect is exactly 0."""
    task = TASK_OF_DATASET.get(str(reference["dataset"].iloc[0]))
    if task is None:
        raise CromssError(f"reference table of unknown dataset {reference['dataset'].iloc[0]!r}")
    values = {(r.input, r.weights, r.s2_bands, r.setting): float(r.mIoU)
              for r in reference.itertuples()}
    stds = {(r.input, r.weights, r.s2_bands, r.setting): float(r.mIoU_std)
            for r in reference.itertuples()}

    def key(row_input: str, weights: str, bands: str, setting: str) -> ArmKey:
        return (task, row_input, weights, _bands(row_input, weights, bands), setting)

    def make(family: str, text: str, arms: Sequence[ArmKey], weights: Sequence[float]
             ) -> Claim | None:
        if any(arm[1:] not in values for arm in arms):
            return None
        effect = sum(w * values[arm[1:]] for arm, w in zip(arms, weights))
        if effect == 0:
            return None
        word = {1: ">", -1: "<"}[_direction(effect)]
        spread = sum((w * stds[arm[1:]]) ** 2 for arm, w in zip(arms, weights)) ** 0.5
        return Claim(family, text.format(word=word), task, tuple(arms), tuple(weights),
                     _direction(effect), round(abs(effect), 4), round(spread, 4))

    claims: list[Claim | None] = []
    s2_bands = sorted({b for (i, _, b, _) in values if i == "S2"})
    for setting in ("frozen", "fine-tuned"):
        for row_input, bands in [("S1", "")] + [("S2", b) for b in s2_bands]:
            label = f"{task} {row_input}{' ' + bands + 'B' if bands else ''} {setting}"
            for cromss in CROMSS:
                claims.append(make("pretraining beats random", f"{cromss} {{word}} random on {label}",
                                   [key(row_input, cromss, bands, setting),
                                    key(row_input, "random", bands, setting)], [1, -1]))
            claims.append(make("middle vs late fusion", f"CromSS-midF {{word}} CromSS-lateF on {label}",
                               [key(row_input, c, bands, setting) for c in CROMSS], [1, -1]))
            if setting == "frozen":
                for cromss in CROMSS:
                    claims.append(make(
                        "frozen CromSS vs fine-tuned random",
                        f"frozen {cromss} {{word}} fine-tuned random on {task} {row_input}"
                        f"{' ' + bands + 'B' if bands else ''}",
                        [key(row_input, cromss, bands, "frozen"),
                         key(row_input, "random", bands, "fine-tuned")], [1, -1]))
        for cromss in CROMSS:
            claims.append(make(
                "gain larger for S2 than S1",
                f"gain of {cromss} over random: S2 {{word}} S1 on {task} {setting}",
                [key("S2", cromss, S1_PARTNER, setting), key("S2", "random", S1_PARTNER, setting),
                 key("S1", cromss, "", setting), key("S1", "random", "", setting)],
                [1, -1, -1, 1]))
    return [c for c in claims if c is not None]


def one_component_off(variants: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(full variant, variant with one component off, the component) of the same fusion and
    bands."""
    pairs = []
    for full, settings in variants.items():
        if not is_full_cromss(settings):
            continue
        for name, other in variants.items():
            off = [part for part in ("selection", "smoothing") if not other[part]["enabled"]]
            if len(off) == 1 and all(other[k] == settings[k] for k in ("fusion", "s2_bands")):
                pairs.append((full, name, off[0]))
    return pairs


def ablation_claims(variants: Mapping[str, Mapping[str, Any]], ablation: Mapping[str, str]
                    ) -> list[Claim]:
    """Full variant minus the same variant with one component off, on the ablation transfer."""
    task, modality, setting = ablation["task"], ablation["modality"], ablation["setting"]
    return [Claim("ablation", f"{part} raises mIoU: {full} > {name} on {task} "
                  f"{modality.upper()} {setting}", task,
                  ((task, "variant", full, modality, setting),
                   (task, "variant", name, modality, setting)), (1, -1), 1)
            for full, name, part in one_component_off(variants)]


def calibration_rows(calibrations: Mapping[str, Mapping[str, Any]],
                     variants: Mapping[str, Mapping[str, Any]], **options: Any
                     ) -> list[dict[str, Any]]:
    """Smoothing lowers over-confidence: ECE against the true map (percent) without smoothing
    minus with it, per modality, on the same held-out locations (units: locations)."""
    rows = []
    for full, name, part in one_component_off(variants):
        if part != "smoothing" or full not in calibrations or name not in calibrations:
            continue
        with_, without = calibrations[full], calibrations[name]
        if with_["locations"] != without["locations"]:
            raise CromssError(f"calibration of {full} and {name}: other held-out locations")
        for modality in sorted(set(with_["counts"]) & set(without["counts"])):
            claim = Claim("smoothing calibration", f"smoothing lowers the calibration error of "
                          f"{modality.upper()}: ECE {name} > {full}", "pretraining",
                          (("pretraining", "calibration", name, modality, "held-out"),
                           ("pretraining", "calibration", full, modality, "held-out")),
                          (1, -1), 1, metric="ECE (%)")
            arms = {arm: {0: np.asarray(data["counts"][modality], dtype=np.float64)}
                    for arm, data in zip(claim.arms, (without, with_))}
            row = test_contrast(claim, arms, score=ece_of_counts, **options)
            if row is not None:
                rows.append(row | {"arms": f"{name} - {full}, "
                                   f"{len(with_['locations'])} held-out locations x seasons"})
    return rows


def run_arms(runs: Sequence[Mapping[str, Any]], variants: Mapping[str, Mapping[str, Any]]
             ) -> dict[ArmKey, dict[int, np.ndarray]]:
    """Per-tile confusion matrices of every run, by paper key and by (task, 'variant', our
    weights, modality, setting), then by seed."""
    arms: dict[ArmKey, dict[int, np.ndarray]] = {}
    for run in runs:
        if "tile_confusion_matrices" not in run:
            raise CromssError(f"{run['path']}: no per-tile confusion matrices (metrics written "
                              "by an older cromss: rerun `cromss finetune evaluate`)")
        tiles = np.asarray(run["tile_confusion_matrices"], dtype=np.int64)
        row = run_row(run, variants, run.get("encoder") or "?")
        paper: ArmKey = (run["task"], row["input"], row["weights"], row["s2_bands"],
                         row["setting"])
        ours: ArmKey = (run["task"], "variant", run["weights"], run["modality"], run["setting"])
        for key in (paper, ours):
            arms.setdefault(key, {})[int(run["seed"])] = tiles
    return arms


def test_contrast(claim: Claim, arms: Mapping[ArmKey, Mapping[int, np.ndarray]],
                  score: bootstrap.Score = bootstrap.miou_of_counts, **options: Any
                  ) -> dict[str, Any] | None:
    """One row of the claims table, or None when this run lacks an arm (or shared seeds)."""
    if any(arm not in arms for arm in claim.arms):
        return None
    chosen = [arms[arm] for arm in claim.arms]
    if not set.intersection(*(set(a) for a in chosen)):
        return None
    interval = bootstrap.contrast(chosen, claim.weights, score=score, **options)
    agreeing = sum(1 for v in interval.per_seed if claim.direction * v > 0)
    low, high = sorted((claim.direction * interval.low, claim.direction * interval.high))
    return {
        "family": claim.family, "claim": claim.statement, "task": claim.task,
        "metric": claim.metric, "direction": claim.direction, "paper_effect": claim.paper_effect,
        "paper_std": claim.paper_std, "effect": claim.direction * interval.estimate,
        "low": low, "high": high,
        "level": interval.level, "seeds": interval.seeds, "units": interval.units,
        "seeds_agreeing": agreeing, "verdict": bootstrap.verdict(interval, claim.direction),
        "arms": "; ".join(f"{w:+g} {'/'.join(a[1:])}" for a, w in zip(claim.arms, claim.weights)),
    }


def selection_rows(logs: Mapping[str, Sequence[Mapping[str, Any]]],
                   variants: Mapping[str, Mapping[str, Any]], **options: Any
                   ) -> list[dict[str, Any]]:
    """Selection precision minus label precision (points) per selecting variant and modality,
    over the epochs after the ramp (units: epochs; one pretraining seed)."""
    rows = []
    for name, log in logs.items():
        settings = variants[name]
        if not settings["selection"]["enabled"] or settings["fusion"] not in ("middle", "late"):
            continue
        ramp = int(settings["selection"]["ramp_epochs"])
        for modality in ("s1", "s2"):
            key = f"selection_precision_{modality}"
            epochs = [r for r in log if int(r["epoch"]) >= ramp
                      and r.get(key) is not None and r.get("label_precision") is not None]
            if not epochs:
                continue
            gaps = np.array([[100.0 * (r[key] - r["label_precision"]), 1.0] for r in epochs])
            claim = Claim("selection precision", f"{name}: {modality.upper()} selection keeps "
                          "right labels more often than the label rate", "pretraining",
                          (("pretraining", "log", name, modality, "epochs"),), (1,), 1,
                          metric="precision gap (points)")
            row = test_contrast(claim, {claim.arms[0]: {int(settings["seed"]): gaps}},
                                score=bootstrap.mean_of_counts, **options)
            if row is not None:
                rows.append(row | {"arms": f"{name} log.jsonl, epochs {ramp}-{epochs[-1]['epoch']}"})
    return rows


def claims_table(runs: Sequence[Mapping[str, Any]], references: Sequence[pd.DataFrame],
                 variants: Mapping[str, Mapping[str, Any]],
                 logs: Mapping[str, Sequence[Mapping[str, Any]]],
                 ablation: Mapping[str, str] | None,
                 calibrations: Mapping[str, Mapping[str, Any]] | None = None, **options: Any
                 ) -> tuple[pd.DataFrame, int]:
    """Every claim this run can test (rows in :data:`COLUMNS` order) and the number of derived
    claims it cannot (an arm not run)."""
    unknown = sorted(set(logs) - set(variants))
    if unknown:
        raise CromssError(f"logs of variants without settings: {', '.join(unknown)}")
    arms = run_arms(runs, variants)
    claims = [c for ref in references for c in paper_claims(ref)]
    if ablation:
        claims += ablation_claims(variants, ablation)
    rows = [test_contrast(c, arms, **options) for c in claims]
    tested = [r for r in rows if r is not None]
    tested += selection_rows(logs, variants, **options)
    tested += calibration_rows(calibrations or {}, variants, **options)
    table = pd.DataFrame(tested, columns=list(COLUMNS))
    return table, len(rows) - sum(r is not None for r in rows)

