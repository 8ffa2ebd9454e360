"""The claims table as Markdown and as the HTML fragment that opens the report."""

from __future__ import annotations

from collections import Counter
from html import escape

import pandas as pd

from cromss.report import bootstrap
from cromss.report.html_tables import anchor_of, figure, header, text_cell
from cromss.report.markdown import markdown_grid, provenance_lines
from cromss.report.provenance import Provenance

TITLE = "Claims, tested on this run"
VERDICT_CSS = {"holds": "color:#166534", "does not hold": "color:#991b1b",
               "inconclusive": "color:#92400e"}


def method_note(not_run: int) -> str:
    """How the verdicts are reached, and what is left out."""
    level = f"{100 * bootstrap.LEVEL:g} %"
    return (f"Effect: our contrast on all test tiles, averaged over seeds (mIoU in points, strict "
            f"convention; selection: precision gap in points; calibration: ECE in points); "
            f"paper: the same contrast of the published mIoU, ± its std from the rows' stds. "
            f"Effect, interval and paper are signed in the claimed direction: positive supports "
            f"the claim. Interval: {level} percentile bootstrap ({bootstrap.REPLICATES} "
            f"replicates, RNG seed {bootstrap.RNG_SEED}), paired: each replicate resamples the "
            f"seeds and the test tiles once for all arms (selection: the epochs after the ramp). "
            f"Verdict at {level}: holds if the interval lies on the claimed side of 0, does not "
            f"hold if it lies on the other side, else inconclusive (always with fewer than "
            f"{bootstrap.MIN_UNITS} units). Seeds agreeing: seeds whose own contrast has the claimed sign. "
            f"{not_run} derived claims need runs this config does not make and are left out.")


def summary_lines(table: pd.DataFrame) -> list[str]:
    """One line per family: how many of its claims hold, do not hold, are inconclusive."""
    lines = []
    for family, group in table.groupby("family", sort=False):
        counts = Counter(group["verdict"])
        lines.append(f"{family}: " + ", ".join(f"{counts.get(v, 0)} {v}"
                                                 for v in bootstrap.VERDICTS)
                     + f" (of {len(group)})")
    return lines


def _number(value: float) -> str:
    return "" if pd.isna(value) else f"{value:+.2f}"


def _paper(effect: float, std: float) -> str:
    return "" if pd.isna(effect) else f"{effect:+.2f} ± {std:.2f}"


def claims_markdown(table: pd.DataFrame, not_run: int, provenance: Provenance | None) -> str:
    """The Markdown of ``claims.md``."""
    rows = [[r.claim, f"**{r.verdict}**", _number(r.effect), f"[{r.low:+.2f}, {r.high:+.2f}]",
             f"{r.seeds_agreeing}/{r.seeds}", str(r.units), _paper(r.paper_effect, r.paper_std), r.family]
            for r in table.itertuples()]
    grid = markdown_grid(["Claim", "Verdict", "Effect", "Interval", "Seeds agreeing", "Units",
                          "Paper", "Family"], rows)
    summary = "\n".join(f"- {line}" for line in summary_lines(table))
    return (f"# {TITLE}\n\n{provenance_lines(provenance)}\n\n{summary}\n\n{grid}\n"
            f"{method_note(not_run)}\n")


def claims_html(table: pd.DataFrame, not_run: int, provenance: Provenance | None,
                csv_text: str, csv_name: str) -> str:
    """The claims table as the report's first fragment."""
    head = header([("Claim", 1, 2, "label"), ("Verdict", 1, 2, "ours"), ("This run", 4, 1, "ours"),
                   ("Paper", 1, 2, "paper"), ("Family", 1, 2, "")],
                  [("effect", "ours"), ("interval", "ours"), ("seeds agreeing", "ours"),
                   ("units", "ours")])
    rows = []
    for r in table.itertuples():
        cells = [text_cell(r.claim, "label"),
                 f'<td data-col="verdict" style="{VERDICT_CSS.get(r.verdict, "")}"><strong>'
                 f"{escape(r.verdict)}</strong></td>",
                 f'<td class="num" data-col="effect">{_number(r.effect)}</td>',
                 f'<td class="num" data-col="interval">[{r.low:+.2f}, {r.high:+.2f}]</td>',
                 f'<td class="num" data-col="seeds_agreeing">{r.seeds_agreeing}/{r.seeds}</td>',
                 f'<td class="num" data-col="units">{r.units}</td>',
                 f'<td class="num paper" data-col="paper_effect">'
                 f"{escape(_paper(r.paper_effect, r.paper_std))}</td>",
                 text_cell(r.family)]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    notes = ["; ".join(summary_lines(table)) + ".", method_note(not_run)]
    return figure(anchor_of(csv_name), TITLE, provenance, notes, head, rows, csv_text, csv_name)
