"""Write every output format for a list of tables: the API the CLI and the runners call."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from results.render_html import render_html
from results.render_md import render_markdown
from results.render_tex import render_latex
from results.tables import Table, tables_frame

FORMATS = ("md", "tex", "csv", "html", "png")
FILES = {"md": "tables.md", "tex": "tables.tex", "csv": "tables.csv", "html": "index.html"}


def render_csv(tables: list[Table]) -> str:
    """Tidy CSV: one line per (table, pre-training row, metric) with mean, std, n, gap and mark."""
    return tables_frame(tables).to_csv(index=False)


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_plots(tables: list[Table], out_dir: str | os.PathLike) -> dict[str, list[Path]]:
    """``plots/bars_<id>.png`` and, where metrics logs exist, ``plots/curves_<id>.png`` per table; a table
    with its own ``make_plots(plots_dir)`` (the ablation tables: ``plots/figure_<id>.png``) makes its own."""
    from results.plots import bar_chart, training_curves

    plots_dir = Path(out_dir) / "plots"
    out: dict[str, list[Path]] = {}
    for t in tables:
        own = getattr(t, "make_plots", None)
        made = own(plots_dir) if own is not None else [bar_chart(t, plots_dir / f"bars_{t.id}.png"),
                                                         training_curves(t, plots_dir / f"curves_{t.id}.png")]
        out[t.id] = [p for p in made if p is not None]
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
    plots: dict[str, list[Path]] = {}
    if "png" in formats:
        plots = write_plots(tables, out)
        written["png"] = [p for ps in plots.values() for p in ps]
    renderers = {"md": lambda: render_markdown(tables, std=std), "tex": lambda: render_latex(tables, std=std),
                 "csv": lambda: render_csv(tables), "html": lambda: render_html(tables, plots, skipped)}
    for fmt in formats:
        if fmt in renderers:
            written[fmt] = [_write_text(out / FILES[fmt], renderers[fmt]())]
    return written
