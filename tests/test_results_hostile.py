"""``python -m results`` on records and folders a stranger could hand it: every unusable record or metric is one
``skipped`` line, labels that would break a renderer are shown as written, and tables are written before plots."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from results import cli, render
from results.collect import MAX_DEPTH, collect
from results.fixtures import make_record, write_trial
from core.records import RECORD_NAME, SCHEMA


def _good(runs: Path, label: str = "MoCo IN-1M", trials: int = 2) -> list[Path]:
    out = []
    for lab, ap in (("supervised IN-1M", 53.5), (label, 55.9)):
        for t in range(trials):
            out.append(write_trial(runs, make_record(label=lab, trial=t, trials_requested=trials,
                                                     metrics={"AP50": ap + 25, "AP": ap + t, "AP75": ap + 5})))
    return out


def _edit(trial_dir: Path, **changes) -> None:
    path = trial_dir / RECORD_NAME
    rec = json.loads(path.read_text())
    rec.update(changes)
    path.write_text(json.dumps(rec))


def _run(capsys, *argv: str) -> tuple[int, str, list[str]]:
    rc = cli.main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err.splitlines()


def test_bad_fields_and_metrics_are_one_skipped_line_each(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    dirs = _good(runs)
    extra = [write_trial(runs, make_record(label=f"bad {k}", trial=0, metrics={"AP": 50.0})) for k in range(4)]
    _edit(extra[0], fingerprint="abc")
    _edit(extra[1], resumed={"from_iters": "12"})
    _edit(extra[2], fingerprint={"hash": ["x"], "values": {}})
    _edit(dirs[-1], metrics={"AP50": 1e30, "AP": 56.9, "AP75": 60.9})
    deep = extra[3] / RECORD_NAME
    deep.write_text('{"schema": "' + SCHEMA + '", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    rc, out, err = _run(capsys, "--runs", str(runs), "--out", str(tmp_path / "t"))
    assert rc == 0 and "| MoCo IN-1M |" in out
    skipped = [ln for ln in err if ln.startswith("skipped ")]
    assert any("bad_0" in ln and "'fingerprint' must be an object" in ln for ln in skipped)
    assert any("bad_1" in ln and "resumed.from_iters" in ln for ln in skipped)
    assert any("bad_2" in ln and "string 'hash'" in ln for ln in skipped)
    assert any("bad_3" in ln and "nested too deeply" in ln for ln in skipped)
    assert any("metric 'AP50' = 1e+30 is outside 0..100" in ln for ln in skipped)
    assert "Traceback" not in "\n".join(err)
    moco = [ln for ln in out.splitlines() if ln.startswith("| MoCo IN-1M |")][0]
    assert "80.9" in moco  # AP50 of the MoCo row: the one sound trial only, not 1e30 averaged in


def test_deep_folders_are_searched_to_a_limit_without_crashing(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shallow = runs
    for i in range(MAX_DEPTH - 8):
        shallow = shallow / "d"
    deep = shallow
    for i in range(20):
        deep = deep / "d"
    for where, label in ((shallow, "supervised IN-1M"), (deep, "MoCo deep")):
        write_trial(where, make_record(label=label, trial=0, metrics={"AP": 50.0}))
    (runs / "loop").symlink_to(runs)  # a link back up: not followed
    coll = collect([runs])
    assert [r["pretrain"]["label"] for r in coll.records] == ["supervised IN-1M"]
    assert any(f"more than {MAX_DEPTH} folders" in reason for _, reason in coll.skipped)


@pytest.mark.parametrize("label", ["MoCo $\\textbf{ours}$", "MoCo $\\foo{$ broken", "=HYPERLINK(\"http://x\")",
                                   "MoCo\nline two | pipe"])
def test_labels_that_break_renderers_are_shown_as_written(tmp_path: Path, capsys, label: str) -> None:
    runs = tmp_path / "runs"
    _good(runs, label=label)
    out_dir = tmp_path / "t"
    rc, out, err = _run(capsys, "--runs", str(runs), "--out", str(out_dir))
    assert rc == 0, err
    assert all((out_dir / f).stat().st_size > 200 for f in ("tables.md", "tables.tex", "tables.csv", "index.html"))
    assert len(list((out_dir / "plots").glob("bars_*.png"))) == 1 and not [ln for ln in err if "plot not made" in ln]
    rows = [ln for ln in (out_dir / "tables.md").read_text().splitlines() if ln.startswith("| ")]
    assert all(ln.endswith("|") for ln in rows)  # no row broken by a newline in a label
    df = pd.read_csv(out_dir / "tables.csv")
    shown = set(df.label)
    if label.startswith("="):
        assert "'" + label in shown and label not in shown  # a spreadsheet shows it, does not run it
    else:
        assert label in shown


def test_tables_are_written_even_when_a_plot_fails(tmp_path: Path, capsys, monkeypatch) -> None:
    runs = tmp_path / "runs"
    _good(runs)

    def broken(*a, **k):
        raise ValueError("mathtext parse error\nsecond line")

    import results.plots

    monkeypatch.setattr(results.plots, "bar_chart", broken)
    rc, out, err = _run(capsys, "--runs", str(runs), "--out", str(tmp_path / "t"))
    assert rc == 0
    for name in ("tables.md", "tables.tex", "tables.csv", "index.html"):
        assert (tmp_path / "t" / name).is_file()
    assert [ln for ln in err if "plot not made (ValueError: mathtext parse error)" in ln]
    assert "plot not made" in (tmp_path / "t" / "index.html").read_text()
    assert render.FORMULA_START[0] == "="


def test_csv_formula_guard_leaves_numbers_alone() -> None:
    assert render._no_formula("-3.2") == "'-3.2" and render._no_formula(-3.2) == -3.2
    assert render._no_formula("MoCo") == "MoCo" and render._no_formula("@SUM(A1)") == "'@SUM(A1)"
    df = pd.read_csv(io.StringIO("a\n'=1\n"))
    assert df.a[0] == "'=1"
