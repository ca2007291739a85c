"""MoCo v1 Table 6 as one view: the six fine-tuning benchmarks of the table side by side.

The paper's layout: rows are pre-trainings (random init, supervised IN-1M, MoCo ...), columns are grouped by task,
in two blocks — COCO keypoint detection (APkp, APkp50, APkp75), COCO dense pose estimation (APdp, ...), LVIS v0.5
instance segmentation (APmk, ...); then Cityscapes instance segmentation (APmk, APmk50), Cityscapes semantic
segmentation (mIoU), PASCAL VOC semantic segmentation (mIoU). Each column is the per-task table of
:func:`results.tables.build_tables` (same means, stds, gaps to that task's supervised row, footnotes), so a
measured row appears where its records exist and "—" elsewhere; with ``with_paper`` the published rows follow,
also for tasks without any record. The tiny demonstration gets its own view (matched by task only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from results import paper as paper_mod
from results.render_md import cell_md
from results.tables import KIND_ORDER, Cell, Row, Table, _apply_gaps, build_tables, task_info

# (task, backbone, schedule) of each Table 6 column, in the paper's order, in its two blocks
TABLE6_BLOCKS: tuple[tuple[tuple[str, str, str], ...], ...] = (
    (("coco_keypoints", "R50-FPN", "2x"), ("coco_densepose", "R50-FPN", "s1x"), ("lvis_v0.5", "R50-FPN", "2x")),
    (("cityscapes_instance", "R50-FPN", "d2-cityscapes"), ("cityscapes_semseg", "R50-dilated-FCN16s", "90k"),
     ("voc_semseg", "R50-dilated-FCN16s", "30k")),
)
TABLE6_COLUMNS = tuple(c for block in TABLE6_BLOCKS for c in block)
LVIS_DAGGER = ("LVIS: the paper's supervised row (its †) was fine-tuned with the backbone's BN frozen (appendix A.4; "
               "23.2 APmk with BN tuned, 2x); `run_lvis.sh --supervised-frozen-bn` runs that variant.")


@dataclass
class Table6:
    """Per column the task's table (None: nothing to show), the row keys in display order, notes."""

    tiny: bool
    columns: list[tuple[str, str, str]]
    tables: dict[str, Table | None]
    rows: list[tuple[str, str]] = field(default_factory=list)  # (source, display): "measured" or the paper source
    notes: list[str] = field(default_factory=list)

    def cell(self, task: str, key: tuple[str, str], metric: str) -> Cell | None:
        table = self.tables.get(task)
        if table is None:
            return None
        for r in table.rows:
            if _key(r) == key:
                return r.cells.get(metric)
        return None


def _key(row: Row) -> tuple[str, str]:
    return ("measured" if row.measured else row.source, row.display)


def _paper_only_table(task: str, arch: str, schedule: str, paper_csv: str | None) -> Table | None:
    metrics = list(task_info(task).metrics)
    rows = [Row(label=pr["label"], kind=pr["kind"], sha256="", cells={m: Cell(m, pr["metrics"].get(m)) for m in metrics},
                source=pr["source"], paper_table=pr["table"], display=pr["label"])
            for pr in paper_mod.paper_rows(task, arch, schedule, paper_csv) if pr["table"] == "Table 6"]
    if not rows:
        return None
    rows.sort(key=lambda r: KIND_ORDER.get(r.kind, 2))
    table = Table(task, arch, schedule, False, metrics, rows)
    table.paper_reference = next((r for r in rows if r.kind == "supervised"), None)
    _apply_gaps(rows, table.paper_reference)
    return table


def build_table6(records: list[dict[str, Any]], with_paper: bool = False, tiny: bool = False,
                 paper_csv: str | None = None) -> Table6 | None:
    """The Table 6 view of ``records`` (None when it would be empty). Paper rows of other tables (e.g. the LVIS
    ablation of appendix A.4) stay in the per-task tables, not here."""
    tables = [t for t in build_tables(records, with_paper=with_paper, paper_csv=paper_csv) if t.tiny == tiny]
    view = Table6(tiny, list(TABLE6_COLUMNS), {})
    for task, arch, schedule in TABLE6_COLUMNS:
        match = [t for t in tables if t.task == task and (tiny or (t.arch, t.schedule) == (arch, schedule))]
        table = match[0] if match else None
        if table is not None:
            table.rows = [r for r in table.rows if r.measured or r.paper_table == "Table 6"]
        elif with_paper and not tiny:
            table = _paper_only_table(task, arch, schedule, paper_csv)
        view.tables[task] = table
    measured: list[Row] = []
    paper: list[Row] = []
    for table in view.tables.values():
        for r in table.rows if table else []:
            (measured if r.measured else paper).append(r)
    for group in (sorted(measured, key=lambda r: (KIND_ORDER.get(r.kind, 2), r.display.lower())), paper):
        for r in group:
            if _key(r) not in view.rows:
                view.rows.append(_key(r))
    if not view.rows:
        return None
    for task, _, _ in TABLE6_COLUMNS:
        table = view.tables[task]
        if table is None:
            continue
        view.notes += [f"{task_info(task).title}: {n}" for n in table.notes
                       if not n.startswith(("Published numbers", "No published numbers"))]
        if task == "lvis_v0.5" and any(not r.measured for r in table.rows):
            view.notes.append(LVIS_DAGGER)
    return view


def render_table6_markdown(view: Table6, std: bool = True) -> str:
    """The view as Markdown: one pipe table per block of the paper's layout, then the notes."""
    title = "MoCo v1 Table 6 layout: fine-tuning on six further benchmarks"
    lines = [f"### {title}" + (" — tiny demo" if view.tiny else ""), ""]
    if view.tiny:
        lines += ["> **Small-scale demonstration — not the paper's protocol.**", ""]
    for block in TABLE6_BLOCKS:
        tasks = [c[0] for c in block]
        head = ["pre-train"]
        for task in tasks:
            head += [f"{task_info(task).short or task} {m}" for m in task_info(task).metrics]
        lines += ["| " + " | ".join(head) + " |", "|:---|" + "|".join([":---:"] * (len(head) - 1)) + "|"]
        for key in view.rows:
            source, display = key
            label = display if source == "measured" else f"{display} (paper)"
            cells = []
            for task in tasks:
                for m in task_info(task).metrics:
                    cell = view.cell(task, key, m)
                    cells.append("—" if cell is None or cell.mean is None else
                                 cell_md(cell, std=std and source == "measured"))
            lines.append("| " + " | ".join([label.replace("|", "\\|"), *cells]) + " |")
        lines.append("")
    lines.append("Mean ± std over finished trials (percent); in brackets the gap to that task's supervised row (▲ ≥ "
                 "+0.5, ▼ ≤ -0.5); paper rows' gaps are to the paper's supervised row. — : no record (or no number).")
    if view.notes:
        lines += [""] + [f"- {n}" for n in view.notes]
    return "\n".join(lines) + "\n"
