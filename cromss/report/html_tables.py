"""Tables 1-4 as HTML for the Snakemake report: what the landing page shows and the Tables view.

Each table is one self-contained fragment (title, where our rows come from, notes, a link that
downloads its CSV, and the table): grouped headers (ours | published), the row label and the
header stick while the table scrolls, ``mean ± std`` in one cell, bold as in the Markdown
(:mod:`cromss.report.markdown`). Our rows come first (in the paper's order, the published values
of the same row beside them), then the published rows this run has none for; the key columns
(row, input, setting, our mIoU) come first, so they fit a 1366 px wide screen beside the
report's menu.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from typing import Any

import pandas as pd

from cromss.report.markdown import (ABLATION_NOTE, BOLD_NOTE, DIGITS, best_index, cell_text,
                                    format_value, informative_values, paper_bold,
                                    provenance_lines)
from cromss.report.provenance import Provenance
from cromss.report.tables import CONVENTION_NOTE, METRICS

STYLE = """<style>
.cromss-figure { margin: 0 0 2.5em 0; max-width: 100%; font-family: inherit; color: #111827; }
.cromss-figure figcaption { font-size: 0.9em; line-height: 1.45; margin-bottom: 0.6em;
                            max-width: 72em; }
.cromss-figure figcaption .title { font-size: 1.15em; font-weight: 700; display: block;
                                   margin-bottom: 0.25em; }
.cromss-figure figcaption .provenance { background: #fff7ed; border-left: 4px solid #f97316;
                                        padding: 0.3em 0.6em; display: block; margin: 0.3em 0; }
.cromss-figure .notes { font-size: 0.8em; color: #4b5563; margin: 0.4em 0 0 0; max-width: 72em; }
table.cromss-table tr.separator td { background: #f9fafb; color: #4b5563; font-style: italic;
                                     text-align: left; }
.cromss-scroll { max-width: 100%; max-height: 80vh; overflow: auto;
                 border: 1px solid #d1d5db; }
table.cromss-table { border-collapse: separate; border-spacing: 0; font-size: 13px;
                     background: #ffffff; color: #111827; margin: 0; }
table.cromss-table th, table.cromss-table td { padding: 3px 8px; white-space: nowrap;
                                               border-bottom: 1px solid #e5e7eb; }
table.cromss-table thead th { position: sticky; background: #e5e7eb; color: #111827;
                              font-weight: 600; text-align: center; z-index: 2; }
table.cromss-table thead tr:first-child th { top: 0; }
table.cromss-table thead tr:nth-child(2) th { top: 1.75em; }
table.cromss-table th.ours { background: #dbeafe; }
table.cromss-table th.paper { background: #f3f4f6; }
table.cromss-table .label { position: sticky; left: 0; background: #ffffff; text-align: left;
                            font-weight: 600; z-index: 1; }
table.cromss-table thead th.label { background: #e5e7eb; z-index: 3; }
table.cromss-table td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.cromss-table td.paper { color: #4b5563; }
table.cromss-table .std { color: #6b7280; font-size: 0.85em; }
table.cromss-table tr.ours-row td { background: #f8fbff; }
table.cromss-table tr.ours-row td.label { background: #eef5ff; }
</style>"""


def value_cell(mean: Any, std: Any, digits: int, bold: bool, css: str,
               column: str) -> str:
    """``mean ± std`` in one right-aligned cell (the std smaller), bold where marked; the
    CSV column it shows in ``data-col``."""
    text = format_value(mean, std, digits)
    start = f'<td class="num {css}" data-col="{column}">'
    if not text:
        return f"{start}</td>"
    number, _, spread = text.partition(" ± ")
    inner = escape(number) + (f'<span class="std"> ± {escape(spread)}</span>' if spread else "")
    return f'{start}{"<strong>" + inner + "</strong>" if bold else inner}</td>'


def text_cell(value: object, css: str = "") -> str:
    return f'<td class="{css}">{escape(cell_text(value))}</td>'


def header(first: Sequence[tuple[str, int, int, str]], second: Sequence[tuple[str, str]]) -> str:
    """Two header rows: (text, colspan, rowspan, css) groups, then (text, css) sub-headers."""
    top = "".join(f'<th colspan="{span}" rowspan="{rows}" class="{css}">{escape(text)}</th>'
                  for text, span, rows, css in first)
    sub = "".join(f'<th class="{css}">{escape(text)}</th>' for text, css in second)
    return f"<thead><tr>{top}</tr><tr>{sub}</tr></thead>"


def figure(anchor: str, title: str, provenance: Provenance | None, notes: Sequence[str],
           head: str, rows: Sequence[str], csv_text: str, csv_name: str) -> str:
    """The whole fragment: caption (title, provenance, notes, CSV link) and the table."""
    data = base64.b64encode(csv_text.encode()).decode()
    link = (f'<a download="{csv_name}" href="data:text/csv;charset=utf-8;base64,{data}">'
            f"Download {csv_name}</a>")
    caption = (f'<span class="title">{escape(title)} <small>({link})</small></span>'
               f'<span class="provenance">{escape(provenance_lines(provenance))}</span>')
    return (f'<meta charset="utf-8">\n{STYLE}\n<figure class="cromss-figure" id="{anchor}">'
            f"<figcaption>{caption}</figcaption>\n"
            f'<div class="cromss-scroll"><table class="cromss-table">{head}\n<tbody>\n'
            + "\n".join(rows) + "\n</tbody></table></div>\n"
            f'<p class="notes">{escape(" ".join(n for n in notes if n))}</p></figure>\n')


def transfer_html(table: pd.DataFrame, title: str, provenance: Provenance | None,
                  csv_text: str, csv_name: str) -> str:
    """Table 1/2/3: per metric our value beside the published one."""
    values, dropped = informative_values(table, [(m, m) for m in METRICS] +
                                         [("mIoU (ref.)", "mIoU_ref")])
    ours = [("mIoU", "mIoU")] + [v for v in values if v[1] != "mIoU"]
    paper = [("mIoU", "paper_mIoU")] + [(m, f"paper_{m}") for m in METRICS if m != "mIoU"]
    bold = {c: best_index(table, c, ("input", "setting")) for _, c in ours}
    bold |= paper_bold(table)
    who = provenance.short() if provenance else "this run"
    head = header([("Row", 1, 2, "label"), ("Input", 1, 2, ""), ("Setting", 1, 2, ""),
                   (f"Ours ({who})", len(ours) + 2, 1, "ours"),
                   ("Published (Liu et al., TGRS 2025)", len(paper) + 1, 1, "paper")],
                  [*[(h, "ours") for h, _ in ours], ("seeds", "ours"), ("encoder", "ours"),
                   *[(h, "paper") for h, _ in paper], ("model", "paper")])
    rows: list[str] = []
    ran_here = table["seeds"].notna()
    ordered = pd.concat([table[ran_here], table[~ran_here]])
    for index, record in ordered.iterrows():
        ran = bool(ran_here[index])
        if not ran and (not rows or "ours-row" in rows[-1]):
            rows.append(f'<tr class="separator"><td class="label" colspan="{len(ours) + 4}">'
                        "published rows without a counterpart in this run</td>"
                        f'<td colspan="{len(paper) + 1}"></td></tr>')
        cells = [text_cell(record["label"], "label"), text_cell(record["input"]),
                 text_cell(record["setting"])]
        cells += [value_cell(record[c], record.get(f"{c}_std"), 2, index in bold[c], "", c)
                  for _, c in ours]
        cells += [text_cell(record.get("seeds") if ran else ""),
                  text_cell(f"{cell_text(record.get('backbone'))}, "
                            f"{cell_text(record.get('pretraining')) or 'random init.'}"
                            if ran else "")]
        cells += [value_cell(record[c], record.get(f"{c}_std"), 2, index in bold[c], "paper",
                             c)
                  for _, c in paper]
        cells.append(text_cell(record.get("model"), "paper"))
        rows.append(f'<tr class="{"ours-row" if ran else ""}">{"".join(cells)}</tr>')
    notes = [CONVENTION_NOTE, "Bold in the published columns: as printed in the paper.",
             BOLD_NOTE, dropped, "Empty: not run here."]
    return figure(anchor_of(csv_name), title, provenance, notes, head, rows, csv_text, csv_name)


ABLATION_PRETRAIN = (("kept %", "kept_proportion"), ("label precision %", "label_precision"),
                     ("sel. precision S1 %", "selection_precision_s1"),
                     ("sel. precision S2 %", "selection_precision_s2"), ("val. loss", "val_loss"))


def ablation_html(table: pd.DataFrame, title: str, provenance: Provenance | None,
                  csv_text: str, csv_name: str) -> str:
    """Table 4: components, last-epoch pretraining statistics, downstream mIoU."""
    transfer, dropped = informative_values(table, [("mIoU", "mIoU"),
                                                   ("mIoU (ref.)", "mIoU_ref")])
    tasks = sorted({t for t in table.get("transfer", pd.Series(dtype=str)).dropna() if t})
    bold = {c: best_index(table, c, ()) for _, c in transfer}
    head = header([("Variant", 1, 2, "label"), ("Components", 3, 1, ""),
                   ("Pretraining, last epoch", len(ABLATION_PRETRAIN), 1, ""),
                   (f"Transfer ({', '.join(tasks) or 'none'})", len(transfer) + 1, 1, "ours")],
                  [("fusion", ""), ("selection", ""), ("smoothing", ""),
                   *[(h, "") for h, _ in ABLATION_PRETRAIN],
                   *[(h, "ours") for h, _ in transfer], ("seeds", "ours")])
    rows = []
    for index, record in table.iterrows():
        cells = [text_cell(record["weights"], "label"),
                 *[text_cell(record.get(c)) for c in ("fusion", "selection", "smoothing")]]
        cells += [value_cell(record.get(c), None, DIGITS.get(c, 2), False, "", c)
                  for _, c in ABLATION_PRETRAIN]
        cells += [value_cell(record[c], record.get(f"{c}_std"), 2, index in bold[c], "", c)
                  for _, c in transfer]
        cells.append(text_cell(record.get("seeds")))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    notes = [ABLATION_NOTE, "Bold: the best mIoU, only where it beats every other by more than "
             "the larger of the two standard deviations over seeds; one pretraining run per "
             "variant, so its statistics are never marked.", dropped]
    return figure(anchor_of(csv_name), title, provenance, notes, head, rows, csv_text, csv_name)


def anchor_of(csv_name: str) -> str:
    """``table1.csv`` -> ``table1``: the figure's id, for links into the landing page."""
    return csv_name.rsplit(".", 1)[0]
