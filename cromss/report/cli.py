"""The report stage's commands: ``cromss report tables | table4 | claims | calibration |
long-table | noise-study | figure | metrics-summary``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from cromss.atomic import atomic_path
from cromss.config import load_settings
from cromss.errors import CromssError

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

    from cromss.parser import Groups
    from cromss.report.provenance import Provenance

FIGURES = ("pretrain-curves", "selection", "class-iou", "confusion", "samples", "predictions",
           "ablation", "noise-study")
PROVENANCE_HELP = ("the run's data, pretrain and finetune settings (or the parts "
                   "cromss.report.provenance reads): every table says where our rows come from")
TABLE_TITLES = {"dfc2020": "Table 1: DFC2020 (PSPNet)", "dw": "Table 2: SSL4EO-S12@DW (DeepLabv3+)",
                "osm": "Table 3: SSL4EO-S12@OSM (FPN)"}


def register(groups: Groups) -> None:
    """Add ``cromss report tables | table4 | claims | long-table | figure | metrics-summary``."""
    subparsers = groups["report"]
    tables = subparsers.add_parser("tables", help="table 1/2/3 of one task, paper values beside")
    tables.add_argument("--task", required=True, choices=sorted(TABLE_TITLES),
                        help="the downstream task of the table")
    tables.add_argument("--metrics", nargs="+", required=True, type=Path, metavar="FILE",
                        help="metrics.json of every run in the table")
    tables.add_argument("--reference", required=True, type=Path,
                        help="reference/paper_tableN_*.csv")
    tables.add_argument("--variants", default="{}", metavar="JSON|FILE",
                        help="the pretrain settings section (or its variants mapping)")
    tables.add_argument("--encoder", help="encoder name when metrics.json has no 'encoder' key")
    tables.add_argument("--provenance", metavar="JSON|FILE", help=PROVENANCE_HELP)
    tables.add_argument("--out", required=True, type=Path,
                        help="tableN.csv (tableN.md and tableN.html beside)")
    tables.set_defaults(func=run_tables)

    table4 = subparsers.add_parser("table4", help="the pretraining ablation on this run")
    table4.add_argument("--pretrain-logs", nargs="+", required=True, type=Path, metavar="LOG",
                        help="results/pretrain/{variant}/log.jsonl")
    table4.add_argument("--variants", required=True, metavar="JSON|FILE",
                        help="the pretrain settings section (or its variants mapping)")
    table4.add_argument("--metrics", nargs="*", default=[], type=Path, metavar="FILE",
                        help="metrics.json of the ablation transfer (random adds a baseline row)")
    table4.add_argument("--provenance", metavar="JSON|FILE", help=PROVENANCE_HELP)
    table4.add_argument("--out", required=True, type=Path,
                        help="table4.csv (table4.md and table4.html beside)")
    table4.set_defaults(func=run_table4)

    claims = subparsers.add_parser("claims", help="the paper's claims tested on this run: "
                                   "effect, paired bootstrap interval and verdict per claim")
    claims.add_argument("--metrics", nargs="+", required=True, type=Path, metavar="FILE",
                        help="metrics.json of every transfer and ablation run")
    claims.add_argument("--reference", nargs="*", default=[], type=Path, metavar="CSV",
                        help="reference/paper_tableN_*.csv the comparative claims come from")
    claims.add_argument("--pretrain-logs", nargs="*", default=[], type=Path, metavar="LOG",
                        help="results/pretrain/{variant}/log.jsonl (selection precision)")
    claims.add_argument("--variants", default="{}", metavar="JSON|FILE",
                        help="the pretrain settings section (or its variants mapping)")
    claims.add_argument("--ablation", metavar="JSON|FILE",
                        help="finetune.ablation: {task, modality, setting} of the ablation runs")
    claims.add_argument("--calibration", type=Path, metavar="FILE",
                        help="the pretrained models' calibration (`cromss report calibration`)")
    claims.add_argument("--provenance", metavar="JSON|FILE", help=PROVENANCE_HELP)
    claims.add_argument("--out", required=True, type=Path,
                        help="claims.csv (claims.md and claims.html beside)")
    claims.set_defaults(func=run_claims)

    calibration = subparsers.add_parser("calibration", help="confidence-binned counts of "
                                        "pretrained models against the true map (held-out "
                                        "locations): the smoothing claim's evidence")
    calibration.add_argument("--model", nargs="+", required=True, metavar="NAME=PATH",
                             help="a pretrained model.pt per variant")
    calibration.add_argument("--store", required=True, type=Path,
                             help="the pretraining store (with true labels)")
    calibration.add_argument("--out", required=True, type=Path, help="calibration.json")
    calibration.set_defaults(func=run_calibration)

    long = subparsers.add_parser("long-table", help="every transfer result as one tidy table: "
                                 "a row per task, modality, weights, setting, seed and metric")
    long.add_argument("--metrics", nargs="+", required=True, type=Path, metavar="FILE",
                      help="metrics.json of every transfer and ablation run")
    long.add_argument("--out", required=True, type=Path, help="results_long.csv")
    long.set_defaults(func=run_long_table)

    noise = subparsers.add_parser("noise-study", help="selection precision and downstream mIoU "
                                  "per label-noise level and variant, with bootstrap intervals")
    noise.add_argument("--arm", nargs="+", action="append", required=True, metavar="ARG",
                       help="LEVEL VARIANT LOG METRICS...: a noise level, a variant, its "
                       "pretraining log.jsonl and the metrics.json of its downstream runs")
    noise.add_argument("--modality", required=True, choices=("s1", "s2"),
                       help="the modality transferred (its selection precision is reported)")
    noise.add_argument("--out", required=True, type=Path, help="noise_study.csv")
    noise.set_defaults(func=run_noise_study)

    figure = subparsers.add_parser("figure", help="one report figure as PNG")
    figure.add_argument("name", choices=FIGURES, help="the figure to draw")
    figure.add_argument("--pretrain-logs", nargs="*", default=[], type=Path, metavar="LOG",
                        help="pretrain-curves, selection: results/pretrain/{variant}/log.jsonl")
    figure.add_argument("--metrics", nargs="*", default=[], type=Path, metavar="FILE",
                        help="class-iou, confusion: metrics.json of the task's runs")
    figure.add_argument("--setting", default="finetuned", choices=("frozen", "finetuned"),
                        help="class-iou, confusion: the transfer setting shown")
    figure.add_argument("--model", nargs="*", default=[], metavar="[NAME=]PATH",
                        help="samples: a pretrained model.pt; predictions: NAME=model.pt each")
    figure.add_argument("--store", type=Path, help="the store the models run on")
    figure.add_argument("--count", type=int, default=4, help="samples or tiles shown")
    figure.add_argument("--table", type=Path,
                        help="ablation: table4.csv; noise-study: noise_study.csv")
    figure.add_argument("--out", required=True, type=Path, help="the PNG to write")
    figure.set_defaults(func=run_figure)

    summary = subparsers.add_parser("metrics-summary", help="the files `dvc metrics` and `dvc plots` "
                                    "read: one per task and weights, one per variant, one curve file")
    summary.add_argument("--metrics", nargs="+", required=True, type=Path, metavar="FILE",
                         help="metrics.json of every transfer run")
    summary.add_argument("--pretrain-logs", nargs="+", required=True, type=Path, metavar="LOG",
                         help="results/pretrain/{variant}/log.jsonl")
    summary.add_argument("--transfer-dir", required=True, type=Path,
                         help="writes {task}_{weights}.json: mIoU in %% per modality and setting")
    summary.add_argument("--pretrain-dir", required=True, type=Path,
                         help="writes {variant}.json: the last epoch's selection numbers in %%")
    summary.add_argument("--curves", required=True, type=Path,
                         help="CSV of every variant's per-epoch curves (a 'variant' column)")
    summary.set_defaults(func=run_metrics_summary)

    page = subparsers.add_parser("plots-page", help="the HTML template `dvc plots show` fills, with "
                                 "Vega inline (renders offline)")
    page.add_argument("--out", required=True, type=Path, help="the HTML template to write")
    page.set_defaults(func=run_plots_page)


def _logs(paths: list[Path]) -> dict:
    from cromss.report.tables import load_log, variant_of_log

    logs = {variant_of_log(p): load_log(p) for p in paths}
    if len(logs) != len(paths):
        raise CromssError("two pretraining logs of the same variant: "
                          + ", ".join(map(str, paths)))
    return logs


def _provenance(text: str | None) -> Provenance | None:
    from cromss.report.provenance import Provenance

    if not text:
        return None
    try:
        return Provenance.from_settings(load_settings(text))
    except KeyError as err:
        raise CromssError(f"--provenance: {err} missing (the table rules pass "
                          "cromss.report.provenance.provenance_settings of the config)") from err


def _write_table(table: pd.DataFrame, title: str, provenance: Provenance | None, out: Path,
                 markdown: Callable[..., str], html: Callable[..., str]) -> None:
    """Write ``out`` (CSV, with the ``ours_from`` column where we ran) and its ``.md`` and
    ``.html`` siblings, each atomically."""
    ran = table["seeds"].fillna(0) > 0
    table = table.assign(ours_from=(provenance.short() if provenance else "not given"))
    table.loc[~ran, "ours_from"] = ""
    csv_text = table.to_csv(index=False, float_format="%.4f")
    with atomic_path(out) as tmp:
        tmp.write_text(csv_text)
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text(markdown(table, title, provenance))
    with atomic_path(out.with_suffix(".html")) as tmp:
        tmp.write_text(html(table, title, provenance, csv_text, out.name), encoding="utf-8")


def run_tables(args: argparse.Namespace) -> None:
    from cromss.report import tables
    from cromss.report.html_tables import transfer_html
    from cromss.report.markdown import transfer_markdown

    variants = tables.resolve_variants(load_settings(args.variants))
    runs = [tables.load_run(p) for p in args.metrics]
    table = tables.transfer_table(runs, tables.load_reference(args.reference), args.task,
                                  variants, args.encoder)
    _write_table(table, TABLE_TITLES[args.task], _provenance(args.provenance), args.out,
                 transfer_markdown, transfer_html)


def run_table4(args: argparse.Namespace) -> None:
    from cromss.report import tables
    from cromss.report.html_tables import ablation_html
    from cromss.report.markdown import ablation_markdown

    variants = tables.resolve_variants(load_settings(args.variants))
    table = tables.ablation_table(_logs(args.pretrain_logs), variants,
                                  [tables.load_run(p) for p in args.metrics])
    _write_table(table, "Table 4: ablation on this run", _provenance(args.provenance), args.out,
                 ablation_markdown, ablation_html)


def run_claims(args: argparse.Namespace) -> None:
    from cromss.report import claims, tables
    from cromss.report.calibration import load_calibration
    from cromss.report.claims_output import claims_html, claims_markdown

    variants = tables.resolve_variants(load_settings(args.variants))
    table, not_run = claims.claims_table(
        [tables.load_run(p) for p in args.metrics],
        [tables.load_reference(p) for p in args.reference], variants, _logs(args.pretrain_logs),
        load_settings(args.ablation) if args.ablation else None,
        load_calibration(args.calibration) if args.calibration else None)
    provenance = _provenance(args.provenance)
    csv_text = table.to_csv(index=False, float_format="%.4f")
    with atomic_path(args.out) as tmp:
        tmp.write_text(csv_text)
    with atomic_path(args.out.with_suffix(".md")) as tmp:
        tmp.write_text(claims_markdown(table, not_run, provenance))
    with atomic_path(args.out.with_suffix(".html")) as tmp:
        tmp.write_text(claims_html(table, not_run, provenance, csv_text, args.out.name),
                       encoding="utf-8")


def run_calibration(args: argparse.Namespace) -> None:
    from cromss.report.calibration import write_calibration

    models = {}
    for spec in args.model:
        name, sep, path = spec.partition("=")
        if not sep or not name:
            raise CromssError(f"--model {spec!r}: give NAME=PATH")
        models[name] = Path(path)
    write_calibration(models, args.store, args.out)


def run_long_table(args: argparse.Namespace) -> None:
    from cromss.report.long_table import long_table
    from cromss.report.tables import load_run

    frame = long_table([load_run(p) for p in args.metrics])
    with atomic_path(args.out) as tmp:
        frame.to_csv(tmp, index=False)


def run_noise_study(args: argparse.Namespace) -> None:
    from cromss.report.noise_study import noise_table, parse_arm

    table = noise_table([parse_arm(values) for values in args.arm], args.modality)
    with atomic_path(args.out) as tmp:
        tmp.write_text(table.to_csv(index=False, float_format="%.4f"))


def run_figure(args: argparse.Namespace) -> None:
    from cromss.report import figures
    from cromss.report.tables import load_run

    if args.name in ("ablation", "noise-study"):
        import pandas as pd

        from cromss.report.noise_study import noise_figure

        if args.table is None or not args.table.is_file():
            raise CromssError(f"figure {args.name} needs --table, its CSV (got {args.table})")
        draw_table = figures.ablation_bars if args.name == "ablation" else noise_figure
        figure = draw_table(pd.read_csv(args.table))
    elif args.name in ("pretrain-curves", "selection"):
        if not args.pretrain_logs:
            raise CromssError(f"figure {args.name} needs --pretrain-logs")
        logs = _logs(args.pretrain_logs)
        figure = (figures.pretrain_curves(logs) if args.name == "pretrain-curves"
                  else figures.selection_curves(logs))
    elif args.name in ("samples", "predictions"):
        from cromss.report import inference

        if not args.model or args.store is None:
            raise CromssError(f"figure {args.name} needs --model and --store")
        if args.name == "samples":
            figure = inference.selection_examples(args.model[0], args.store, args.count)
        else:
            named = dict(spec.split("=", 1) if "=" in spec else (Path(spec).parent.name, spec)
                         for spec in args.model)
            figure = inference.prediction_examples(named, args.store, args.count)
    else:
        if not args.metrics:
            raise CromssError(f"figure {args.name} needs --metrics")
        draw = figures.class_iou_bars if args.name == "class-iou" else figures.confusion_matrices
        figure = draw([load_run(p) for p in args.metrics], args.setting)
    figures.save_figure(figure, args.out)


SELECTION_SHARES = {"kept_%": "kept_proportion", "label_prec_%": "label_precision",
                    "sel_prec_s1_%": "selection_precision_s1",
                    "sel_prec_s2_%": "selection_precision_s2"}
"""``dvc metrics show`` column -> the last epoch's 0-1 share in the pretraining log."""


