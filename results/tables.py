"""Paper-style comparison tables from trial records (pandas does the grouping).

One :class:`Table` per (task, arch, schedule, tiny); one measured :class:`Row` per pretrain
(label, sha256), so runs of different configurations or weights are never averaged together. Each
:class:`Cell` is the mean over the row's finished trials, with std, the trial count and failures.

Gaps follow the paper: each row's 1-decimal mean minus the supervised row's 1-decimal mean (so a
table's printed numbers always add up), rounded half-up to 1 decimal; a gap ≥ +0.5 is marked
``better`` (the paper's green), a gap ≤ −0.5 ``worse``. The reference is the measured row with
``pretrain.kind == "supervised"``; with several, the one with the most finished trials (the choice is
noted); with none, no gaps. Paper rows (``with_paper``) get gaps to the paper's supervised row.

Rows: random init and supervised first (the paper's order), then the pretrained rows in the order the sweep gave
them (``pretrain.order``; records without one, by label), each with its method (``pretrain.method``, a ``method``
column when any row has one); records of older versions (kind ``moco``) read as pretrained
(``core.records.pretrain_of``).

Beside each gap, the uncertainty of the difference (``results.stats``): for every measured row against the
supervised row and against the random-init row, the mean paired difference over the seeds both ran with
its 95% t interval, and whether the interval excludes 0 (Welch's interval when the rows share fewer than
2 seeds, said in a note). The ±0.5 colour rule stays the paper's.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from core.records import gpu_hours_of, pretrain_of
from results import paper as paper_mod
from results.stats import LEVEL, Diff, difference

MARK_THRESHOLD = 0.5
TINY_CAPTION = ("Small-scale demonstration (tiny data and schedule), not the paper's protocol: "
                "these numbers are not comparable with the paper's.")


def task_info(task: str):
    """The registered task (title, paper table, metric order; ``transfer/tasks/``), or None for an unknown id."""
    from transfer import tasks

    return tasks.task(task)


def task_order() -> tuple[str, ...]:
    from transfer import tasks

    return tuple(tasks.tasks())


ARCH_ORDER = ("R50-dilated-C5", "R50-FPN", "R50-C4", "R50-dilated-FCN16s")  # paper sub-table order
SCHEDULE_ORDER = ("24k", "1x", "2x", "s1x", "d2-cityscapes", "90k", "30k")
KIND_ORDER = {"random": 0, "supervised": 1}
TABLE_KEYS = ["task", "arch", "schedule", "tiny"]
ROW_KEYS = ["label", "sha256", "fingerprint"]  # trials are averaged only within one weights file and protocol
DEVIATION_MARK = "†"


def round1(x: float) -> float:
    """Round half-up to one decimal, like the paper (fp noise is cut first: 2.3999999999 -> 2.4)."""
    return float(Decimal(repr(round(x, 9))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)) + 0.0


def fmt1(x: float) -> str:
    return f"{round1(x):.1f}"


def mark_of(gap: float | None) -> str | None:
    """``"better"`` for a gap ≥ +0.5, ``"worse"`` for ≤ −0.5, else None."""
    if gap is None:
        return None
    return "better" if gap >= MARK_THRESHOLD else "worse" if gap <= -MARK_THRESHOLD else None


@dataclass
class Cell:
    """One metric of one row. ``n``/``requested``/``failed`` are None for paper rows."""

    metric: str
    mean: float | None
    std: float | None = None
    n: int | None = None
    requested: int | None = None
    failed: int = 0
    gap: float | None = None
    mark: str | None = None

    @property
    def incomplete(self) -> bool:
        """Fewer finished trials than requested, or any failed trial."""
        return self.requested is not None and ((self.n or 0) < self.requested or self.failed > 0)

    def value_text(self, std: bool = True, pm: str = "±") -> str:
        if self.mean is None:
            return "—"
        text = fmt1(self.mean)
        if std and self.std is not None and not math.isnan(self.std):
            text += f"{pm}{fmt1(self.std)}"
        return text

    def gap_text(self, minus: str = "-") -> str:
        if self.gap is None:
            return ""
        return f"+{self.gap:.1f}" if self.gap >= 0 else f"{minus}{abs(self.gap):.1f}"

    def count_text(self) -> str:
        """``"3/5, 1 failed"`` for an incomplete cell, else ``""``."""
        if not self.incomplete:
            return ""
        text = f"{self.n or 0}/{self.requested}"
        return text + (f", {self.failed} failed" if self.failed else "")


@dataclass
class Row:
    """One pre-training in one table: measured (``source == "measured"``) or from a paper."""

    label: str
    kind: str
    sha256: str
    cells: dict[str, Cell]
    source: str = "measured"
    paper_table: str | None = None
    display: str = ""
    weights: str | None = None
    finished: int = 0
    failed: int = 0
    requested: int = 0
    trial_dirs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    fingerprint: str = ""                  # protocol fingerprint hash ("" for records without one)
    fingerprint_values: dict | None = None
    deviations: list[str] | None = None    # keys differing from the paper's protocol (None: not compared)
    resumed: list[str] = field(default_factory=list)  # "trial 2 (from iteration 12000)"
    pretrain_precision: dict | None = None  # the pretraining checkpoint's arithmetic (pretrain/speed.py), if it says
    seed_values: dict[str, dict[int, float]] = field(default_factory=dict)  # metric -> {seed: value}
    diffs: dict[str, dict[str, Diff]] = field(default_factory=dict)  # "supervised"/"random"/"reference" -> metric -> Diff
    gpu_hours: float | None = None          # GPU-hours its trials spent (records that say, core.records.gpu_hours_of)
    gpu_hours_trials: int = 0               # how many of its trials said
    method: str = ""                       # what made the weights (transfer/methods.py); "" for the baselines
    order: int | None = None               # the row's place in its sweep (None: not recorded)
    world_sizes: list[int] = field(default_factory=list)  # processes (GPUs) its trials ran on, as recorded

    @property
    def measured(self) -> bool:
        return self.source == "measured"

    @property
    def method_text(self) -> str:
        """The method as shown (``torchvision supervised`` reads "supervised, or re-saved with its fc")."""
        from transfer.methods import shown

        return shown(self.method)

    @property
    def source_text(self) -> str:
        return "this run" if self.measured else f"paper: {paper_mod.short_source(self.source, self.paper_table or '')}"

    def trials_text(self) -> str:
        """``"5/5"`` or ``"3/5, 1 failed"``; ``""`` for paper rows."""
        if not self.measured:
            return ""
        return (f"{self.finished}/{self.requested}" + (f", {self.failed} failed" if self.failed else "")
                + (f", {len(self.resumed)} resumed" if self.resumed else ""))


@dataclass
class Table:
    """Rows × metrics for one (task, arch, schedule, tiny)."""

    task: str
    arch: str
    schedule: str
    tiny: bool
    metrics: list[str]
    rows: list[Row]
    reference: Row | None = None
    paper_reference: Row | None = None
    notes: list[str] = field(default_factory=list)
    random_reference: Row | None = None
    reference_chosen: bool = False          # ``--reference LABEL``: gaps and differences to that row, not supervised
    show_cost: bool = False                 # ``--cost``: a GPU-h column (GPU-hours the row's trials spent)

    @property
    def diff_key(self) -> str:
        """The key of :attr:`Row.diffs` that holds the differences to :attr:`reference`."""
        return "reference" if self.reference_chosen else "supervised"

    @property
    def id(self) -> str:
        raw = f"{self.task}_{self.arch}_{self.schedule}" + ("_tiny" if self.tiny else "")
        return re.sub(r"[^A-Za-z0-9._-]+", "-", raw)

    @property
    def paper_table(self) -> str | None:
        info = task_info(self.task)
        return (info.paper_table or None) if info else None

    @property
    def title(self) -> str:
        info = task_info(self.task)
        title = f"{(info.title or self.task) if info else self.task}: {self.arch}, {self.schedule}"
        if self.arch.startswith("ViTDet"):
            title += " (layout of ViTDet Table 4)"
        elif self.paper_table:
            title += f" (layout of MoCo v1 {self.paper_table})"
        return title + (" — tiny demo" if self.tiny else "")

    @property
    def has_paper_rows(self) -> bool:
        return any(not r.measured for r in self.rows)

    @property
    def has_methods(self) -> bool:
        """Some measured row records its method (records of older versions do not: no column then)."""
        return any(r.method for r in self.measured_rows())

    @property
    def lead_columns(self) -> list[str]:
        """Headers of the text columns before the metrics: pre-train, method (when recorded), source (with paper
        rows), trials."""
        return (["pre-train"] + (["method"] if self.has_methods else []) + (["source"] if self.has_paper_rows else [])
                + ["trials"] + (["GPU-h"] if self.show_cost else []))

    def lead_cells(self, row: Row) -> list[str]:
        """``row``'s text under :attr:`lead_columns`."""
        return ([row.display] + ([row.method_text] if self.has_methods else [])
                + ([row.source_text] if self.has_paper_rows else []) + [row.trials_text()]
                + ([gpu_hours_text(row)] if self.show_cost else []))

    def measured_rows(self) -> list[Row]:
        return [r for r in self.rows if r.measured]

    def row(self, label: str, source: str = "measured") -> Row:
        """The row with display name or label ``label`` (measured by default)."""
        for r in self.rows:
            if (r.source == source or (source != "measured" and not r.measured)) and label in (r.display, r.label):
                return r
        raise KeyError(label)

    def legend(self, better: str = "▲", worse: str = "▼", minus: str = "−") -> str:
        """One-paragraph caption: what a cell is, what the gap is against, the marks, tiny warning."""
        parts = []
        if self.tiny:
            parts.append(TINY_CAPTION)
        parts.append("Mean ± std over finished trials (percent).")
        if self.reference is not None:
            parts.append(f"In brackets: gap to {self.reference.display}; {better} gap ≥ +{MARK_THRESHOLD} (the paper's "
                         f"green), {worse} gap ≤ {minus}{MARK_THRESHOLD} (this suite's addition: the paper marks gains "
                         "only).")
        elif self.reference_chosen:
            parts.append("The chosen reference row has no finished trial, so no gaps are shown.")
        else:
            parts.append("No finished supervised row, so no gaps are shown.")
        if any(c.incomplete for r in self.rows for c in r.cells.values()):
            parts.append("[k/n, f failed]: only k of the n requested trials finished (f failed).")
        if self.has_paper_rows:
            parts.append("Paper rows are the published numbers" + (" of the full-scale benchmark, for orientation"
                                                                    if self.tiny else "")
                         + "; their gaps are to the paper's supervised row.")
        if self.diff_rows():
            parts.append(DIFF_LEGEND)
        if self.show_cost:
            parts.append(COST_LEGEND)
        return " ".join(parts)

    def diff_rows(self) -> list[tuple[Row, str, dict[str, Diff]]]:
        """(row, reference display name, {metric: Diff}) for every measured row with a difference."""
        refs = {"supervised": self.reference, "random": self.random_reference, "reference": self.reference}
        return [(r, refs[k].display, r.diffs[k]) for r in self.measured_rows()
                for k in ("reference", "supervised", "random") if k in r.diffs and refs[k] is not None]

    def reference_diffs(self) -> list[tuple[Row, dict[str, Diff]]]:
        """(row, {metric: Diff}) for every measured row with a difference to :attr:`reference`: the differences
        plot's rows (``results/forest.py``)."""
        return [(r, r.diffs[self.diff_key]) for r in self.measured_rows()
                if self.reference is not None and r.diffs.get(self.diff_key)]


