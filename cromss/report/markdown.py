"""Markdown of tables 1-4 as the paper prints them: percent, ``mean ± std``, yes/no, bold marks.

In tables 1-3 the paper columns carry the paper's own bold marks (``bold_in_paper`` of the
reference CSVs); our columns mark the best of our rows within each input and setting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from cromss.report.tables import CONVENTION_NOTE, METRICS

TRANSFER_MD_COLUMNS = (("Row", "label"), ("Input", "input"), ("Setting", "setting"),
                       ("Paper backbone", "paper_backbone"), ("Our backbone", "backbone"),
                       ("Pretraining", "pretraining"), ("Seeds", "seeds"))
TRANSFER_MD_VALUES = (*[(m, m) for m in METRICS], ("mIoU (ref.)", "mIoU_ref"),
                      *[(f"paper {m}", f"paper_{m}") for m in METRICS])
ABLATION_MD_COLUMNS = (("Weights", "weights"), ("Fusion", "fusion"), ("Selection", "selection"),
                       ("Smoothing", "smoothing"), ("Transfer", "transfer"))
ABLATION_MD_VALUES = (("kept (%)", "kept_proportion"), ("label precision (%)", "label_precision"),
                      ("sel. precision S1 (%)", "selection_precision_s1"),
                      ("sel. precision S2 (%)", "selection_precision_s2"),
                      ("val loss", "val_loss"), ("mIoU", "mIoU"), ("mIoU (ref.)", "mIoU_ref"))
DIGITS = {"val_loss": 3}
"""Decimals per column; every other value (percent) has 2, as in the paper."""
LOWER_IS_BETTER = frozenset({"val_loss"})
NOT_RANKED = frozenset({"kept_proportion", "label_precision"})
"""Properties of the schedule and the data, not better or worse."""


def format_value(mean: float, std: float | None = None, digits: int = 2) -> str:
    """``mean ± std`` with ``digits`` decimals; empty without a mean, no ``±`` without a std."""
    if mean is None or pd.isna(mean):
        return ""
    if std is None or pd.isna(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def best_index(table: pd.DataFrame, column: str, groups: Sequence[str]) -> set[int]:
    """Row labels holding the best value of ``column`` within each group (ties all count)."""
    if column in NOT_RANKED:
        return set()
    values = pd.to_numeric(table[column], errors="coerce")
    how = "min" if column in LOWER_IS_BETTER else "max"
    if groups:
        best = values.groupby([table[g] for g in groups]).transform(how)
    else:
        best = pd.Series(getattr(values, how)(), index=values.index)
    return set(table.index[(values == best) & values.notna()])


def paper_bold(table: pd.DataFrame) -> dict[str, set[int]]:
    """``paper_{metric}`` -> rows the paper set in bold (``paper_bold``: e.g. ``OA;mIoU``)."""
    marks = table.get("paper_bold", pd.Series("", index=table.index)).fillna("").astype(str)
    return {f"paper_{m}": {label for label, cell in marks.items() if m in cell.split(";")}
            for m in METRICS}


def markdown_grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (cells have ``|`` escaped)."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)]) + "\n"


def cell_text(value: object) -> str:
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def render_markdown(table: pd.DataFrame, keys: Sequence[tuple[str, str]],
                    values: Sequence[tuple[str, str]], groups: Sequence[str],
                    fixed_bold: Mapping[str, set[int]] | None = None) -> str:
    """Key columns as text, value columns as ``mean ± std``; bold: ``fixed_bold`` where given,
    else the best per group."""
    fixed_bold = fixed_bold or {}
    bold = {column: fixed_bold[column] if column in fixed_bold
            else best_index(table, column, groups) for _, column in values}
    rows = []
    for label, record in table.iterrows():
        cells = [cell_text(record.get(column)) for _, column in keys]
        for _, column in values:
            text = format_value(record[column], record.get(f"{column}_std"),
                                DIGITS.get(column, 2))
            cells.append(f"**{text}**" if text and label in bold[column] else text)
        rows.append(cells)
    return markdown_grid([h for h, _ in keys] + [h for h, _ in values], rows)


def transfer_markdown(table: pd.DataFrame, title: str) -> str:
    """Markdown of table 1/2/3: every published row, ours beside where run."""
    body = render_markdown(table, TRANSFER_MD_COLUMNS, TRANSFER_MD_VALUES,
                           groups=("input", "setting"), fixed_bold=paper_bold(table))
    note = (f"{CONVENTION_NOTE} Bold in the paper columns: as printed in the paper; in ours: the "
            "best of our rows within the same input and setting. Empty: not run here.")
    return f"## {title}\n\n{note}\n\n{body}"


def ablation_markdown(table: pd.DataFrame, title: str) -> str:
    """Markdown of table 4 (built by ``tables.ablation_table``: percent, yes/no)."""
    present = table.reindex(columns=[c for _, c in ABLATION_MD_COLUMNS])
    table = table.assign(**{c: present[c].fillna("") for c in present.columns})
    values = [(h, c) for h, c in ABLATION_MD_VALUES if c in table.columns]
    body = render_markdown(table, ABLATION_MD_COLUMNS, values, groups=())
    note = ("Pretraining statistics at the last epoch in percent; selection precision: share of "
            "kept pixels whose noisy label equals the true label. mIoU: strict convention; "
            "mIoU (ref.): reference convention. Bold: best per column (lowest val loss).")
    return f"## {title}\n\n{note}\n\n{body}"
