"""``--reference LABEL`` (any row is the reference of the gaps and paired differences) and the differences plot
(``results/forest.py``): the data it draws against intervals computed by hand."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest

from results import cli
from results.fixtures import make_record, write_trial
from results.forest import axis_limits, forest_data
from results.render import render_csv
from results.render_md import render_markdown
from results.render_tex import render_latex
from results.tables import build_tables

T975_DF2 = 4.302652729911275  # Student's t, 0.975 quantile, 2 degrees of freedom (printed tables: 4.303)
# per seed 0, 1, 2: AP50 of each row; DenseCL - MoCo v2 = 1.0, 1.5, 2.0 (mean 1.5, sd 0.5)
AP50 = {"supervised IN-1M": [81.0, 81.2, 80.9], "random init": [60.0, 60.4, 60.1],
        "MoCo v2 IN-1M": [81.5, 81.0, 81.3], "DenseCL IN-1M": [82.5, 82.5, 83.3]}
HALF = T975_DF2 * 0.5 / math.sqrt(3)  # 1.2421


def _records(single: bool = True) -> list[dict]:
    recs = []
    for label, values in AP50.items():
        for seed, v in enumerate(values):
            r = make_record(label=label, trial=seed, trials_requested=3,
                            metrics={"AP50": v, "AP": v - 27.0, "AP75": v - 22.0})
            r["seed"] = seed
            recs.append(r)
    if single:  # a row with one trial: a difference without an interval
        r = make_record(label="SimCLR IN-1M", trial=0, trials_requested=1, metrics={"AP50": 79.0, "AP": 52.0, "AP75": 57.0})
        r["seed"] = 0
        recs.append(r)
    return recs


def test_reference_row_gets_every_other_rows_paired_difference() -> None:
    (table,) = build_tables(_records(), reference="MoCo v2 IN-1M")
    assert table.reference is table.row("MoCo v2 IN-1M") and table.reference_chosen
    d = table.row("DenseCL IN-1M").diffs["reference"]["AP50"]
    assert (d.method, d.n) == ("paired", 3) and d.mean == pytest.approx(1.5)
    assert (d.lo, d.hi) == (pytest.approx(1.5 - HALF, abs=1e-6), pytest.approx(1.5 + HALF, abs=1e-6))
    sup = table.row("supervised IN-1M").diffs["reference"]["AP50"]  # 81.0-81.5, 81.2-81.0, 80.9-81.3
    assert sup.mean == pytest.approx((-0.5 + 0.2 - 0.4) / 3)
    assert table.row("MoCo v2 IN-1M").diffs == {}  # none to itself
    assert all("supervised" not in r.diffs and "random" not in r.diffs for r in table.rows)
    # the bracketed gaps are to the chosen row too: 82.8 - 81.3 (1-decimal means)
    assert table.row("DenseCL IN-1M").cells["AP50"].gap == pytest.approx(1.5)
    assert "In brackets: gap to MoCo v2 IN-1M" in table.legend()


def test_default_reference_is_still_the_supervised_row() -> None:
    (table,) = build_tables(_records())
    assert table.reference is table.row("supervised IN-1M") and not table.reference_chosen
    assert "supervised" in table.row("DenseCL IN-1M").diffs and "reference" not in table.row("DenseCL IN-1M").diffs


def test_forest_data_matches_hand_computed_intervals() -> None:
    (table,) = build_tables(_records(), reference="MoCo v2 IN-1M")
    lines = {(ln.row, ln.metric): ln for ln in forest_data(table)}
    dense = lines[("DenseCL IN-1M", "AP50")]
    assert dense.mean == pytest.approx(1.5) and dense.lo == pytest.approx(0.2579, abs=1e-4)
    assert dense.hi == pytest.approx(2.7421, abs=1e-4) and dense.label == "DenseCL IN-1M"
    rand = lines[("random init", "AP50")]  # -21.5, -20.6, -21.2: mean -21.1, sd 0.4583
    assert rand.mean == pytest.approx(-21.1) and rand.hi - rand.mean == pytest.approx(T975_DF2 * 0.458258 / math.sqrt(3), abs=1e-4)
    single = lines[("SimCLR IN-1M", "AP50")]  # one trial: 79.0 - mean(81.5, 81.0, 81.3), no interval, labelled so
    assert single.mean == pytest.approx(79.0 - 243.8 / 3) and single.lo is None and single.hi is None
    assert single.label == "SimCLR IN-1M (1 trial: no interval)" and "no interval" in single.text
    assert {ln.row for ln in forest_data(table)} == {"supervised IN-1M", "random init", "DenseCL IN-1M", "SimCLR IN-1M"}
    # random init is far off the others' scale: the panel's limits keep the others readable, zero inside
    lo, hi = axis_limits([ln for ln in forest_data(table) if ln.metric == "AP50"])
    assert lo < -2.5 and hi > 1.5 + HALF and lo > -21.1


def test_forest_plot_draws_its_data(tmp_path: Path, monkeypatch) -> None:
    from matplotlib.collections import LineCollection

    from results import forest, plots

    figs = []
    monkeypatch.setattr(plots.plt, "close", lambda fig=None: figs.append(fig))
    (table,) = build_tables(_records(), reference="MoCo v2 IN-1M")
    assert forest.forest_plot(table, tmp_path / "diffs.png").read_bytes().startswith(b"\x89PNG")
    fig = figs[-1]
    assert plots.cut_texts(fig) == []
    ax = fig.axes[0]  # AP50
    assert ax.get_title() == "AP50"
    assert any(ln.get_xdata()[0] == 0.0 and ln.get_linestyle() == "--" for ln in ax.get_lines())  # zero marked
    segments = sorted(tuple(round(float(x), 4) for x in (s[0][0], s[1][0]))
                      for c in ax.collections if isinstance(c, LineCollection) for s in c.get_segments())
    assert (round(1.5 - HALF, 4), round(1.5 + HALF, 4)) in segments  # DenseCL's interval, as computed by hand
    assert len(segments) == 2  # DenseCL and supervised; SimCLR has none, random init is an arrow at the edge
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "SimCLR IN-1M (1 trial: no interval)" in labels
    texts = [t.get_text() for t in ax.texts]
    assert any(t.startswith("−21.1") for t in texts)  # the off-scale row carries its value


def test_reference_in_every_format() -> None:
    tables = build_tables(_records(single=False), reference="MoCo v2 IN-1M")
    md = render_markdown(tables)
    assert "| DenseCL IN-1M | MoCo v2 IN-1M | +1.5 [+0.3, +2.7]* |" in md
    assert "MoCo v2 IN-1M | MoCo v2 IN-1M" not in md
    assert "DenseCL IN-1M & MoCo v2 IN-1M & +1.5 [+0.3, +2.7]*" in render_latex(tables)
    df = pd.read_csv(io.StringIO(render_csv(tables)))
    row = df[(df.label == "DenseCL IN-1M") & (df.metric == "AP50")].iloc[0]
    assert row.reference_row == "MoCo v2 IN-1M" and row.vs_reference_diff == pytest.approx(1.5)
    assert row.vs_reference_ci_lo == pytest.approx(1.5 - HALF) and pd.isna(row.vs_supervised_diff)
    from results.render_html import render_html

    page = render_html(tables)
    assert 'data-diff="1.5' in page and "what-this-page-shows" in page


def _write(root: Path) -> None:
    for r in _records():
        write_trial(root, r)


def test_cli_reference_and_unknown_label(tmp_path: Path, capsys) -> None:
    _write(tmp_path / "runs")
    rc = cli.main(["--runs", str(tmp_path / "runs"), "--reference", "MoCo v2 IN-1M", "--out", str(tmp_path / "t"),
                   "--formats", "md,csv,html,png"])
    out = capsys.readouterr().out
    assert rc == 0 and "| DenseCL IN-1M | MoCo v2 IN-1M |" in out
    assert (tmp_path / "t" / "plots" / "diffs_voc_det_R50-C4_24k.png").is_file()
    assert 'class="plot-diffs"' in (tmp_path / "t" / "index.html").read_text()
    rc = cli.main(["--runs", str(tmp_path / "runs"), "--reference", "BYOL", "--out", str(tmp_path / "u")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("results:")]
    assert rc == 2 and len(err) == 1
    assert "no row 'BYOL'" in err[0] and "'DenseCL IN-1M'" in err[0] and "'random init'" in err[0]