DIFF_LEGEND = (f"Differences: mean of the per-seed differences to the reference row over the seeds both ran, with its "
               f"{LEVEL * 100:.0f}% interval (t distribution); * the interval excludes 0.")


COST_LEGEND = ("GPU-h: GPU-hours the row's finished and failed trials spent (training and evaluation time × GPUs, "
               "from the records; k/n: only k of its n trials recorded it).")


def gpu_hours_text(row: Row) -> str:
    """``"41.2"`` GPU-hours, ``"41.2 (3/5)"`` when only some trials recorded it, ``"—"`` when none did or a paper
    row."""
    if not row.measured or row.gpu_hours is None:
        return "—"
    n = row.finished + row.failed
    return f"{row.gpu_hours:.1f}" + (f" ({row.gpu_hours_trials}/{n})" if row.gpu_hours_trials < n else "")


def diff_text(d: Diff, minus: str = "-", star: str = "*") -> str:
    """``+1.2 [-0.3, +2.7]`` (``*`` when the interval excludes 0); ``+1.2 (1 pair)`` without an interval."""
    def sig(x: float) -> str:
        r = round1(x)  # the paper's half-up rounding, and never "+-0.0" for a small negative
        return f"+{r:.1f}" if r >= 0 else f"{minus}{-r:.1f}"
    if math.isnan(d.mean):
        return "—"
    if d.lo is None or d.hi is None:
        return f"{sig(d.mean)} ({d.n} {'pair' if d.n == 1 else 'pairs'}: no interval)"
    return f"{sig(d.mean)} [{sig(d.lo)}, {sig(d.hi)}]" + (star if d.excludes_zero else "")


