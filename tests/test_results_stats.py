"""Uncertainty of the gaps (results.stats): paired t intervals over common seeds, Welch's fallback, and the
differences in every output format."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from results.fixtures import make_record
from results.render import render_csv
from results.render_html import render_html
from results.render_md import render_markdown
from results.render_tex import render_latex
from results.stats import difference, paired, welch
from results.tables import build_tables, diff_text


def test_paired_interval_matches_a_hand_computation() -> None:
    # d = 2.1, 1.8, 0.6: mean 1.5, sd sqrt(0.63) = 0.7937, se 0.4583, t(0.975, 2) = 4.3027 -> half-width 1.9717
    d = paired([80.1, 81.0, 79.5], [78.0, 79.2, 78.9])
    assert d.method == "paired" and d.n == 3
    assert d.mean == pytest.approx(1.5) and d.lo == pytest.approx(1.5 - 1.9717, abs=1e-3)
    assert d.hi == pytest.approx(1.5 + 1.9717, abs=1e-3) and d.excludes_zero is False
    # d = 1.0, 1.2, 0.8, 1.0: sd 0.1633, se 0.08165, t(0.975, 3) = 3.1824 -> 1.0 ± 0.2598, excludes 0
    d = paired([11.0, 11.2, 10.8, 11.0], [10.0, 10.0, 10.0, 10.0])
    assert (d.lo, d.hi) == (pytest.approx(0.7402, abs=1e-3), pytest.approx(1.2598, abs=1e-3)) and d.excludes_zero
    assert paired([1.0], [0.0]).lo is None and paired([1.0], [0.0]).excludes_zero is None  # one pair: no interval


def test_welch_fallback_for_rows_without_common_seeds() -> None:
    # means 2 and 5, variances of the means 1/3 and 5/3: se sqrt(2); df = 4 / (1/18 + 25/27) = 4.075; t ~ 2.76 (between 2.776 at df 4 and 2.571 at 5)
    d = welch([1.0, 2.0, 3.0], [2.0, 4.0, 6.0, 8.0])
    assert d.method == "welch" and d.mean == pytest.approx(-3.0)
    assert d.hi - d.mean == pytest.approx(2.76 * 2 ** 0.5, abs=0.02) and d.excludes_zero is False
    assert difference({0: 1.0, 1: 2.0, 2: 3.0}, {5: 2.0, 6: 4.0, 7: 6.0, 8: 8.0}).method == "welch"
    assert difference({0: 3.0, 1: 4.0, 9: 7.0}, {0: 1.0, 1: 1.5, 8: 0.0}).method == "paired"  # seeds 0, 1 shared
    assert welch([1.0], [2.0, 3.0]).method == "none"


def _records(shift: float, seeds_moco=(0, 1, 2), seeds_sup=(0, 1, 2)) -> list[dict]:
    recs = []
    noise = [0.3, -0.2, 0.4, -0.1, 0.0]
    for label, base, seeds in (("supervised IN-1M", 50.0, seeds_sup), ("random init", 40.0, (0, 1, 2)),
                               ("MoCo IN-1M", 50.0 + shift, seeds_moco)):
        for t, s in enumerate(seeds):
            r = make_record(label=label, trial=t, trials_requested=len(seeds),
                            metrics={"AP50": base + 30 + noise[s % 5], "AP": base + noise[(s + 1) % 5], "AP75": base + 5})
            r["seed"] = s
            recs.append(r)
    return recs


def test_differences_in_every_format() -> None:
    (table,) = build_tables(_records(1.0))
    moco = table.row("MoCo IN-1M")
    d_sup, d_rand = moco.diffs["supervised"]["AP50"], moco.diffs["random"]["AP50"]
    assert d_sup.method == "paired" and d_sup.n == 3 and d_sup.mean == pytest.approx(1.0) and d_sup.lo == pytest.approx(1.0)
    assert d_rand.mean == pytest.approx(11.0) and d_rand.excludes_zero
    assert "supervised" in table.row("random init").diffs and "random" not in table.row("random init").diffs
    assert table.row("supervised IN-1M").diffs == {}  # none to itself; vs random init is random init's, negated
    md = render_markdown([table])
    assert "| pre-train | difference to | AP50 | AP | AP75 |" in md
    assert "| MoCo IN-1M | supervised IN-1M | +1.0 [+1.0, +1.0]* |" in md
    assert "| MoCo IN-1M | random init | +11.0 [+11.0, +11.0]* |" in md and "interval excludes 0" in md
    df = pd.read_csv(io.StringIO(render_csv([table])))
    row = df[(df.label == "MoCo IN-1M") & (df.metric == "AP50")].iloc[0]
    assert (row.vs_supervised_n, row.vs_supervised_method, bool(row.vs_supervised_excludes_0)) == (3, "paired", True)
    assert row.vs_random_diff == pytest.approx(11.0)
    tex = render_latex([table])
    assert "difference to" in tex and "+11.0 [+11.0, +11.0]*" in tex and tex.isascii()
    html = render_html([table])
    assert '<table class="diffs">' in html and 'class="cell excludes-zero" data-diff="1.0' in html


def test_unpaired_rows_fall_back_to_welch_with_a_note() -> None:
    (table,) = build_tables(_records(0.5, seeds_moco=(3, 4, 0), seeds_sup=(0, 1, 2)))
    d = table.row("MoCo IN-1M").diffs["supervised"]["AP50"]
    assert d.method == "welch" and d.lo is not None and d.lo < 0 < d.hi
    assert any("Welch" in n and "MoCo IN-1M vs supervised IN-1M" in n for n in table.notes)
    assert diff_text(d).startswith("+") and "[" in diff_text(d) and not diff_text(d).endswith("*")


def test_diff_text_rounds_half_up_and_never_prints_plus_minus_zero() -> None:
    from results.tables import Diff

    assert diff_text(Diff(-0.04, None, None, 1, "paired")) == "+0.0 (1 pair: no interval)"
    assert diff_text(Diff(-0.06, -0.25, 0.15, 3, "paired")) == "-0.1 [-0.3, +0.2]"  # half-up, like the tables' means
    assert diff_text(Diff(0.25, 0.05, 0.45, 3, "paired")) == "+0.3 [+0.1, +0.5]*"  # the interval excludes 0