def transfer_metric_files(summary: dict) -> dict[str, dict]:
    """``{"{task}_{weights}.json": {modality: {setting: mIoU}}}``, mIoU in % (mean of the seeds):
    ``dvc metrics show`` has one row per task and encoder and four columns (``s2.frozen`` ...);
    its std and OA are in the tables."""
    files: dict[str, dict] = {}
    for task, modalities in summary.items():
        for modality, weights in modalities.items():
            for name, settings in weights.items():
                node = files.setdefault(f"{task}_{name}.json", {}).setdefault(modality, {})
                for setting, values in settings.items():
                    node[setting] = round(values["mIoU"], 2)
    return files


def selection_metrics(last_epoch: dict) -> dict[str, float | None]:
    """The last epoch's selection numbers in % (the losses are in ``dvc plots``)."""
    shares = {column: last_epoch.get(key) for column, key in SELECTION_SHARES.items()}
    return {column: None if share is None else round(100 * share, 2)
            for column, share in shares.items()}


def _write_json_dir(files: dict[str, dict], out: Path) -> None:
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for name, content in files.items():
            (tmp / name).write_text(json.dumps(content, indent=1) + "\n")


def run_metrics_summary(args: argparse.Namespace) -> None:
    import pandas as pd

    from cromss.report import tables

    summary = tables.metrics_summary([tables.load_run(p) for p in args.metrics])
    _write_json_dir(transfer_metric_files(summary), args.transfer_dir)
    logs = _logs(args.pretrain_logs)
    _write_json_dir({f"{variant}.json": selection_metrics(log[-1])
                     for variant, log in logs.items()}, args.pretrain_dir)
    curves = pd.concat([tables.pretrain_curves(log).assign(variant=variant)
                        for variant, log in logs.items()], ignore_index=True)
    with atomic_path(args.curves) as tmp:
        curves[["variant", *tables.CURVE_COLUMNS]].to_csv(tmp, index=False)


def run_plots_page(args: argparse.Namespace) -> None:
    from cromss.report.plots_page import write_plots_page

    write_plots_page(args.out)
