"""``python -m results``: prints Markdown, reports skipped records on stderr, writes files, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from results.cli import main
from results.fixtures import make_record, write_trial

REPO = Path(__file__).resolve().parents[1]


def _runs(root: Path) -> Path:
    for label, ap in (("supervised IN-1M", 53.5), ("MoCo IN-1M", 55.9)):
        for t in range(2):
            write_trial(root, make_record(label=label, trial=t, trials_requested=2,
                                          metrics={"AP50": 81.0, "AP": ap, "AP75": 60.0}))
    bad = root / "voc_det" / "broken" / "trial_record.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{")
    return bad


def test_cli_prints_tables_and_reports_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _runs(tmp_path / "runs")
    assert main(["--runs", str(tmp_path / "runs"), "--formats", "md,csv,html"]) == 0
    out, err = capsys.readouterr()
    assert "| MoCo IN-1M | 2/2 | 81.0±0.0 (+0.0) | 55.9±0.0 (+2.4 ▲) | 60.0±0.0 (+0.0) |" in out
    err_lines = err.splitlines()
    assert err_lines[0].startswith(f"skipped {bad}: corrupt JSON")
    assert err_lines[-1].startswith("results: 1 table(s) from 4 record(s)")
    written = sorted(p.name for p in (tmp_path / "runs" / "tables").iterdir())
    assert written == ["index.html", "tables.csv", "tables.md"]


def test_cli_with_paper_and_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _runs(tmp_path / "runs")
    assert main(["--runs", str(tmp_path / "runs"), "--with-paper", "--out", str(tmp_path / "o"),
                 "--formats", "md", "--no-std"]) == 0
    out = capsys.readouterr().out
    assert "| MoCo IN-1M | paper: MoCo v1 Table 2 |  | 81.5 (+0.2) | 55.9 (+2.4 ▲) | 62.6 (+3.8 ▲) |" in out
    assert "| MoCo IN-1M | this run | 2/2 | 81.0 (+0.0) | 55.9 (+2.4 ▲) | 60.0 (+0.0) |" in out
    assert (tmp_path / "o" / "tables.md").read_text() in out


def test_cli_paper_rows_only_beside_the_measured_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--paper-rows`` (a runner's final table): the published rows in the measured table, none of the published
    tables nothing was measured for, which ``--with-paper`` adds."""
    _runs(tmp_path / "runs")
    assert main(["--runs", str(tmp_path / "runs"), "--paper-rows", "--out", str(tmp_path / "o"), "--formats", "md",
                 "--no-std"]) == 0
    out, err = capsys.readouterr()
    assert "| MoCo IN-1M | paper: MoCo v1 Table 2 |  | 81.5 (+0.2) | 55.9 (+2.4 ▲) | 62.6 (+3.8 ▲) |" in out
    assert "(published)" not in out and "results: 1 table(s)" in err
    assert main(["--runs", str(tmp_path / "runs"), "--with-paper", "--out", str(tmp_path / "p"), "--formats", "md"]) == 0
    out, err = capsys.readouterr()
    assert "(MoCo v2 Table 3) (published)" in out and "results: 1 table(s)" not in err


def test_cli_no_usable_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "trial_record.json").write_text("[]")
    assert main(["--runs", str(tmp_path / "empty")]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [f"skipped {tmp_path / 'empty' / 'trial_record.json'}: not a JSON object",
                                f"results: no usable trial records under {tmp_path / 'empty'} (1 skipped)"]
    assert main(["--runs", str(tmp_path / "empty"), "--formats", "md,pdf"]) == 2


def test_python_dash_m(tmp_path: Path) -> None:
    _runs(tmp_path / "runs")
    proc = subprocess.run([sys.executable, "-m", "results", "--runs", str(tmp_path / "runs"), "--formats", "md"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("### PASCAL VOC detection (Faster R-CNN): R50-C4, 24k")
    assert "skipped" in proc.stderr
