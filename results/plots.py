"""Plots (matplotlib, Agg): per-table bar charts with std error bars, and training curves.

Training curves come from Detectron2's ``metrics.json`` (one JSON object per line) in each trial's
output dir, next to ``trial_record.json``: ``total_loss`` and ``lr`` per logged iteration, and the
evaluation lines' ``*/AP``, ``*/AP50`` or ``sem_seg/mIoU`` when present.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from results.tables import Table  # noqa: E402

METRICS_LOG = "metrics.json"
EVAL_KEYS = ("bbox/AP", "bbox/AP50", "segm/AP", "sem_seg/mIoU", "keypoints/AP")
TINY_NOTE = "tiny demo: not the paper's protocol"


def read_metrics_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Lines of a Detectron2 ``metrics.json`` that parse to objects with an ``iteration``; others are skipped."""
    out = []
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue  # e.g. a half-written last line of a running job
        if isinstance(obj, dict) and isinstance(obj.get("iteration"), (int, float)):
            out.append(obj)
    return out


def plain(text: str) -> str:
    """``text`` shown as written: ``$`` would start matplotlib mathtext (a label like ``MoCo $\\textbf{x}$``)."""
    return str(text).replace("$", r"\$")


def _wrap(text: str, width_px: float, fontsize: float) -> str:
    """Wrap each line of ``text`` to about ``width_px`` pixels at 100 dpi (a character ~ 0.6 em)."""
    chars = max(20, int(width_px / (0.6 * fontsize * 100 / 72)))
    return "\n".join(textwrap.fill(line, chars) for line in text.splitlines())


def cut_texts(fig) -> list[str]:
    """Texts of ``fig`` that reach outside its canvas (what a saved PNG would cut), after drawing it."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    undrawn = set()  # labels of ticks outside their axis's view limits: kept by matplotlib, never drawn
    for ax in fig.axes:
        for axis, lims in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            lo, hi = sorted(lims)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                loc = tick.get_loc()
                if loc is not None and not lo - 1e-9 * (1 + abs(lo)) <= loc <= hi + 1e-9 * (1 + abs(hi)):
                    undrawn.update({id(tick.label1), id(tick.label2)})
    out = []
    for t in fig.findobj(matplotlib.text.Text):
        if not t.get_visible() or not t.get_text().strip() or id(t) in undrawn:
            continue
        e = t.get_window_extent(renderer)
        if e.x0 < box.x0 - 1 or e.x1 > box.x1 + 1 or e.y0 < box.y0 - 1 or e.y1 > box.y1 + 1:
            out.append(t.get_text())
    return out


def _series(lines: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pts = [(float(o["iteration"]), float(o[key])) for o in lines
           if isinstance(o.get(key), (int, float)) and math.isfinite(o[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


def bar_chart(table: Table, path: str | os.PathLike) -> Path | None:
    """Grouped bars (metric × pre-training), std error bars for measured rows; None if nothing to plot."""
    rows = [r for r in table.rows if any(c.mean is not None for c in r.cells.values())]
    if not rows:
        return None
    n, width = len(rows), 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(table.metrics) * max(1, n / 2.5)) + 2.5, 3.6),
                           layout="constrained")
    for i, row in enumerate(rows):
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(table.metrics))]
        means = [row.cells[m].mean if row.cells[m].mean is not None else 0.0 for m in table.metrics]
        errs = [row.cells[m].std or 0.0 for m in table.metrics]
        label = plain(row.display if row.measured else f"{row.display} ({row.source_text})")
        ax.bar(xs, means, width, yerr=errs if row.measured else None, capsize=3, label=label,
               hatch=None if row.measured else "//", alpha=1.0 if row.measured else 0.5)
    ax.set_xticks(range(len(table.metrics)), table.metrics)
    ax.set_ylabel("percent")
    title = plain(table.title) + (f"\n({TINY_NOTE})" if table.tiny else "")
    ax.set_title(_wrap(title, fig.bbox.width * 0.7, 9), fontsize=9)
    fig.legend(fontsize=7, loc="outside right upper")
    return _save(fig, path)


def _save(fig, path: str | os.PathLike) -> Path:
    """Lay out, write and close ``fig``; the saved area grows to hold every text (none is cut)."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return path


def training_curves(table: Table, path: str | os.PathLike) -> Path | None:
    """Loss, lr and AP over iterations, one line per trial; None when no trial left a metrics log."""
    logs = [(row, Path(d).name, read_metrics_log(Path(d) / METRICS_LOG))
            for row in table.measured_rows() for d in row.trial_dirs]
    logs = [(row, name, lines) for row, name, lines in logs if lines]
    if not logs:
        return None
    eval_keys = [k for k in EVAL_KEYS if any(_series(lines, k)[0] for _, _, lines in logs)]
    panels = ["total_loss", "lr"] + eval_keys
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.4), squeeze=False)
    colours = {r.display: f"C{i}" for i, r in enumerate(table.measured_rows())}
    for ax, key in zip(axes[0], panels):
        seen: set[str] = set()
        for row, name, lines in logs:
            xs, ys = _series(lines, key)
            if not xs:
                continue
            label = plain(row.display) if row.display not in seen else None
            seen.add(row.display)
            ax.plot(xs, ys, color=colours[row.display], marker="o" if key in eval_keys else None,
                    markersize=3, linewidth=1, alpha=0.8, label=label)
        ax.set_xlabel("iteration")
        ax.set_title(key, fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(_wrap(plain(table.title) + (f" ({TINY_NOTE})" if table.tiny else ""), fig.bbox.width * 0.9, 9), fontsize=9)
    return _save(fig, path)