def _order_key(values: Iterable[str], order: tuple[str, ...]) -> dict[str, tuple[int, str]]:
    return {v: (order.index(v) if v in order else len(order), v) for v in values}


def _row_sort_key(row: Row) -> tuple[int, float, str, str]:
    """Paper order: random init, supervised, then the others in the order their sweep gave them (rows without a
    recorded order after, by label, then weights hash)."""
    return (KIND_ORDER.get(row.kind, 2), math.inf if row.order is None else row.order, row.label.lower(), row.sha256)


def _demonstrates(record: dict[str, Any]) -> tuple[str, str] | None:
    """(arch, schedule) of the full-scale benchmark a tiny record stands in for (the runner records it), if said."""
    d = record.get("demonstrates")
    if isinstance(d, dict) and isinstance(d.get("arch"), str) and isinstance(d.get("schedule"), str):
        return d["arch"][:40], d["schedule"][:40]
    return None


def records_frames(records: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per record, one row per finished record × finite metric value)."""
    recs, vals = [], []
    for r in records:
        pre = pretrain_of(r)
        label = str(pre["label"])
        fp = r.get("fingerprint") if isinstance(r.get("fingerprint"), dict) else {}
        base = {"task": r["task"], "arch": r["arch"], "schedule": r["schedule"], "tiny": bool(r.get("tiny", False)),
                "label": label, "sha256": pre.get("sha256") or "", "fingerprint": str(fp.get("hash") or "")}
        seed = r.get("seed") if isinstance(r.get("seed"), int) and not isinstance(r.get("seed"), bool) else None
        resumed = r.get("resumed") if isinstance(r.get("resumed"), dict) else {}
        order = pre.get("order") if isinstance(pre.get("order"), int) and not isinstance(pre.get("order"), bool) else None
        recs.append({**base, "kind": pre.get("kind") or paper_mod.kind_of(label),
                     "method": str(pre.get("method") or "")[:60], "order": order,
                     "weights": str(pre.get("weights") or ""), "trial": r["trial"], "status": r["status"],
                     "requested": r.get("trials_requested"), "error": str(r.get("error") or ""),
                     "dir": str(Path(r["_path"]).parent) if r.get("_path") else "",
                     "fp_values": fp.get("values") if isinstance(fp.get("values"), dict) else None,
                     "pre_precision": pre.get("precision") if isinstance(pre.get("precision"), dict) else None,
                     "gpu_hours": gpu_hours_of(r), "world_size": r.get("world_size"),
                     "resumed_from": list(resumed.get("from_iters") or []),
                     "demonstrates": _demonstrates(r) if base["tiny"] else None})
        if r["status"] == "finished":
            for metric, value in r["metrics"].items():
                if value is not None and math.isfinite(value):
                    vals.append({**base, "metric": metric, "value": float(value),
                                 "seed": seed if seed is not None else -1 - int(r["trial"])})
    return pd.DataFrame(recs), pd.DataFrame(vals, columns=TABLE_KEYS + ROW_KEYS + ["metric", "value", "seed"])


def _measured_rows(recs: pd.DataFrame, stats: dict[tuple, dict[str, tuple[float, float, int]]],
                   metrics: list[str]) -> list[Row]:
    rows = []
    for (label, sha, fp), grp in recs.groupby(ROW_KEYS, sort=False):
        finished = int((grp.status == "finished").sum())
        failed = int((grp.status == "failed").sum())
        req = grp.requested.dropna()
        requested = max(int(req.max()) if len(req) else 0, finished + failed)
        kind = Counter(grp.kind).most_common(1)[0][0]
        methods = Counter(m for m in grp.method if m)
        orders = [int(o) for o in grp.order if o is not None and not (isinstance(o, float) and math.isnan(o))]
        weights = next((str(w) for w in grp.weights if isinstance(w, str) and w), None)
        spent = [float(h) for h in grp.gpu_hours if h is not None and not (isinstance(h, float) and math.isnan(h))]
        st = stats.get((label, sha, fp), {})
        cells = {}
        for m in metrics:
            mean, std, n = st.get(m, (None, None, 0))
            cells[m] = Cell(m, mean, None if std is None or math.isnan(std) else std, n, requested, failed)
        errors = [f"trial {t} failed: {e if isinstance(e, str) and e else 'no error message'}"
                  for t, e in zip(grp.trial[grp.status == "failed"], grp.error[grp.status == "failed"])]
        resumed = [f"trial {t} (from iteration {', '.join(map(str, its))})"
                   for t, its in zip(grp.trial, grp.resumed_from) if its]
        rows.append(Row(label=label, kind=kind, sha256=sha, cells=cells, weights=weights, finished=finished,
                        failed=failed, requested=requested, trial_dirs=sorted(d for d in grp.dir if d),
                        errors=errors, fingerprint=fp, resumed=resumed,
                        method=methods.most_common(1)[0][0] if methods else "", order=min(orders) if orders else None,
                        fingerprint_values=next((v for v in grp.fp_values if isinstance(v, dict)), None),
                        gpu_hours=sum(spent) if spent else None, gpu_hours_trials=len(spent),
                        world_sizes=sorted({int(w) for w in grp.world_size if _is_count(w)}),
                        pretrain_precision=next((v for v in grp.pre_precision if isinstance(v, dict)), None)))
    by_label: dict[str, list[Row]] = {}
    for r in rows:
        by_label.setdefault(r.label, []).append(r)
    for same in by_label.values():
        shas, fps = {r.sha256 for r in same}, {r.fingerprint for r in same}
        for r in same:
            tags = ([r.sha256[:8] or "no hash"] if len(shas) > 1 else []) + \
                   ([f"protocol {r.fingerprint[:6] or 'unknown'}"] if len(fps) > 1 else [])
            r.display = f"{r.label} [{', '.join(tags)}]" if tags else r.label
    return rows


def _is_count(value: Any) -> bool:
    """A whole number of processes (a record's ``world_size``), not a bool, NaN or text."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 1 \
        and float(value).is_integer()


def pretrain_precision_deviation(precision: dict | None) -> str | None:
    """``"pretraining precision bf16 autocast + TF32 (paper fp32)"`` for a checkpoint that says it was not
    pretrained in the paper's arithmetic; ``None`` when it was, or does not say."""
    if not isinstance(precision, dict) or precision.get("paper_arithmetic") is not False:
        return None
    parts = [f"{precision['autocast']} autocast" if precision.get("autocast") else "fp32"]
    if precision.get("tf32"):
        parts.append("TF32")
    return f"pretraining precision {' + '.join(map(str, parts))} (paper fp32)"


def _protocol_notes(table_key: tuple, rows: list[Row], tiny: bool) -> list[str]:
    """Footnotes of rows whose fingerprint differs from the paper's protocol (marked †), and of rows without
    a fingerprint; the tiny demonstration is not compared (its caption says it is not the protocol)."""
    from transfer.protocol import deviations, world_size_deviation

    task, arch, schedule = table_key[:3]
    notes = []
    for r in rows:
        values = r.fingerprint_values
        if values is None:
            notes.append(f"{r.display}: its records carry no protocol fingerprint (written by an older version); "
                         "it is not compared with the paper's protocol.")
            continue
        if tiny:
            continue
        r.deviations = deviations(values, task, arch, schedule, r.kind)
        pre = pretrain_precision_deviation(r.pretrain_precision)
        if r.deviations is not None and pre:
            r.deviations.append(pre)
        world = world_size_deviation(values)
        if r.deviations is not None and world:
            r.deviations.append(world)
        if r.deviations:
            r.display += f" {DEVIATION_MARK}"
            notes.append(f"{DEVIATION_MARK} {r.display[:-2]}: protocol differs from the paper's for this table: "
                         + "; ".join(r.deviations) + ".")
    return notes


READING_MARK = "‡"


def _reading_notes(task: str, arch: str, rows: list[Row], tiny: bool) -> list[str]:
    """Footnotes of what the table's measured rows depend on that no source confirms (the protocol's unconfirmed
    readings) and of upstream code that changed under its recipe (``transfer/configs/protocol.yaml``)."""
    from transfer.protocol import code_changes, unconfirmed_readings

    measured = [r for r in rows if r.measured]
    if tiny or not measured:
        return []
    notes = []
    for change in code_changes(task, arch):
        names = ", ".join(r.display for r in measured)
        notes.append(f"Every row ({names}): {' '.join(str(change['what']).split())} (source: "
                     f"{' '.join(str(change['source']).split())}).")
    for reading in unconfirmed_readings(task, arch, {r.kind for r in measured}):
        kinds = reading.get("kinds")
        who = (", ".join(r.display for r in measured if r.kind in kinds) if kinds else "Every row")
        notes.append(f"{READING_MARK} {who}: depends on a reading no source confirms: "
                     f"{' '.join(str(reading['what']).split())} (paper: {' '.join(str(reading['paper']).split())}; "
                     f"source: {' '.join(str(reading['source']).split())}).")
    return notes


def _subset_notes(rows: list[Row]) -> list[str]:
    """What ``--train-fraction`` rows trained on (from their fingerprints; benchmarks/sweep_data.py)."""
    subsets: dict[tuple, list[str]] = {}
    for r in rows:
        v = r.fingerprint_values or {}
        if v.get("train_fraction") is not None:
            k, it, batch = v.get("train_subset_images"), v.get("SOLVER.MAX_ITER"), v.get("SOLVER.IMS_PER_BATCH")
            epochs = f"; {it * batch / k:.1f} epochs of it" if k and it and batch else ""
            key = (v["train_fraction"], v.get("train_fraction_seed"), k, v.get("train_images_full"),
                   str(v.get("train_subset_sha256") or "")[:12], epochs)
            subsets.setdefault(key, []).append(r.display)
    notes = []
    for (fraction, seed, k, n, sha, epochs), names in subsets.items():
        who = "Every row" if len(names) == len(rows) else ", ".join(names)
        notes.append(f"{who}: trained on {k} of {n} training images ({fraction * 100:g}%, draw seed {seed}, image ids "
                     f"sha256 {sha}), the same images in every trial{epochs}.")
    return notes


def _apply_gaps(rows: list[Row], ref: Row | None) -> None:
    if ref is None:
        return
    for row in rows:
        if row is ref:
            continue
        for m, cell in row.cells.items():
            rc = ref.cells.get(m)
            if cell.mean is None or rc is None or rc.mean is None:
                continue
            cell.gap = round1(round1(cell.mean) - round1(rc.mean))
            cell.mark = mark_of(cell.gap)


def _pick_reference(rows: list[Row], notes: list[str]) -> Row | None:
    sup = [r for r in rows if r.kind == "supervised" and r.finished > 0]
    if not sup:
        if any(r.kind == "supervised" for r in rows):
            notes.append("The supervised row has no finished trial: gaps are not shown.")
        return None
    ref = max(sup, key=lambda r: r.finished)  # first of the best on ties (rows are sorted)
    if len(sup) > 1:
        notes.append(f"{len(sup)} supervised rows; gaps are to {ref.display}, the one with the most finished "
                     f"trials ({ref.finished}).")
    return ref


def find_reference(rows: list[Row], label: str) -> Row | None:
    """The measured row whose display name or label is ``label`` (the one with the most finished trials when
    several rows share the label), or None."""
    hits = [r for r in rows if r.measured and label in (r.display, r.label, r.display.removesuffix(f" {DEVIATION_MARK}"))]
    return max(hits, key=lambda r: r.finished) if hits else None


def _apply_reference_diffs(rows: list[Row], ref: Row, notes: list[str]) -> None:
    """``--reference``: every other measured row's per-metric difference to ``ref`` (``results.stats``)."""
    unpaired = []
    for row in rows:
        if row is ref:
            continue
        diffs = {m: difference(row.seed_values[m], ref.seed_values[m])
                 for m in row.seed_values if row.seed_values[m] and ref.seed_values.get(m)}
        if diffs:
            row.diffs["reference"] = diffs
            if any(d.method == "welch" for d in diffs.values()):
                unpaired.append(row.display)
    if unpaired:
        notes.append(f"Fewer than 2 common seeds with {ref.display}, so Welch's interval for independent samples: "
                     f"{'; '.join(unpaired)}.")


def measured_labels(records: list[dict[str, Any]]) -> list[str]:
    """The pre-training labels of ``records``, in first-seen order (what ``--reference`` may name)."""
    return list(dict.fromkeys(str(pretrain_of(r).get("label")) for r in records))


def _apply_diffs(rows: list[Row], ref: Row | None, rand: Row | None, notes: list[str]) -> None:
    """Each measured row's per-metric difference to the supervised and to the random-init row (``results.stats``)."""
    unpaired = []
    for row in rows:
        for key, other in (("supervised", ref), ("random", rand)):
            if other is None or row is other or (key == "random" and row is ref):
                continue  # (supervised vs random init would repeat random init vs supervised, negated)
            diffs = {m: difference(row.seed_values[m], other.seed_values[m])
                     for m in row.seed_values if row.seed_values[m] and other.seed_values.get(m)}
            if diffs:
                row.diffs[key] = diffs
                if any(d.method == "welch" for d in diffs.values()):
                    unpaired.append(f"{row.display} vs {other.display}")
    if unpaired:
        notes.append(f"Fewer than 2 common seeds, so Welch's interval for independent samples: {'; '.join(unpaired)}.")


def _pick_random(rows: list[Row]) -> Row | None:
    rand = [r for r in rows if r.kind == "random" and r.finished > 0]
    return max(rand, key=lambda r: r.finished) if rand else None


def _full_scale(grp: pd.DataFrame) -> tuple[str, str] | None:
    """The (arch, schedule) a tiny table's records say they demonstrate (the most common), or None."""
    said = [d for d in grp["demonstrates"] if d] if "demonstrates" in grp else []
    return max(set(said), key=said.count) if said else None


def _paper_rows(task: str, arch: str, schedule: str, metrics: list[str], paper_csv: str | None) -> list[Row]:
    rows = []
    for pr in paper_mod.paper_rows(task, arch, schedule, paper_csv):
        cells = {m: Cell(m, pr["metrics"].get(m)) for m in metrics}
        rows.append(Row(label=pr["label"], kind=pr["kind"], sha256="", cells=cells, source=pr["source"],
                        paper_table=pr["table"], display=pr["label"],
                        method=paper_mod.method_of_source(pr["source"], pr["kind"], pr["label"])))
    return rows


def build_tables(records: list[dict[str, Any]], with_paper: bool = False,
                 paper_csv: str | None = None, reference: str | None = None, cost: bool = False) -> list[Table]:
    """Group ``records`` (as from :func:`results.collect.collect`) into paper-ordered tables. ``reference``: the
    label (or display name) of the row the gaps and differences are to, in every table that has it (the supervised
    row otherwise, said in a note); ``cost``: a GPU-h column."""
    if not records:
        return []
    recs, vals = records_frames(records)
    stats: dict[tuple, dict[tuple, dict[str, tuple[float, float, int]]]] = {}
    if len(vals):
        agg = vals.groupby(TABLE_KEYS + ROW_KEYS + ["metric"]).value.agg(["mean", "std", "count"])
        for (*tkey, label, sha, fp, metric), (mean, std, n) in agg.iterrows():
            stats.setdefault(tuple(tkey), {}).setdefault((label, sha, fp), {})[metric] = (mean, std, int(n))
    seed_vals: dict[tuple, dict[tuple, dict[str, dict[int, float]]]] = {}
    if len(vals):  # one value per seed (the mean if a seed ran twice)
        for (*tkey, label, sha, fp, metric, seed), v in vals.groupby(TABLE_KEYS + ROW_KEYS + ["metric", "seed"]).value.mean().items():
            seed_vals.setdefault(tuple(tkey), {}).setdefault((label, sha, fp), {}).setdefault(metric, {})[int(seed)] = float(v)
    tables = []
    for tkey, grp in recs.groupby(TABLE_KEYS, sort=False):
        task, arch, schedule, tiny = tkey
        tstats = stats.get(tuple(tkey), {})
        info = task_info(task)
        seen = sorted({m for st in tstats.values() for m in st})
        metrics = list(info.metrics) if info and info.metrics else seen
        notes: list[str] = []
        rows = sorted(_measured_rows(grp, tstats, metrics), key=_row_sort_key)
        notes += _protocol_notes(tuple(tkey), rows, bool(tiny))
        notes += _subset_notes(rows)
        notes += _reading_notes(task, arch, rows, bool(tiny))
        chosen = find_reference(rows, reference) if reference else None
        if reference and chosen is None:
            notes.append(f"No row {reference!r} in this table: gaps and differences are to the supervised row.")
        ref = chosen if chosen is not None and chosen.finished > 0 else None if chosen is not None \
            else _pick_reference(rows, notes)
        _apply_gaps(rows, ref)
        for r in rows:
            r.seed_values = seed_vals.get(tuple(tkey), {}).get((r.label, r.sha256, r.fingerprint), {})
        rand = _pick_random(rows)
        if chosen is not None:
            if ref is not None:
                _apply_reference_diffs(rows, ref, notes)
        else:
            _apply_diffs(rows, ref, rand, notes)
        for r in rows:
            notes.extend(f"{r.display}: {e}" for e in r.errors)
            if r.resumed:
                notes.append(f"{r.display}: resumed after an interruption: {'; '.join(r.resumed)} (the data stream "
                             "continues exactly; on GPUs the last digits may differ, see docs/trust.md).")
        table = Table(task, arch, schedule, bool(tiny), metrics, rows, reference=ref, notes=notes, random_reference=rand,
                      reference_chosen=chosen is not None, show_cost=cost)
        if with_paper:
            full = _full_scale(grp) if tiny else (arch, schedule)
            prows = sorted(_paper_rows(task, *full, metrics, paper_csv) if full else [],  # stable: keeps paper order
                           key=lambda r: KIND_ORDER.get(r.kind, 2))
            table.paper_reference = next((r for r in prows if r.kind == "supervised"), None)
            _apply_gaps(prows, table.paper_reference)
            table.rows += prows
            sources = dict.fromkeys(f"{r.source}, {r.paper_table}" for r in prows)
            if tiny:  # each published row says which model it is, the tiny table's title names the tiny one
                for r in prows:
                    r.paper_table = f"{r.paper_table}, {full[0]}"
            if sources and tiny:
                table.notes.append(f"Published numbers of the full-scale benchmark this demonstration stands in for "
                                   f"({full[0]}, {full[1]}; {'; '.join(sources)}), for orientation only: the tiny "
                                   "rows ran another model size, data and schedule, so no gap or difference is taken "
                                   "between them and the published rows.")
            else:
                table.notes.append(f"Published numbers: {'; '.join(sources)}." if sources
                                   else "No published numbers for this configuration.")
        tables.append(table)
    t_order = _order_key({t.task for t in tables}, task_order())
    a_order = _order_key({t.arch for t in tables}, ARCH_ORDER)
    s_order = _order_key({t.schedule for t in tables}, SCHEDULE_ORDER)
    return sorted(tables, key=lambda t: (t.tiny, t_order[t.task], a_order[t.arch], s_order[t.schedule]))


def _diff_columns(d: Diff | None, prefix: str) -> dict[str, Any]:
    """CSV columns of one difference: mean, interval, pairs, method, whether the interval excludes 0."""
    if d is None:
        return {f"{prefix}_{k}": None for k in ("diff", "ci_lo", "ci_hi", "n", "method", "excludes_0")}
    return {f"{prefix}_diff": d.mean, f"{prefix}_ci_lo": d.lo, f"{prefix}_ci_hi": d.hi, f"{prefix}_n": d.n,
            f"{prefix}_method": d.method, f"{prefix}_excludes_0": d.excludes_zero}


def tables_frame(tables: list[Table]) -> pd.DataFrame:
    """Tidy frame, one row per (table, row, metric): the CSV output."""
    out = []
    for t in tables:
        for r in t.rows:
            for m in t.metrics:
                c = r.cells[m]
                out.append({"table": t.id, "task": t.task, "arch": t.arch, "schedule": t.schedule, "tiny": t.tiny,
                            "source": r.source, "paper_table": r.paper_table or "", "pretrain": r.display,
                            "label": r.label, "kind": r.kind, "method": r.method,
                            "method_shown": r.method_text if r.method else "", "sha256": r.sha256,
                            "weights": r.weights or "",
                            "metric": m, "mean": c.mean, "mean_1d": round1(c.mean) if c.mean is not None else None,
                            "std": c.std, "n": c.n, "requested": c.requested if r.measured else None,
                            "failed": c.failed if r.measured else None, "gap": c.gap, "mark": c.mark or "",
                            "reference": r is t.reference or r is t.paper_reference,
                            "gpu_hours": r.gpu_hours if r.measured else None,
                            "reference_row": t.reference.display if t.reference is not None else "",
                            **_diff_columns(r.diffs.get(t.diff_key, {}).get(m), "vs_reference"),
                            **_diff_columns(r.diffs.get("supervised", {}).get(m), "vs_supervised"),
                            **_diff_columns(r.diffs.get("random", {}).get(m), "vs_random")})
    return pd.DataFrame(out)
