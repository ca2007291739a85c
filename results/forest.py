"""The differences plot (a forest plot): each row's paired difference to the table's reference row, per metric.

One panel per metric, one line per measured row: the mean of the per-seed differences to the reference with its
95% interval (``Table.reference_diffs``: the differences ``results.stats`` computed for the tables, not computed
again here), a dashed line at 0. A row with fewer than 2 pairs is drawn as a point without an interval and
labelled so. A row far off the others' scale (random init against supervised) is drawn at the panel's edge as an
arrow with its value, so it does not squeeze the others' intervals to nothing.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from results.plots import TINY_NOTE, _save, _wrap, plain, plt
from results.stats import LEVEL
from results.tables import Table, diff_text

OFF_SCALE = 2.0  # a row is off scale when it lies this many times the others' span beyond them


@dataclass(frozen=True)
class ForestLine:
    """One row's difference to the reference in one metric, as drawn."""

    row: str                 # the row's display name
    metric: str
    mean: float
    lo: float | None         # None: fewer than 2 pairs, no interval
    hi: float | None
    n: int
    method: str              # "paired" | "welch" | "none"
    label: str               # the y-axis label: the row, "(1 trial: no interval)" when it has none
    text: str                # the value as the tables write it, e.g. "+1.2 [+0.9, +1.5]*"


def _label(display: str, method: str, n: int) -> str:
    if method != "none":
        return display
    return f"{display} ({n} {'trial' if n == 1 else 'trials'}: no interval)"


def forest_data(table: Table) -> list[ForestLine]:
    """The lines the plot draws: every measured row with a difference to the reference, per metric, in row order."""
    out = []
    for row, diffs in table.reference_diffs():
        for m in table.metrics:
            d = diffs.get(m)
            if d is None or math.isnan(d.mean):
                continue
            out.append(ForestLine(row.display, m, d.mean, d.lo, d.hi, d.n, d.method,
                                  _label(row.display, d.method, d.n), diff_text(d, minus="−")))
    return out


def axis_limits(lines: list[ForestLine]) -> tuple[float, float]:
    """x-limits of one metric's panel: 0 and every line's interval, except lines far off the others' scale."""
    def span(ls: list[ForestLine]) -> tuple[float, float]:
        xs = [0.0] + [x for ln in ls for x in (ln.mean, ln.lo, ln.hi) if x is not None]
        return min(xs), max(xs)

    lo, hi = span(lines)
    near = [ln for ln in lines if not _far(ln, lines)]
    if near and len(near) < len(lines):
        lo, hi = span(near)
    pad = max(0.15 * (hi - lo), 0.5)
    return lo - pad, hi + pad


def _far(line: ForestLine, lines: list[ForestLine]) -> bool:
    """``line`` lies more than :data:`OFF_SCALE` times the other lines' span away from them."""
    others = [x for ln in lines if ln is not line for x in (ln.mean, ln.lo, ln.hi) if x is not None] + [0.0]
    lo, hi = min(others), max(others)
    width = max(hi - lo, 1.0)
    return line.mean < lo - OFF_SCALE * width or line.mean > hi + OFF_SCALE * width


def forest_plot(table: Table, path: str | os.PathLike) -> Path | None:
    """Write the differences plot of ``table``; None when no row has a difference to a reference."""
    data = forest_data(table)
    if not data or table.reference is None:
        return None
    rows = list(dict.fromkeys(ln.row for ln in data))
    labels = {ln.row: ln.label for ln in data}
    for ln in data:  # a row without an interval in any metric says so on its label
        if ln.method == "none":
            labels[ln.row] = ln.label
    metrics = [m for m in table.metrics if any(ln.metric == m for ln in data)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics) + 3.0, 1.2 + 0.45 * len(rows)),
                             sharey=True, squeeze=False, layout="constrained")
    ys = {r: len(rows) - 1 - i for i, r in enumerate(rows)}
    for ax, m in zip(axes[0], metrics):
        lines = [ln for ln in data if ln.metric == m]
        lo, hi = axis_limits(lines)
        ax.axvline(0.0, color="0.4", linestyle="--", linewidth=1)
        for ln in lines:
            y, colour = ys[ln.row], f"C{rows.index(ln.row) % 10}"
            if ln.mean < lo or ln.mean > hi:  # off scale: an arrow at the edge with its value
                edge = lo if ln.mean < lo else hi
                ax.annotate(plain(ln.text), xy=(edge, y), xytext=(edge + (0.35 if edge == lo else -0.35) * (hi - lo), y),
                            ha="left" if edge == lo else "right", va="center", fontsize=7, color=colour,
                            arrowprops={"arrowstyle": "->", "color": colour})
                continue
            if ln.lo is not None and ln.hi is not None:
                ax.errorbar([ln.mean], [y], xerr=[[ln.mean - ln.lo], [ln.hi - ln.mean]], fmt="o", color=colour,
                            capsize=4, markersize=5)
            else:
                ax.plot([ln.mean], [y], marker="D", color=colour, markerfacecolor="white", linestyle="none")
            ax.annotate(plain(ln.text), xy=(ln.mean, y), xytext=(0, 7), textcoords="offset points", ha="center",
                        fontsize=7, color=colour)
        ax.set_xlim(lo, hi)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("difference (points)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_yticks([ys[r] for r in rows], [plain(labels[r]) for r in rows])
    title = (f"{plain(table.title)}\nPaired difference to {plain(table.reference.display)}, with its "
             f"{LEVEL * 100:.0f}% interval; dashed: no difference" + (f" ({TINY_NOTE})" if table.tiny else ""))
    fig.suptitle(_wrap(title, fig.bbox.width * 0.95, 9), fontsize=9)
    return _save(fig, path)
