"""Every output format renders: Markdown, LaTeX, CSV, HTML (parsed and checked), PNG plots."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from results.collect import collect
from results.fixtures import make_record, paper_trials, write_trial
from results.plots import read_metrics_log
from results.render import render_csv, write_outputs
from results.render_html import render_html
from results.render_md import render_markdown
from results.render_tex import metric_tex, render_latex
from results.tables import Table, build_tables

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _log(trial: int) -> list[dict]:
    """A Detectron2-style metrics.json: training lines, then an evaluation line."""
    lines = [{"iteration": it, "total_loss": 2.0 / (1 + it / 10) + 0.01 * trial, "lr": 0.02 * min(1.0, (it + 1) / 20),
              "loss_cls": 0.5, "time": 0.1} for it in range(0, 40, 5)]
    return lines + [{"iteration": 39, "bbox/AP": 50.0 + trial, "bbox/AP50": 80.0, "bbox/AP75": 55.0}]


@pytest.fixture(scope="module")
def tables() -> list[Table]:
    recs = [r for r in paper_trials("Table 2", trials=5) if r["arch"] == "R50-C4"]
    recs = [r for r in recs if not (r["pretrain"]["label"] == "MoCo IG-1B" and r["trial"] >= 3)]
    recs.append(make_record(label="MoCo IG-1B", trial=3, status="failed", error="NaN loss"))
    recs += [make_record(label="MoCo_R18 & co", arch="R18-C4", schedule="tiny-40", tiny=True, trial=t,
                         trials_requested=2, metrics={"AP50": 10.0 + t, "AP": 4.0, "AP75": 2.0}) for t in range(2)]
    return build_tables(recs, with_paper=True)


def test_markdown(tables: list[Table]) -> None:
    md = render_markdown(tables)
    lines = md.splitlines()
    assert lines[0] == "### PASCAL VOC detection (Faster R-CNN): R50-C4, 24k (layout of MoCo v1 Table 2)"
    assert "| pre-train | source | trials | AP50 | AP | AP75 |" in lines
    assert ("| MoCo IN-1M | this run | 5/5 | 81.5±0.0 (+0.2) | 55.9±0.0 (+2.4 ▲) | 62.6±0.0 (+3.8 ▲) |"
            in lines)
    assert "| random init | this run | 5/5 | 60.2±0.0 (-21.1 ▼) | 33.8±0.0 (-19.7 ▼) | 33.1±0.0 (-25.7 ▼) |" in lines
    assert ("| MoCo IG-1B | this run | 3/5, 1 failed | 82.2±0.0 (+0.9 ▲) [3/5, 1 failed] "
            "| 57.2±0.0 (+3.7 ▲) [3/5, 1 failed] | 63.7±0.0 (+4.9 ▲) [3/5, 1 failed] |") in lines
    assert "| MoCo IN-1M | paper: MoCo v1 Table 2 |  | 81.5 (+0.2) | 55.9 (+2.4 ▲) | 62.6 (+3.8 ▲) |" in lines
    tiny = md[md.index("tiny demo"):]
    assert "Small-scale demonstration — not the paper's protocol" in tiny
    assert "MoCo\\_R18" not in tiny and "MoCo_R18 & co" in tiny
    assert "No published numbers" in tiny  # tiny rows are never beside paper rows
    no_std = render_markdown(tables, std=False)
    assert "±" not in no_std.split("Mean ±")[0] and "| 5/5 | 81.5 (+0.2) | 55.9 (+2.4 ▲) |" in no_std


def test_latex(tables: list[Table]) -> None:
    tex = render_latex(tables)
    assert tex.isascii()
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 2
    n_diff_tables = sum(bool(t.diff_rows()) for t in tables)  # the differences with their intervals
    assert n_diff_tables == 1 and tex.count(r"\toprule") == tex.count(r"\bottomrule") == 2 + n_diff_tables
    assert r"\providecolor{mocobetter}" in tex and r"\providecolor{mocoworse}" in tex
    assert r"55.9{\scriptsize$\pm$0.0} {\scriptsize \textcolor{mocobetter}{(+2.4)}}" in tex
    assert r"\textcolor{mocoworse}{($-$21.1)}" in tex
    assert r"81.5{\scriptsize$\pm$0.0} {\scriptsize (+0.2)}" in tex  # < +0.5: not coloured
    assert r"{\scriptsize [3/5, 1 failed]}" in tex
    assert r"MoCo\_R18 \& co" in tex and "not the paper's protocol" in tex
    assert metric_tex("APbb50") == r"AP$^{\rm bb}_{50}$" and metric_tex("AP") == "AP"
    depth = 0
    for i, ch in enumerate(tex):  # braces balance, ignoring escaped ones
        if ch in "{}" and tex[i - 1] != "\\":
            depth += 1 if ch == "{" else -1
            assert depth >= 0
    assert depth == 0


def test_csv_round_trips_numbers(tables: list[Table]) -> None:
    df = pd.read_csv(io.StringIO(render_csv(tables)))
    moco = df[(df.source == "measured") & (df.label == "MoCo IN-1M") & (df.metric == "AP")].iloc[0]
    assert (moco.mean_1d, moco.gap, moco.mark, moco.n, moco.requested, moco.failed) == (55.9, 2.4, "better", 5, 5, 0)
    ig = df[(df.source == "measured") & (df.label == "MoCo IG-1B") & (df.metric == "AP75")].iloc[0]
    assert (ig.n, ig.requested, ig.failed) == (3, 5, 1)
    paper = df[df.source.str.startswith("MoCo v1") & (df.label == "supervised IN-1M")]
    assert paper.reference.all() and list(paper["mean"]) == [81.3, 53.5, 58.8]
    assert set(df.table) == {"voc_det_R50-C4_24k", "voc_det_R18-C4_tiny-40_tiny"}


class _Page(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tables: list[list[list[tuple[str, dict, str]]]] = []
        self.urls: list[str] = []
        self.text: list[str] = []
        self.errors: list[str] = []
        self._cell: tuple[str, dict] | None = None
        self._cell_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell, self._cell_text = (tag, a), []

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
            return
        self.stack.pop()
        if tag in ("td", "th") and self._cell:
            self.tables[-1][-1].append((*self._cell, "".join(self._cell_text).strip()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell:
            self._cell_text.append(data)


def test_html_page_structure(tables: list[Table], tmp_path: Path) -> None:
    png = tmp_path / "bars.png"
    from results.plots import bar_chart

    bar_chart(tables[0], png)
    page = render_html(tables, plots={tables[0].id: [png]}, skipped=[("/x/trial_record.json", "corrupt <JSON>")])
    assert page.startswith("<!DOCTYPE html>")
    p = _Page()
    p.feed(page)
    p.close()
    assert not p.errors and p.stack == []
    assert len(p.tables) == 3  # the C4 table, its differences, the tiny table
    c4, diffs = p.tables[0], p.tables[1]
    assert [c[2] for c in diffs[0]] == ["pre-train", "difference to", "AP50", "AP", "AP75"]
    assert any([c[2] for c in r][:3] == ["MoCo IN-1M", "supervised IN-1M", "+0.2 [+0.2, +0.2]*"] for r in diffs)
    assert [c[2] for c in c4[0]] == ["pre-train", "source", "trials", "AP50", "AP", "AP75"]
    assert all(len(r) == 6 for r in c4) and len(c4) == 1 + 4 + 7  # header, measured, paper rows
    moco = next(r for r in c4 if r[0][2] == "MoCo IN-1M")
    assert moco[4][2] == "55.9±0.0 (+2.4)" and "better" in moco[4][1]["class"].split()
    assert moco[3][2] == "81.5±0.0 (+0.2)" and moco[3][1]["class"] == "cell"
    ig = next(r for r in c4 if r[0][2] == "MoCo IG-1B")
    assert "incomplete" in ig[3][1]["class"] and "[3/5, 1 failed]" in ig[3][2]
    assert ig[3][1]["title"] == "mean=82.200, std=0.000, trials=3/5, failed=1"
    rand = next(r for r in c4 if r[0][2] == "random init")
    assert "worse" in rand[3][1]["class"] and rand[3][1]["data-gap"] == "-21.1"
    text = "".join(p.text)
    assert "not the paper's protocol" in text and "corrupt <JSON>" in text
    assert p.urls and all(u.startswith("data:image/png;base64,") for u in p.urls)  # self-contained
    assert base64.b64decode(p.urls[0].split(",", 1)[1]).startswith(PNG_MAGIC)


def test_write_outputs_and_plots(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for label, ap in (("supervised IN-1M", 53.5), ("MoCo IN-1M", 55.9), ("random init", 33.8)):
        for t in range(2):
            write_trial(runs, make_record(label=label, trial=t, trials_requested=2,
                                          metrics={"AP50": ap + 25, "AP": ap + t, "AP75": ap + 5}), log=_log(t))
    write_trial(runs, make_record(label="MoCo IN-1M", arch="R50-dilated-C5", metrics={"AP": 1.0}, trials_requested=1))
    tables = build_tables(collect([runs]).records)
    written = write_outputs(tables, tmp_path / "out")
    assert sorted(written) == ["csv", "html", "md", "png", "tex"]
    names = sorted(p.name for p in written["png"])
    assert names == ["bars_voc_det_R50-C4_24k.png", "bars_voc_det_R50-dilated-C5_24k.png",
                     "curves_voc_det_R50-C4_24k.png",  # no metrics log for the C5 trial: no curves
                     "diffs_voc_det_R50-C4_24k.png"]  # the differences plot; the C5 table has one row: none
    for p in written["png"]:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
    for fmt in ("md", "tex", "csv", "html"):
        assert written[fmt][0].stat().st_size > 200
    assert (tmp_path / "out" / "index.html").read_text().count("data:image/png;base64,") == 4
    only = write_outputs(tables, tmp_path / "md-only", ["md"])
    assert list(only) == ["md"] and not (tmp_path / "md-only" / "plots").exists()
    with pytest.raises(ValueError, match="unknown format"):
        write_outputs(tables, tmp_path / "x", ["pdf"])


def test_metrics_log_tolerates_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text('{"iteration": 0, "total_loss": 1.5, "lr": 0.01}\nnot json\n{"lr": 1}\n{"iteration": 5, "tot')
    assert read_metrics_log(path) == [{"iteration": 0, "total_loss": 1.5, "lr": 0.01}]
    assert read_metrics_log(tmp_path / "missing.json") == []




def test_plot_titles_and_labels_fit_their_figure(monkeypatch, tmp_path: Path) -> None:
    """A one-metric table's long title used to run off the bar chart (cut in the PNG): titles are wrapped."""
    from results import plots

    figs = []
    monkeypatch.setattr(plots.plt, "close", lambda fig=None: figs.append(fig))
    recs = [make_record(task="cityscapes_semseg", arch="R50-dilated-FCN16s", schedule="90k", label=label, tiny=True,
                        trial=t, trials_requested=2, metrics={"mIoU": 50.0 + t})
            for t in range(2) for label in ("supervised IN-1M", "MoCo $\\textbf{ours}$ and a long label, 800 epochs")]
    (table,) = build_tables(recs)
    assert plots.bar_chart(table, tmp_path / "bars.png").read_bytes().startswith(PNG_MAGIC)
    assert plots.cut_texts(figs[-1]) == []
    texts = [t.get_text() for t in figs[-1].findobj(plots.matplotlib.text.Text)]
    assert any("\\$\\textbf{ours}\\$" in t for t in texts)  # shown as written, not as mathtext
