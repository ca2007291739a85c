"""The papers' ablation tables from ablation records (and the VOC trial records of their points).

=================  =======================================  =====================================
table              rows x columns                           measured from
=================  =======================================  =====================================
MoCo v1 Figure 3   mechanism x K (plot: top-1 over log K)   ablation records, view ``figure3``
MoCo v1 Table 3    mechanism x VOC AP50/AP/AP75 per arch    VOC trial records of figure3 points
momentum ablation  MoCo K x m                               view ``momentum``
MoCo v2 Table 1    case (v1, (a)-(e)) x top-1, VOC AP       view ``v2_table1`` (+ its VOC trials)
v2 temperature     w/o / w/ MLP x T                         view ``temperature``
=================  =======================================  =====================================

A measured cell is the mean ± std over the seeds of a point (VOC cells: over its trials); ``top-1`` is
the linear protocol's, or the kNN monitor's for short runs (said in the title). Tiny runs get their own
tables, never beside published numbers (as for Table 2); ``with_paper`` adds the published values to the
full-scale tables, and renders the published table alone when nothing was measured for it. kNN tables
also show the encoder at random initialisation, the baseline a trained encoder must beat.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from results import paper as paper_mod
from results.tables import TINY_CAPTION, Cell, Row, Table

FIG3_ORDER = ("end-to-end", "memory bank", "memory bank (NCE)", "MoCo")
VOC_METRICS = ("AP50", "AP", "AP75")
_MECH_DISPLAY = {"moco": "MoCo", "end-to-end": "end-to-end", "memory-bank": "memory bank"}


@dataclass
class AblationTable(Table):
    """A :class:`results.tables.Table` with its own title, caption and (optional) line plot over columns."""

    key: str = ""
    heading: str = ""
    caption: str = ""
    x_values: dict[str, float] = field(default_factory=dict)  # column -> x of the line plot (empty: no plot)
    xlabel: str = ""
    xscale: str = "linear"  # "log2" | "linear" | "category"
    ylabel: str = "top-1 (%)"

    @property
    def id(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", self.key)

    @property
    def title(self) -> str:
        return self.heading + (" — tiny demo" if self.tiny else "")

    @property
    def paper_table(self) -> str | None:
        return None

    def legend(self, better: str = "▲", worse: str = "▼", minus: str = "−") -> str:
        parts = [TINY_CAPTION] if self.tiny else []
        if self.caption:
            parts.append(self.caption)
        if self.measured_rows():
            parts.append("Measured cells: mean ± std over seeds (VOC: over trials), percent; [k/n]: only k of n finished.")
        if self.has_paper_rows:
            parts.append("Paper rows are the published numbers.")
        return " ".join(parts)

    def make_plots(self, plots_dir: str | Path) -> list[Path]:
        """The line plot (``plots/figure_<id>.png``) when the columns are points of a sweep, else nothing."""
        if not self.x_values:
            return []
        from results.ablation_plots import line_plot

        made = line_plot(self, Path(plots_dir) / f"figure_{self.id}.png")
        return [made] if made else []


# ----------------------------------------------------------------------------- cells

def _cell(metric: str, values: list[float], requested: int | None = None, failed: int = 0) -> Cell:
    values = [v for v in values if v is not None and math.isfinite(v)]
    mean = statistics.fmean(values) if values else None
    std = statistics.stdev(values) if len(values) > 1 else None
    return Cell(metric, mean, std, len(values), requested if requested is not None else len(values) + failed, failed)


def _measured_row(label: str, cells: dict[str, Cell], records: list[dict[str, Any]], kind: str = "pretrained") -> Row:
    finished = sum(r["status"] == "finished" for r in records)
    failed = len(records) - finished
    errors = [f"{r['point']} seed {r['seed']}: {r['error']}" for r in records if r.get("error")]
    return Row(label=label, kind=kind, sha256="", cells=cells, display=label, finished=finished, failed=failed,
               requested=len(records), trial_dirs=[str(Path(r["_path"]).parent) for r in records if r.get("_path")],
               errors=errors)


def _paper_row(label: str, values: dict[str, float], source: str, table: str) -> Row:
    return Row(label=label, kind=paper_mod.kind_of(label), sha256="", cells={m: Cell(m, v) for m, v in values.items()},
               source=source, paper_table=table, display=label)


def _fill(rows: list[Row], metrics: list[str]) -> None:
    """Give every row a cell for every column (missing: no value)."""
    for r in rows:
        for m in metrics:
            if m not in r.cells:
                r.cells[m] = Cell(m, None, None, 0 if r.measured else None, r.requested if r.measured else None)


# ----------------------------------------------------------------------------- views

@dataclass(frozen=True)
class View:
    """How one kind of sweep becomes a table: row and column of a record's params, the paper's rows."""

    title: str
    row: Callable[[dict[str, Any]], str]
    col: Callable[[dict[str, Any]], tuple[str, float]]  # (column name, x)
    paper_tables: tuple[str, ...]
    paper_parse: Callable[[str], tuple[str, str, float] | None]  # paper label -> (row, column, x)
    xlabel: str
    xscale: str
    row_order: tuple[str, ...] = ()


def _fig3_row(p: dict[str, Any]) -> str:
    name = _MECH_DISPLAY.get(p.get("mechanism", "moco"), str(p.get("mechanism")))
    return name + (" (NCE)" if p.get("mechanism") == "memory-bank" and p.get("bank_loss") == "nce" else "")


def _fig3_paper(label: str) -> tuple[str, str, float] | None:
    m = re.match(r"^(end-to-end|memory bank|MoCo) IN-1M (NCE )?K=(\d+)", label)
    if not m:
        return None
    return m.group(1) + (" (NCE)" if m.group(2) else ""), f"K={int(m.group(3))}", float(m.group(3))


def _momentum_paper(label: str) -> tuple[str, str, float] | None:
    m = re.match(r"^MoCo IN-1M K=(\d+) m=([\d.]+)$", label)
    return (f"MoCo K={m.group(1)}", f"m={float(m.group(2)):g}", float(m.group(2))) if m else None


def _temperature_paper(label: str) -> tuple[str, str, float] | None:
    m = re.match(r"^MoCo v1 T=([\d.]+) (w/o|w/) MLP$", label)
    return (f"{m.group(2)} MLP", f"T={float(m.group(1)):g}", float(m.group(1))) if m else None


VIEWS: dict[str, View] = {
    "figure3": View("Contrastive-loss mechanisms over the dictionary size K (layout of MoCo v1 Figure 3)",
                    _fig3_row, lambda p: (f"K={int(p['K'])}", float(p["K"])),
                    ("Figure 3 (data labels on plot)", "Sec. 4.1 footnote 2"), _fig3_paper,
                    "K (dictionary size, log scale)", "log2", FIG3_ORDER),
    "momentum": View("MoCo momentum ablation (layout of MoCo v1 Sec. 4.1, 'Ablation: momentum')",
                     lambda p: f"MoCo K={int(p['K'])}", lambda p: (f"m={float(p['m']):g}", float(p["m"])),
                     ("Ablation: momentum",), _momentum_paper, "momentum m", "category"),
    "temperature": View("Temperature with and without the MLP head (layout of MoCo v2 Table 1, temperature)",
                        lambda p: "w/ MLP" if p.get("mlp") else "w/o MLP",
                        lambda p: (f"T={float(p['T']):g}", float(p["T"])),
                        ("v2 Table 1 (temperature)",), _temperature_paper, "temperature T", "linear",
                        ("w/o MLP", "w/ MLP")),
}


def _metric_name(ev: str) -> str:
    return "kNN top-1" if ev == "knn" else "linear top-1"


def _ordered(names: list[str], order: tuple[str, ...]) -> list[str]:
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), names.index(n)))


def _paper_frame(tables: tuple[str, ...], paper_csv: str | None):
    df = paper_mod.load_paper_table(paper_csv)
    return df[df.table.isin(tables)]


def _sweep_table(view_name: str, records: list[dict[str, Any]], tiny: bool, ev: str, with_paper: bool,
                 paper_csv: str | None) -> AblationTable:
    """Figure 3 / momentum / temperature: rows x columns of one metric (``records`` may be empty)."""
    view = VIEWS[view_name]
    xs: dict[str, float] = {}
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    rows_seen: list[str] = []
    for r in records:
        row, (col, x) = view.row(r["params"]), view.col(r["params"])
        xs[col] = x
        cells.setdefault((row, col), []).append(r)
        if row not in rows_seen:
            rows_seen.append(row)
    rows: list[Row] = []
    for name in _ordered(rows_seen, view.row_order):
        recs = [r for (row, _), rs in cells.items() if row == name for r in rs]
        row_cells = {col: _cell(col, [r["metrics"].get("top1") for r in rs if r["status"] == "finished"],
                                failed=sum(r["status"] != "finished" for r in rs))
                     for (row, col), rs in cells.items() if row == name}
        rows.append(_measured_row(name, row_cells, recs))
    if ev == "knn" and records:  # the baseline: the same encoder before its first step
        init = {col: _cell(col, [r["metrics"].get("knn_top1_init") for (_, c), rs in cells.items() if c == col
                                 for r in rs if r["status"] == "finished"]) for col in xs}
        baseline = _measured_row("encoder at random initialisation", init, records, kind="random")
        baseline.errors = []
        rows.append(baseline)
    source_tables: list[str] = []
    if with_paper and not tiny:
        df = _paper_frame(view.paper_tables, paper_csv)
        prow: dict[str, dict[str, float]] = {}
        meta: dict[str, tuple[str, str]] = {}
        for _, line in df.iterrows():
            parsed = view.paper_parse(str(line.pretrain))
            if parsed is None:
                continue
            row, col, x = parsed
            xs.setdefault(col, x)
            prow.setdefault(row, {})[col] = float(line.value)
            meta.setdefault(row, (str(line.source), str(line.table)))
            if f"{line.source}, {line.table}" not in source_tables:
                source_tables.append(f"{line.source}, {line.table}")
        for name in _ordered(list(prow), view.row_order):
            rows.append(_paper_row(name, prow[name], *meta[name]))
    metrics = sorted(xs, key=lambda c: xs[c])
    _fill(rows, metrics)
    measured = bool(records)
    metric = _metric_name(ev) if measured else "linear top-1"
    notes = [e for r in rows for e in r.errors]
    if view_name == "momentum" and with_paper and not tiny:
        notes.append("The paper also reports m = 0: training fails (the loss oscillates).")
    if source_tables:
        notes.append("Published numbers: " + "; ".join(source_tables) + ".")
    key = f"ablation_{view_name}" + ("_tiny" if tiny else "") + (f"_{ev}" if measured else "_paper")
    return AblationTable(task=f"ablation_{view_name}", arch="", schedule="", tiny=tiny, metrics=metrics, rows=rows,
                         notes=notes, key=key, heading=f"{view.title}: {metric}" + ("" if measured else " (published)"),
                         caption=f"Columns: {view.xlabel.split(' (')[0]}; cells: {metric} (%).",
                         x_values={c: xs[c] for c in metrics}, xlabel=view.xlabel, xscale=view.xscale,
                         ylabel=f"{metric} (%)")


def _voc_trials(record: dict[str, Any], trial_records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The VOC trial records written by an ablation point (under its ``voc`` folder)."""
    voc = record.get("voc") or {}
    if not record.get("_path") or not voc:
        return []
    root = (Path(record["_path"]).parent / str(voc.get("dir", "voc"))).resolve()
    out = []
    for t in trial_records:
        path = Path(t.get("_path", "")).resolve()
        if t.get("task") == "voc_det" and root in path.parents:
            out.append(t)
    return out


