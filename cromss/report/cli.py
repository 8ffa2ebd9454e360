"""The report stage's commands: ``tables``, ``table4``, ``figure`` and ``metrics-summary``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cromss.atomic import atomic_path
from cromss.config import load_settings

FIGURES = ("pretrain-curves", "selection", "class-iou", "confusion", "samples", "predictions")
TABLE_TITLES = {"dfc2020": "Table 1: DFC2020 (PSPNet)", "dw": "Table 2: SSL4EO-S12@DW (DeepLabv3+)",
                "osm": "Table 3: SSL4EO-S12@OSM (FPN)"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's sub-commands."""
    tables = subparsers.add_parser("tables", help="table 1/2/3 of one task, paper values beside")
    tables.add_argument("--task", required=True, choices=sorted(TABLE_TITLES))
    tables.add_argument("--metrics", nargs="+", required=True, type=Path, metavar="FILE")
    tables.add_argument("--reference", required=True, type=Path,
                        help="reference/paper_tableN_*.csv")
    tables.add_argument("--variants", default="{}", metavar="JSON|FILE",
                        help="the pretrain settings section (or its variants mapping)")
    tables.add_argument("--encoder", help="encoder name when metrics.json has no 'encoder' key")
    tables.add_argument("--out", required=True, type=Path, help="tableN.csv (tableN.md beside)")
    tables.set_defaults(func=run_tables)

    table4 = subparsers.add_parser("table4", help="the pretraining ablation on this run")
    table4.add_argument("--pretrain-logs", nargs="+", required=True, type=Path, metavar="LOG",
                        help="results/pretrain/{variant}/log.jsonl")
    table4.add_argument("--variants", required=True, metavar="JSON|FILE",
                        help="the pretrain settings section (or its variants mapping)")
    table4.add_argument("--metrics", nargs="*", default=[], type=Path, metavar="FILE",
                        help="metrics.json of the ablation transfer (random adds a baseline row)")
    table4.add_argument("--out", required=True, type=Path, help="table4.csv (table4.md beside)")
    table4.set_defaults(func=run_table4)

    figure = subparsers.add_parser("figure", help="one report figure as PNG")
    figure.add_argument("name", choices=FIGURES)
    figure.add_argument("--pretrain-logs", nargs="*", default=[], type=Path, metavar="LOG")
    figure.add_argument("--metrics", nargs="*", default=[], type=Path, metavar="FILE")
    figure.add_argument("--setting", default="finetuned", choices=("frozen", "finetuned"))
    figure.add_argument("--model", nargs="*", default=[], metavar="[NAME=]PATH",
                        help="samples: a pretrained model.pt; predictions: NAME=model.pt each")
    figure.add_argument("--store", type=Path, help="the store the models run on")
    figure.add_argument("--count", type=int, default=4, help="samples or tiles shown")
    figure.add_argument("--out", required=True, type=Path)
    figure.set_defaults(func=run_figure)

    summary = subparsers.add_parser("metrics-summary", help="DVC metrics and plots files")
    summary.add_argument("--metrics", nargs="+", required=True, type=Path, metavar="FILE")
    summary.add_argument("--pretrain-logs", nargs="*", default=[], type=Path, metavar="LOG")
    summary.add_argument("--summary", required=True, type=Path, help="results/metrics/summary.json")
    summary.add_argument("--curves-dir", type=Path,
                         help="results/metrics/pretrain: one {variant}.csv per log")
    summary.set_defaults(func=run_metrics_summary)


def _logs(paths: list[Path]) -> dict:
    from cromss.report.tables import load_log, variant_of_log

    logs = {variant_of_log(p): load_log(p) for p in paths}
    if len(logs) != len(paths):
        raise ValueError("two pretraining logs of the same variant: "
                         + ", ".join(map(str, paths)))
    return logs


def _write_table(table, markdown: str, out: Path) -> None:
    """Write ``out`` (CSV) and its ``.md`` sibling, each atomically."""
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text(markdown)


def run_tables(args: argparse.Namespace) -> None:
    from cromss.report import tables
    from cromss.report.markdown import transfer_markdown

    variants = tables.resolve_variants(load_settings(args.variants))
    runs = [tables.load_run(p) for p in args.metrics]
    table = tables.transfer_table(runs, tables.load_reference(args.reference), args.task,
                                  variants, args.encoder)
    _write_table(table, transfer_markdown(table, TABLE_TITLES[args.task]), args.out)


def run_table4(args: argparse.Namespace) -> None:
    from cromss.report import tables
    from cromss.report.markdown import ablation_markdown

    variants = tables.resolve_variants(load_settings(args.variants))
    table = tables.ablation_table(_logs(args.pretrain_logs), variants,
                                  [tables.load_run(p) for p in args.metrics])
    _write_table(table, ablation_markdown(table, "Table 4: ablation on this run"), args.out)


def run_figure(args: argparse.Namespace) -> None:
    from cromss.report import figures
    from cromss.report.tables import load_run

    if args.name in ("pretrain-curves", "selection"):
        if not args.pretrain_logs:
            raise ValueError(f"figure {args.name} needs --pretrain-logs")
        logs = _logs(args.pretrain_logs)
        figure = (figures.pretrain_curves(logs) if args.name == "pretrain-curves"
                  else figures.selection_curves(logs))
    elif args.name in ("samples", "predictions"):
        from cromss.report import inference

        if not args.model or args.store is None:
            raise ValueError(f"figure {args.name} needs --model and --store")
        if args.name == "samples":
            figure = inference.selection_examples(args.model[0], args.store, args.count)
        else:
            named = dict(spec.split("=", 1) if "=" in spec else (Path(spec).parent.name, spec)
                         for spec in args.model)
            figure = inference.prediction_examples(named, args.store, args.count)
    else:
        if not args.metrics:
            raise ValueError(f"figure {args.name} needs --metrics")
        draw = figures.class_iou_bars if args.name == "class-iou" else figures.confusion_matrices
        figure = draw([load_run(p) for p in args.metrics], args.setting)
    figures.save_figure(figure, args.out)


def run_metrics_summary(args: argparse.Namespace) -> None:
    from cromss.report import tables

    summary = tables.metrics_summary([tables.load_run(p) for p in args.metrics])
    if args.curves_dir:
        if not args.pretrain_logs:
            raise ValueError("--curves-dir needs --pretrain-logs")
        logs = _logs(args.pretrain_logs)
        with atomic_path(args.curves_dir) as tmp:
            tmp.mkdir()
            for variant, log in logs.items():
                tables.pretrain_curves(log).to_csv(tmp / f"{variant}.csv", index=False)
    with atomic_path(args.summary) as tmp:
        tmp.write_text(json.dumps(summary, indent=1) + "\n")
