"""Markdown tables (README-ready).

A cell reads ``55.9±0.2 (+2.4 ▲)``: mean ± std, the gap to the supervised row in brackets, ``▲``
when the gap is ≥ +0.5 (the paper's green) and ``▼`` when it is ≤ −0.5. A cell short of trials
adds ``[3/5, 1 failed]``. The supervised reference row has no brackets.
"""

from __future__ import annotations

from results.tables import Cell, Row, Table, diff_text

MARKS = {"better": "▲", "worse": "▼"}


def _esc(text: str) -> str:
    """A table cell: ``|`` escaped, line breaks as spaces (a newline would end the row)."""
    return " ".join(str(text).replace("|", "\\|").split("\n")).replace("\r", " ")


def cell_md(cell: Cell, std: bool = True) -> str:
    """Markdown text of one cell."""
    text = cell.value_text(std=std)
    if cell.gap is not None:
        mark = MARKS.get(cell.mark or "")
        text += f" ({cell.gap_text()}{' ' + mark if mark else ''})"
    if cell.incomplete:
        text += f" [{cell.count_text()}]"
    return text


def _row_md(row: Row, table: Table, std: bool) -> str:
    cols = [_esc(c) for c in table.lead_cells(row)]
    cols += [cell_md(row.cells[m], std=std and row.measured) for m in table.metrics]
    return "| " + " | ".join(cols) + " |"


def diffs_md(table: Table) -> list[str]:
    """The differences to the supervised and random-init rows with their 95% intervals, as a second table."""
    diffs = table.diff_rows()
    if not diffs:
        return []
    lines = ["", "| pre-train | difference to | " + " | ".join(table.metrics) + " |",
             "|:---|:---|" + "|".join([":---:"] * len(table.metrics)) + "|"]
    for row, ref, d in diffs:
        lines.append(f"| {_esc(row.display)} | {_esc(ref)} | "
                     + " | ".join(diff_text(d[m]) if m in d else "—" for m in table.metrics) + " |")
    return lines


def table_md(table: Table, std: bool = True) -> str:
    """One table: heading, pipe table, caption and notes."""
    head = table.lead_columns + table.metrics
    lines = [f"### {table.title}", ""]
    if table.tiny:
        lines += ["> **Small-scale demonstration — not the paper's protocol.**", ""]
    lines += ["| " + " | ".join(head) + " |",
              "|" + "|".join([":---"] * (len(head) - len(table.metrics)) + [":---:"] * len(table.metrics)) + "|"]
    lines += [_row_md(r, table, std) for r in table.rows]
    lines += diffs_md(table)
    lines += ["", table.legend(minus="-")]
    if table.notes:
        lines += [""] + [f"- {_esc(n)}" for n in table.notes]
    return "\n".join(lines) + "\n"


def render_markdown(tables: list[Table], std: bool = True) -> str:
    """All tables, separated by blank lines."""
    return "\n".join(table_md(t, std=std) for t in tables)