def _voc_cells(trials: list[dict[str, Any]], columns: Callable[[str, str], str]) -> dict[str, Cell]:
    by: dict[str, list[dict[str, Any]]] = {}
    for t in trials:
        for m in VOC_METRICS:
            by.setdefault(columns(t["arch"], m), []).append(t)
    cells = {}
    for col, ts in by.items():
        metric = col.split()[-1]
        finished = [t for t in ts if t["status"] == "finished"]
        requested = max([len(ts)] + [int(t.get("trials_requested") or 0) for t in ts])
        cells[col] = _cell(col, [t["metrics"].get(metric) for t in finished], requested, len(ts) - len(finished))
    return cells


def _table3(records: list[dict[str, Any]], trial_records: list[dict[str, Any]], tiny: bool, with_paper: bool,
            paper_csv: str | None) -> AblationTable:
    """MoCo v1 Table 3: each mechanism's model fine-tuned on VOC; columns per detector arch."""
    from results.tables import ARCH_ORDER

    def col(arch: str, metric: str) -> str:
        return f"{arch} {metric}"

    rows: list[Row] = []
    labels: list[str] = []
    for r in records:
        if r["label"] not in labels:
            labels.append(r["label"])
    by_label = {lab: [r for r in records if r["label"] == lab] for lab in labels}
    order = {lab: (FIG3_ORDER.index(_fig3_row(rs[0]["params"])) if _fig3_row(rs[0]["params"]) in FIG3_ORDER else 9)
             for lab, rs in by_label.items()}
    for lab in sorted(labels, key=lambda lab: (order[lab], labels.index(lab))):
        trials = [t for r in by_label[lab] for t in _voc_trials(r, trial_records)]
        rows.append(_measured_row(lab, _voc_cells(trials, col), by_label[lab]))
    sources: list[str] = []
    if with_paper and not tiny:
        df = _paper_frame(("Table 3",), paper_csv)
        df = df[df.task == "voc_det"]
        for label, grp in df.groupby("pretrain", sort=False):
            values = {col(str(a), str(m)): float(v) for a, m, v in zip(grp.backbone, grp.metric, grp.value)}
            rows.append(_paper_row(str(label), values, str(grp.source.iloc[0]), "Table 3"))
        if len(df):
            sources.append("MoCo v1 (He et al. CVPR 2020), Table 3")
    archs = {c.rsplit(" ", 1)[0] for r in rows for c in r.cells}
    arch_rank = {a: (ARCH_ORDER.index(a) if a in ARCH_ORDER else len(ARCH_ORDER), a) for a in archs}
    metrics = [col(a, m) for a in sorted(archs, key=arch_rank.get) for m in VOC_METRICS]
    _fill(rows, metrics)
    measured = bool(records)
    notes = [e for r in rows for e in r.errors]
    if sources:
        notes.append("Published numbers: " + "; ".join(sources) + ".")
    return AblationTable(task="ablation_table3", arch="", schedule="", tiny=tiny, metrics=metrics, rows=rows,
                         notes=notes, key="ablation_table3" + ("_tiny" if tiny else "") + ("" if measured else "_paper"),
                         heading="Contrastive-loss mechanisms on PASCAL VOC detection (layout of MoCo v1 Table 3)"
                                 + ("" if measured else " (published)"),
                         caption="VOC07 AP50, AP and AP75 of each mechanism's model, fine-tuned with the Table 2 "
                                 "protocol (trainval07+12 -> test2007).")


