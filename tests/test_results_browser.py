"""The results page in a real browser: headless Chromium loads the generated ``index.html``, a script measures
the laid-out page (every table and plot present, images decoded, no title, label or cell cut by its box or by
the page's width), and a screenshot is taken. ``.ci/run`` installs Debian's chromium; under CI a missing
browser fails this test instead of skipping it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from results.collect import collect
from results.fixtures import make_record, paper_trials, write_trial
from results.render import write_outputs
from results.tables import build_tables

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("no headless chromium here (.ci/run installs Debian's chromium)", allow_module_level=True)

WIDTH, HEIGHT = 1280, 900
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
         f"--window-size={WIDTH},{HEIGHT}"]

# Runs after layout; writes what it measured into <pre id="layout-report"> for --dump-dom to return.
PROBE = """<script>
window.addEventListener('load', () => {
  const vw = document.documentElement.clientWidth;
  const cut = [];
  for (const el of document.querySelectorAll('h1, h2, th, td, caption, figcaption, li, p')) {
    const r = el.getBoundingClientRect();
    if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible') cut.push(el.textContent.trim().slice(0, 60));
    if (r.right > vw + 1 && !el.closest('.table-wrap')) cut.push('beyond the page: ' + el.textContent.trim().slice(0, 60));
  }
  for (const w of document.querySelectorAll('.table-wrap')) {
    if (w.getBoundingClientRect().right > vw + 1) cut.push('table wrapper beyond the page');
  }
  const sections = [...document.querySelectorAll('section.result-table')].map(s => ({
    id: s.id, title: s.querySelector('h2').textContent.trim(),
    rows: [...s.querySelectorAll('table:not(.diffs) tbody tr')].length,
    diffs: [...s.querySelectorAll('table.diffs tbody tr')].length,
    images: [...s.querySelectorAll('img')].map(i => ({ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth,
      h: i.naturalHeight, kind: i.parentElement.className, left: i.getBoundingClientRect().left,
      right: i.getBoundingClientRect().right, shownH: Math.round(i.getBoundingClientRect().height),
      shown: Math.round(i.getBoundingClientRect().width), room: Math.round(i.parentElement.getBoundingClientRect().width)}))
  }));
  const closing = document.querySelector('p.closing');
  const pre = document.createElement('pre');
  pre.id = 'layout-report';
  pre.textContent = JSON.stringify({viewport: vw, page: document.documentElement.scrollWidth, cut, sections,
                                    closing: closing ? closing.textContent.trim() : null});
  document.body.appendChild(pre);
});
</script>"""


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, list]:
    """A results folder like a real sweep's: Table 2 rows, a tiny table, a long and a mathtext label, curves."""
    runs = tmp_path_factory.mktemp("runs")
    recs = [r for r in paper_trials("Table 2", trials=3) if r["arch"] == "R50-C4"]
    recs += [make_record(label="MoCo $\\textbf{ours}$, a long label: 800 epochs, 4096 batch, cosine", trial=t,
                         trials_requested=3, metrics={"AP50": 81.0 + t / 3, "AP": 55.0, "AP75": 61.0}) for t in range(3)]
    recs += [make_record(task="cityscapes_semseg", arch="R50-dilated-FCN16s", schedule="90k", label=label, tiny=True,
                         trial=t, trials_requested=2, metrics={"mIoU": base + t})
             for t in range(2) for label, base in (("supervised IN-1M", 40.0), ("MoCo IN-1M", 42.0))]
    for r in recs:
        log = [{"iteration": it, "total_loss": 2.0 / (1 + it), "lr": 0.02} for it in range(0, 20, 5)]
        write_trial(runs, r, log=log)
    tables = build_tables(collect([runs]).records, with_paper=True)
    write_outputs(tables, runs / "tables")
    return runs / "tables" / "index.html", tables


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={cwd / 'profile'}", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_results_page_lays_out_every_table_and_plot_uncut(page, tmp_path: Path) -> None:
    assert CHROMIUM, "CI=true: chromium must be installed (.ci/run installs it)"
    html, tables = page
    probed = tmp_path / "probed.html"
    probed.write_text(html.read_text(encoding="utf-8").replace("</body>", PROBE + "\n</body>"), encoding="utf-8")
    proc = _chromium("--virtual-time-budget=10000", "--dump-dom", probed.as_uri(), cwd=tmp_path)
    found = re.search(r'<pre id="layout-report">(.*?)</pre>', proc.stdout, re.S)
    assert proc.returncode == 0 and found, proc.stderr[-2000:]
    report = json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"'))
    assert report["cut"] == [], report["cut"]
    sections = {s["id"]: s for s in report["sections"]}
    assert list(sections) == [t.id for t in tables]
    for t in tables:
        s = sections[t.id]
        assert s["title"] == t.title and s["rows"] == len(t.rows) and s["diffs"] == len(t.diff_rows())
        assert len(s["images"]) >= 1  # the bar chart (and the training curves)
        for img in s["images"]:
            assert img["ok"] and img["shown"] > 100 and img["shown"] <= img["room"] + 1, img
    assert sections[tables[0].id]["diffs"] >= 3  # MoCo rows against supervised and random init


def _probe(html: Path, tmp_path: Path) -> dict:
    probed = tmp_path / "probed.html"
    probed.write_text(html.read_text(encoding="utf-8").replace("</body>", PROBE + "\n</body>"), encoding="utf-8")
    proc = _chromium("--virtual-time-budget=10000", "--dump-dom", probed.as_uri(), cwd=tmp_path)
    found = re.search(r'<pre id="layout-report">(.*?)</pre>', proc.stdout, re.S)
    assert proc.returncode == 0 and found, proc.stderr[-2000:]
    return json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"'))


def test_differences_plot_is_shown_whole_and_the_closing_note_says_what_the_page_shows(page, tmp_path: Path) -> None:
    assert CHROMIUM, "CI=true: chromium must be installed (.ci/run installs it)"
    html, tables = page
    report = _probe(html, tmp_path)
    sections = {s["id"]: s for s in report["sections"]}
    with_diffs = [t for t in tables if t.reference_diffs()]
    assert with_diffs  # the Table 2 rows against supervised, the tiny table's MoCo row
    for t in with_diffs:
        plots = [i for i in sections[t.id]["images"] if i["kind"] == "plot-diffs"]
        assert len(plots) == 1, sections[t.id]["images"]
        img = plots[0]
        assert img["ok"] and img["w"] > 0 and img["h"] > 0 and img["shownH"] > 50  # decoded, drawn at a real size
        assert img["left"] >= 0 and img["right"] <= report["page"] + 1 and img["right"] <= report["viewport"] + 1
        assert img["shown"] <= img["room"] + 1  # scaled into its box, never cropped by it
    assert report["closing"] and report["closing"].startswith("What this page shows:")
    assert "differences plot" in report["closing"] and report["cut"] == []


def test_results_page_screenshot(page, tmp_path: Path) -> None:
    assert CHROMIUM, "CI=true: chromium must be installed (.ci/run installs it)"
    html, _ = page
    shot = tmp_path / "page.png"
    proc = _chromium(f"--screenshot={shot}", html.as_uri(), cwd=tmp_path)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (WIDTH, HEIGHT)
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, table rules and the plot: not a blank page
