"""Line plots of the ablation sweeps (matplotlib, Agg): MoCo v1 Figure 3 and its kin.

One line per row of an :class:`results.ablation.AblationTable` over its columns (dictionary size K,
momentum m, temperature T): measured rows solid with std error bars, the encoder at random
initialisation dotted, published rows dashed with hollow markers ("paper").
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from results.plots import TINY_NOTE, _save, plain, plt

if TYPE_CHECKING:
    from results.ablation import AblationTable


def line_plot(table: "AblationTable", path: str | os.PathLike) -> Path | None:
    """Top-1 (or another metric) over the table's columns, one line per row; None when nothing to draw."""
    cols = [c for c in table.metrics if c in table.x_values]
    if not cols or not any(r.cells[c].mean is not None for r in table.rows for c in cols):
        return None
    if table.xscale == "category":
        pos = {c: float(i) for i, c in enumerate(cols)}
    else:
        pos = {c: table.x_values[c] for c in cols}
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colours: dict[str, str] = {}
    for row in table.rows:
        pts = [(pos[c], row.cells[c].mean, row.cells[c].std or 0.0) for c in cols if row.cells[c].mean is not None]
        if not pts:
            continue
        base = row.display.removesuffix(" IN-1M")
        colour = colours.setdefault(base, "0.5" if row.kind == "random" else f"C{len(colours)}")
        xs, ys, es = zip(*pts)
        if not row.measured:
            ax.plot(xs, ys, linestyle="--", marker="o", markerfacecolor="white", color=colour, linewidth=1,
                    label=plain(f"{row.display} (paper)"))
        elif row.kind == "random":
            ax.plot(xs, ys, linestyle=":", marker=".", color=colour, label=plain(row.display))
        else:
            ax.errorbar(xs, ys, yerr=es if any(es) else None, marker="o", color=colour, capsize=3, linewidth=1.5,
                        label=plain(row.display))
    if table.xscale == "log2":
        ax.set_xscale("log", base=2)
        ax.set_xticks([pos[c] for c in cols], [c.split("=", 1)[-1] for c in cols])
        ax.minorticks_off()
    else:
        ax.set_xticks([pos[c] for c in cols], [c.split("=", 1)[-1] for c in cols])
    ax.set_xlabel(table.xlabel)
    ax.set_ylabel(table.ylabel)
    ax.grid(alpha=0.3)
    ax.set_title(textwrap.fill(plain(table.title), 80) + (f"\n({TINY_NOTE})" if table.tiny else ""), fontsize=8)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)