def _v2_table1(records: list[dict[str, Any]], trial_records: list[dict[str, Any]], tiny: bool, ev: str,
               with_paper: bool, paper_csv: str | None) -> AblationTable:
    """MoCo v2 Table 1: ablation cases x (ImageNet top-1, VOC AP50/AP/AP75)."""
    top1 = f"{'kNN' if ev == 'knn' and records else 'linear'} top-1"
    metrics = [top1, *VOC_METRICS]
    labels: list[str] = []
    for r in records:
        if r["label"] not in labels:
            labels.append(r["label"])
    rows: list[Row] = []
    for lab in sorted(labels, key=lambda s: (s.startswith("("), s)):
        recs = [r for r in records if r["label"] == lab]
        cells = {top1: _cell(top1, [r["metrics"].get("top1") for r in recs if r["status"] == "finished"],
                             failed=sum(r["status"] != "finished" for r in recs))}
        trials = [t for r in recs for t in _voc_trials(r, trial_records)]
        first_arch = sorted({t["arch"] for t in trials})[:1]
        cells.update(_voc_cells([t for t in trials if t["arch"] in first_arch], lambda a, m: m))
        rows.append(_measured_row(lab, cells, recs))
    sources: list[str] = []
    if with_paper and not tiny:
        df = _paper_frame(("v2 Table 1",), paper_csv)
        for label, grp in df.groupby("pretrain", sort=False):
            values = {(top1 if m == "top1" else str(m)): float(v) for m, v in zip(grp.metric, grp.value)}
            rows.append(_paper_row(str(label), values, str(grp.source.iloc[0]), "v2 Table 1"))
        if len(df):
            sources.append("MoCo v2 (Chen et al. 2020), Table 1 (VOC: Faster R-CNN R50-C4)")
    _fill(rows, metrics)
    measured = bool(records)
    notes = [e for r in rows for e in r.errors]
    if sources:
        notes.append("Published numbers: " + "; ".join(sources) + ".")
    return AblationTable(task="ablation_v2_table1", arch="", schedule="", tiny=tiny, metrics=metrics, rows=rows,
                         notes=notes, key="ablation_v2_table1" + ("_tiny" if tiny else "") + (f"_{ev}" if measured else "_paper"),
                         heading="MLP head, aug+, cosine schedule (layout of MoCo v2 Table 1)"
                                 + ("" if measured else " (published)"),
                         caption=f"{top1} on the pretraining data's validation set, and VOC detection "
                                 "(Faster R-CNN C4) AP50/AP/AP75.")


