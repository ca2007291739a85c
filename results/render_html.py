"""A self-contained HTML page: inline CSS, plots embedded as data URIs, no external resources.

Cells carry ``class="better"`` (green, gap ≥ +0.5) or ``class="worse"`` (red, gap ≤ −0.5) and
``incomplete`` when trials are missing or failed; the title attribute holds mean, std and counts.
"""

from __future__ import annotations

import base64
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import jinja2

from results.tables import Cell, Table

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
caption { caption-side: bottom; text-align: left; font-size: 0.85em; color: #555; padding-top: 0.5em; }
th, td { padding: 0.3em 0.8em; border-top: 1px solid #ddd; }
thead th { border-bottom: 2px solid #222; border-top: 2px solid #222; }
tbody tr:last-child th, tbody tr:last-child td { border-bottom: 2px solid #222; }
tr.paper { color: #666; font-style: italic; }
tr.first-paper th, tr.first-paper td { border-top: 2px solid #888; }
tr.reference th { text-decoration: underline dotted; }
td.cell { text-align: center; white-space: nowrap; }
th[scope=row] { text-align: left; font-weight: normal; }
.std, .count { font-size: 0.8em; color: #666; }
.gap { font-size: 0.85em; }
td.better .gap { color: #080; font-weight: bold; }
td.worse .gap { color: #b00; font-weight: bold; }
td.incomplete { background: #fff4d6; }
table.diffs td.excludes-zero { font-weight: bold; }
.tiny { border-left: 4px solid #d80; padding: 0.3em 0.8em; background: #fff8ec; font-weight: bold; }
figure { margin: 1em 0; }
p.closing { font-size: 0.9em; color: #444; border-top: 1px solid #ddd; padding-top: 0.8em; }
figure img { max-width: 100%; height: auto; box-sizing: border-box; border: 1px solid #eee; }
.table-wrap { overflow-x: auto; max-width: 100%; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="meta">Generated {{ created }} from {{ n_rows }} pre-training rows in {{ tables|length }} tables.</p>
{% for t in tables %}
<section class="result-table" id="{{ t.id }}">
<h2>{{ t.title }}</h2>
{% if t.tiny %}<p class="tiny">{{ tiny_caption }}</p>{% endif %}
<div class="table-wrap"><table>
<caption>{{ t.legend() }}</caption>
<thead><tr>{% for h in t.lead_columns %}<th scope="col">{{ h }}</th>{% endfor %}{% for m in t.metrics %}<th scope="col">{{ m }}</th>{% endfor %}</tr></thead>
<tbody>
{% for r in t.rows %}
<tr class="{{ 'measured' if r.measured else 'paper' }}{% if r is sameas t.reference or r is sameas t.paper_reference %} reference{% endif %}{% if not r.measured and loop.previtem is defined and loop.previtem.measured %} first-paper{% endif %}">
{% set lead = t.lead_cells(r) %}<th scope="row"{% if r is sameas t.reference or r is sameas t.paper_reference %} title="gap reference"{% endif %}>{{ lead[0] }}</th>{% for c in lead[1:] %}<td>{{ c }}</td>{% endfor %}
{% for m in t.metrics %}{% set c = r.cells[m] %}<td class="{{ cell_class(c) }}" title="{{ cell_title(c) }}"{% if c.mean is not none %} data-mean="{{ c.mean }}"{% endif %}{% if c.gap is not none %} data-gap="{{ c.gap }}"{% endif %}><span class="v">{{ c.value_text(std=False) }}</span>{% if r.measured and c.std is not none %}<span class="std">±{{ fmt(c.std) }}</span>{% endif %}{% if c.gap is not none %} <span class="gap">({{ c.gap_text(minus='−') }})</span>{% endif %}{% if c.incomplete %} <span class="count">[{{ c.count_text() }}]</span>{% endif %}</td>{% endfor %}
</tr>
{% endfor %}
</tbody>
</table></div>
{% set diffs = t.diff_rows() %}{% if diffs %}
<div class="table-wrap"><table class="diffs">
<caption>{{ diff_legend }}</caption>
<thead><tr><th scope="col">pre-train</th><th scope="col">difference to</th>{% for m in t.metrics %}<th scope="col">{{ m }}</th>{% endfor %}</tr></thead>
<tbody>
{% for r, ref, d in diffs %}<tr><th scope="row">{{ r.display }}</th><td>{{ ref }}</td>{% for m in t.metrics %}{% if m in d %}<td class="cell{{ ' excludes-zero' if d[m].excludes_zero else '' }}" data-diff="{{ d[m].mean }}"{% if d[m].lo is not none %} data-lo="{{ d[m].lo }}" data-hi="{{ d[m].hi }}"{% endif %} title="{{ d[m].method }}, {{ d[m].n }} {{ 'pairs' if d[m].method == 'paired' else 'trials' }}">{{ diff_text(d[m], minus='−') }}</td>{% else %}<td class="cell">—</td>{% endif %}{% endfor %}</tr>
{% endfor %}
</tbody>
</table></div>
{% endif %}
{% if t.notes %}<ul class="notes">{% for n in t.notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
{% for src, alt, kind in images.get(t.id, []) %}<figure class="plot-{{ kind }}"><img src="{{ src }}" alt="{{ alt }}"><figcaption>{{ alt }}</figcaption></figure>
{% endfor %}
</section>
{% endfor %}
<p class="closing" id="what-this-page-shows">{{ closing }}</p>
{% if skipped %}
<section id="skipped">
<h2>Skipped records</h2>
<ul>{% for path, reason in skipped %}<li><code>{{ path }}</code>: {{ reason }}</li>{% endfor %}</ul>
</section>
{% endif %}
</body>
</html>
"""


def _cell_class(cell: Cell) -> str:
    return " ".join(["cell"] + ([cell.mark] if cell.mark else []) + (["incomplete"] if cell.incomplete else []))


def _cell_title(cell: Cell) -> str:
    if cell.requested is None:
        return "published number" if cell.mean is not None else "not published"
    parts = [f"mean={cell.mean:.3f}" if cell.mean is not None else "no finished trial"]
    if cell.std is not None:
        parts.append(f"std={cell.std:.3f}")
    parts.append(f"trials={cell.n or 0}/{cell.requested}")
    if cell.failed:
        parts.append(f"failed={cell.failed}")
    return ", ".join(parts)


CLOSING = ("What this page shows: per table, the mean ± std of every metric over each row's finished trials "
           "(percent), the gap to the reference row in brackets (green ≥ +0.5, the paper's convention; red ≤ −0.5, "
           "this suite's addition), the paired differences to the reference with their 95% intervals as a table and "
           "as the differences plot (dashed line: no difference; a row with fewer than 2 paired trials has no "
           "interval and says so), the means as bars and the training curves; the notes under each table say where "
           "a row's protocol differs from the paper's.")


def _plot_caption(path: Path) -> str:
    if path.name.startswith("diffs_"):
        return ("Differences plot: each row's paired difference to the reference row per metric, with its 95% "
                "interval (t distribution); dashed line: no difference; a row without an interval had fewer than 2 "
                "paired trials; an arrow at the edge: a row off the others' scale, with its value.")
    if path.name.startswith("bars_"):
        return "Mean per metric; error bars: std over trials (paper rows hatched)."
    if path.name.startswith("curves_"):
        return "Training curves per trial: total loss, learning rate and evaluation AP over iterations."
    if path.name.startswith("figure_"):
        return "One line per row over the columns; measured: mean with std error bars; paper: dashed."
    return path.stem


def data_uri(path: str | os.PathLike) -> str:
    """A PNG file as a ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_html(tables: list[Table], plots: dict[str, Iterable[str | os.PathLike]] | None = None,
                skipped: Iterable[tuple[str, str]] = (), title: str = "Detection-transfer results") -> str:
    """The page: every table, its plots (``plots[table.id]``, embedded) and the skipped records."""
    from results.tables import DIFF_LEGEND, TINY_CAPTION, diff_text, fmt1

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    images = {tid: [(data_uri(p), _plot_caption(Path(p)), Path(p).name.split("_")[0]) for p in paths]
              for tid, paths in (plots or {}).items()}
    return env.from_string(_TEMPLATE).render(
        title=title, tables=tables, closing=CLOSING, diff_legend=DIFF_LEGEND, diff_text=diff_text, images=images, skipped=list(skipped), tiny_caption=TINY_CAPTION,
        n_rows=sum(len(t.measured_rows()) for t in tables), fmt=fmt1, cell_class=_cell_class,
        cell_title=_cell_title, created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
