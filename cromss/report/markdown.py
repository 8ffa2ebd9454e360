"""Markdown of tables 1-4 as the paper prints them: percent, ``mean ± std``, yes/no, bold marks.

In tables 1-3 the paper columns carry the paper's own bold marks (``bold_in_paper`` of the
reference CSVs); our columns mark the best of our rows within each input and setting, only where
it is better than every other by more than the noise (:func:`best_index`). A column that says
nothing in this run (``mIoU (ref.)`` equal to ``mIoU`` in every row) is left out and the note
says so. The same choices make the HTML tables of the report (:mod:`cromss.report.html_tables`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from cromss.report.provenance import Provenance
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
ABLATION_NOTE = ("Pretraining statistics at the last epoch in percent; selection precision: share "
                 "of kept pixels whose noisy label equals the true label. mIoU: strict "
                 "convention; mIoU (ref.): reference convention.")
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


BOLD_NOTE = ("Bold in our columns: the best of our rows within the same input and setting, only "
             "where it beats every other by more than the larger of the two standard deviations "
             "over seeds (never with a single seed); a difference within one std is noise.")


def best_index(table: pd.DataFrame, column: str, groups: Sequence[str]) -> set[int]:
    """Row labels holding the best value of ``column`` within each group, where it is better
    than every other row of the group by more than the larger of the two rows' standard
    deviations (``{column}_std``): a difference inside one std is noise, a value without a std
    (one seed) is never marked, nor a group of one."""
    if column in NOT_RANKED or f"{column}_std" not in table:
        return set()
    values = pd.to_numeric(table[column], errors="coerce")
    stds = pd.to_numeric(table[f"{column}_std"], errors="coerce")
    sign = -1.0 if column in LOWER_IS_BETTER else 1.0
    keys = [table[g] for g in groups] if groups else pd.Series(0, index=table.index)
    marked = set()
    for _, members in values[values.notna()].groupby(keys):
        if len(members) < 2:
            continue
        best = (sign * members).idxmax()
        others = members.drop(best)
        margin = sign * (members[best] - others)
        noise = pd.concat([stds[others.index], pd.Series(stds[best], index=others.index)],
                          axis=1).max(axis=1, skipna=False)
        if (margin > noise).all():
            marked.add(best)
    return marked


def uninformative(table: pd.DataFrame, column: str, same_as: str) -> bool:
    """Whether ``column`` shows the same text as ``same_as`` in every row (e.g. ``mIoU_ref``
    where no class is absent from both prediction and truth)."""
    if column not in table or same_as not in table:
        return True
    def shown(name: str) -> list[str]:
        return [format_value(m, s) for m, s in zip(table[name], table.get(f"{name}_std",
                                                                       [None] * len(table)))]
    return shown(column) == shown(same_as)


def informative_values(table: pd.DataFrame, values: Sequence[tuple[str, str]]
                       ) -> tuple[list[tuple[str, str]], str]:
    """``values`` without ``mIoU_ref`` where it repeats ``mIoU``, and the note saying so."""
    if uninformative(table, "mIoU_ref", "mIoU"):
        return ([v for v in values if v[1] != "mIoU_ref"],
                "mIoU (ref.) is left out: it equals mIoU in every row of this run (no class is "
                "absent from both prediction and truth of a test split); the CSV keeps it.")
    return list(values), ""


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


def provenance_lines(provenance: Provenance | None) -> str:
    """Where our rows come from and what they compare with, as the first lines of a table."""
    if provenance is None:
        return "Our rows: provenance not given."
    return f"{provenance.sentence()} {provenance.comparability()}"


def transfer_markdown(table: pd.DataFrame, title: str,
                      provenance: Provenance | None = None) -> str:
    """Markdown of table 1/2/3: every published row, ours beside where run."""
    values, dropped = informative_values(table, TRANSFER_MD_VALUES)
    body = render_markdown(table, TRANSFER_MD_COLUMNS, values,
                           groups=("input", "setting"), fixed_bold=paper_bold(table))
    note = " ".join(filter(None, [CONVENTION_NOTE, "Bold in the paper columns: as printed in the "
                                  "paper.", BOLD_NOTE, dropped, "Empty: not run here."]))
    return f"## {title}\n\n{provenance_lines(provenance)}\n\n{note}\n\n{body}"


def ablation_markdown(table: pd.DataFrame, title: str,
                      provenance: Provenance | None = None) -> str:
    """Markdown of table 4 (built by ``tables.ablation_table``: percent, yes/no)."""
    present = table.reindex(columns=[c for _, c in ABLATION_MD_COLUMNS])
    table = table.assign(**{c: present[c].fillna("") for c in present.columns})
    values, dropped = informative_values(table, [(h, c) for h, c in ABLATION_MD_VALUES
                                                 if c in table.columns])
    body = render_markdown(table, ABLATION_MD_COLUMNS, values, groups=())
    note = " ".join(filter(None, [ABLATION_NOTE, "Bold: the best mIoU, only where it beats "
                                  "every other by more than one std over seeds (one pretraining "
                                  "run per variant: its statistics are never marked).", dropped]))
    return f"## {title}\n\n{provenance_lines(provenance)}\n\n{note}\n\n{body}"