# Parameters that make two points comparable; a view's own variables are left out (they vary within it).
RECIPE_KEYS = ("arch", "crop_size", "epochs", "batch_size", "lr", "mlp", "aug_plus", "cos", "T", "m", "bank_m",
               "preset")
VIEW_VARIABLES = {"figure3": {"batch_size", "lr"}, "momentum": {"m"}, "temperature": {"T", "mlp"},
                  "v2_table1": {"mlp", "aug_plus", "cos", "T", "epochs", "preset"}}
VIEW_KEYS = {"figure3": ("mechanism", "K"), "momentum": ("K", "m"), "temperature": ("T",), "v2_table1": ()}


def recipe(record: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What must be equal for points to share a table (seeds of one point are averaged, never two recipes)."""
    free = VIEW_VARIABLES.get(record["view"], set())
    return tuple((k, record["params"].get(k)) for k in RECIPE_KEYS if k not in free)


def _recipe_text(rec: tuple[tuple[str, Any], ...]) -> str:
    return "Recipe: " + ", ".join(f"{k} {v}" for k, v in rec if v is not None) + "."


def build_ablation_tables(records: list[dict[str, Any]], trial_records: list[dict[str, Any]] | None = None,
                          with_paper: bool = False, paper_csv: str | None = None,
                          unmeasured: bool | None = None) -> list[AblationTable]:
    """Tables of the ablation ``records`` (see :mod:`core.ablation_records`); with ``with_paper``, the
    published values beside full-scale ones, and (``unmeasured``, default ``with_paper``) every published ablation
    table even when not measured.

    One table per (view, tiny, eval, recipe): points run with different recipes are never averaged.
    Records without the parameters their view needs (a point that failed before its flags were parsed)
    are listed under the table of their view instead.
    """
    trial_records = trial_records or []
    tables: list[AblationTable] = []
    measured_full: set[str] = set()
    groups: dict[tuple[bool, int, str, tuple], list[dict[str, Any]]] = {}
    unusable: dict[str, list[str]] = {}
    for r in records:
        if any(k not in r["params"] for k in VIEW_KEYS[r["view"]]):
            unusable.setdefault(r["view"], []).append(f"{r['point']} seed {r['seed']}: {r.get('error') or 'no parameters'}")
            continue
        key = (bool(r.get("tiny")), VIEWS_ORDER.index(r["view"]), r["eval"], recipe(r))
        groups.setdefault(key, []).append(r)
    counts: dict[tuple[str, bool, str], int] = {}
    for (tiny, vi, ev, rec), recs in sorted(groups.items(), key=lambda kv: kv[0][:3]):
        view = VIEWS_ORDER[vi]
        n = counts[(view, tiny, ev)] = counts.get((view, tiny, ev), 0) + 1
        made = [_v2_table1(recs, trial_records, tiny, ev, with_paper, paper_csv) if view == "v2_table1"
                else _sweep_table(view, recs, tiny, ev, with_paper, paper_csv)]
        if view == "figure3":
            with_voc = [r for r in recs if r.get("voc")]
            if with_voc:
                made.append(_table3(with_voc, trial_records, tiny, with_paper, paper_csv))
                measured_full.update(() if tiny else ("table3",))
        for t in made:
            t.caption = f"{t.caption} {_recipe_text(rec)}".strip()
            t.notes += unusable.pop(view, [])
            if n > 1:
                t.key += f"_{n}"
        tables += made
        if not tiny:
            measured_full.add(view)
    if with_paper and (with_paper if unmeasured is None else unmeasured):
        for view in VIEWS_ORDER:
            if view not in measured_full:
                tables.append(_v2_table1([], [], False, "linear", True, paper_csv) if view == "v2_table1"
                              else _sweep_table(view, [], False, "linear", True, paper_csv))
            if view == "figure3" and "table3" not in measured_full:
                tables.append(_table3([], [], False, True, paper_csv))
    return tables


VIEWS_ORDER = ("figure3", "momentum", "v2_table1", "temperature")
