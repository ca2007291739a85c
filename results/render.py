"""Write every output format for a list of tables: the API the CLI and the runners call."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable

import pandas as pd

from results.render_html import render_html
from results.render_md import render_markdown
from results.render_tex import render_latex
from results.tables import Table, tables_frame

FORMATS = ("md", "tex", "csv", "html", "png")
FILES = {"md": "tables.md", "tex": "tables.tex", "csv": "tables.csv", "html": "index.html"}


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _no_formula(value):
    """A text cell that a spreadsheet would run as a formula (``=HYPERLINK(...)``) gets a leading ``'``."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def render_csv(tables: list[Table]) -> str:
    """Tidy CSV: one line per (table, pre-training row, metric) with mean, std, n, gap and mark; text cells
    that start like a spreadsheet formula are prefixed with ``'``."""
    df = tables_frame(tables)
    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col]):
            df[col] = df[col].map(_no_formula)
    return df.to_csv(index=False)


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_plots(tables: list[Table], out_dir: str | os.PathLike,
                errors: list[tuple[str, str]] | None = None) -> dict[str, list[Path]]:
    """``plots/diffs_<id>.png`` (the differences plot, where rows have differences to a reference),
    ``plots/bars_<id>.png`` and, where metrics logs exist, ``plots/curves_<id>.png`` per table; a table
    with its own ``make_plots(plots_dir)`` (the ablation tables: ``plots/figure_<id>.png``) makes its own.
    A plot that fails is left out with one line in ``errors``; the other plots are still made."""
    from results import forest
    from results.plots import bar_chart, plt, training_curves

    plots_dir = Path(out_dir) / "plots"
    out: dict[str, list[Path]] = {}
    for t in tables:
        own = getattr(t, "make_plots", None)
        makers = [lambda t=t: own(plots_dir)] if own is not None else [
            lambda t=t: [forest.forest_plot(t, plots_dir / f"diffs_{t.id}.png")],
            lambda t=t: [bar_chart(t, plots_dir / f"bars_{t.id}.png")],
            lambda t=t: [training_curves(t, plots_dir / f"curves_{t.id}.png")]]
        out[t.id] = []
        for make in makers:
            try:
                out[t.id] += [p for p in make() if p is not None]
            except Exception as e:  # noqa: BLE001 - a plot never costs the tables
                plt.close("all")
                if errors is not None:
                    errors.append((t.id, f"plot not made ({type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e).strip() else ''})"))
    return out


def write_outputs(tables: list[Table], out_dir: str | os.PathLike, formats: Iterable[str] = FORMATS,
                  skipped: Iterable[tuple[str, str]] = (), std: bool = True) -> dict[str, list[Path]]:
    """Write the requested formats under ``out_dir``; returns ``{format: [paths]}``."""
    formats = list(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(unknown)} (choose from {', '.join(FORMATS)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    # Tables first, plots after, the page (which embeds the plots) last: a plot never costs a table.
    texts = {"md": lambda: render_markdown(tables, std=std), "tex": lambda: render_latex(tables, std=std),
             "csv": lambda: render_csv(tables)}
    for fmt in formats:
        if fmt in texts:
            written[fmt] = [_write_text(out / FILES[fmt], texts[fmt]())]
    plots: dict[str, list[Path]] = {}
    plot_errors: list[tuple[str, str]] = []
    if "png" in formats:
        plots = write_plots(tables, out, plot_errors)
        written["png"] = [p for ps in plots.values() for p in ps]
        for where, reason in plot_errors:
            print(f"results: {where}: {reason}", file=sys.stderr)
    if "html" in formats:
        written["html"] = [_write_text(out / FILES["html"], render_html(tables, plots, [*skipped, *plot_errors]))]
    return written
