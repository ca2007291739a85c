"""results.collect: unusable records are skipped by path with a reason; the rest still tabulate."""

from __future__ import annotations

import json
from pathlib import Path

from results.collect import collect
from results.fixtures import make_record, write_trial
from core.records import SCHEMA
from results.tables import build_tables


def _good(root: Path) -> None:
    for t in range(2):
        write_trial(root, make_record(label="supervised IN-1M", trial=t, trials_requested=2,
                                      metrics={"AP50": 81.0, "AP": 53.0, "AP75": 58.0}))
        write_trial(root, make_record(label="MoCo IN-1M", trial=t, trials_requested=2,
                                      metrics={"AP50": 82.0, "AP": 55.0, "AP75": 61.0}))


def _bad(root: Path, name: str, content: str) -> Path:
    path = root / "broken" / name / "trial_record.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    return path


def test_bad_records_are_reported_by_path_and_skipped(tmp_path: Path) -> None:
    _good(tmp_path)
    ok = {"schema": SCHEMA, **make_record(label="MoCo IN-1M", trial=9, metrics={"AP": 1.0})}
    bad = {
        "corrupt": _bad(tmp_path, "corrupt", '{"schema": "moco-transfer-bench/trial-re'),
        "schema": _bad(tmp_path, "future", json.dumps({**ok, "schema": "moco-transfer-bench/trial-record/99"})),
        "partial": _bad(tmp_path, "partial", json.dumps({k: v for k, v in ok.items() if k != "metrics"})),
        "metric": _bad(tmp_path, "nan-string", json.dumps({**ok, "metrics": {"AP": "n/a"}})),
        "kind": _bad(tmp_path, "kind", json.dumps({**ok, "pretrain": {**ok["pretrain"], "kind": "magic"}})),
    }
    coll = collect([tmp_path])
    assert len(coll.records) == 4
    reasons = dict(coll.skipped)
    assert set(reasons) == {str(p) for p in bad.values()}
    assert "corrupt JSON" in reasons[str(bad["corrupt"])]
    assert "unknown schema" in reasons[str(bad["schema"])]
    assert "partial record, missing metrics" in reasons[str(bad["partial"])]
    assert "'AP' is not a number" in reasons[str(bad["metric"])]
    assert "unknown pretrain kind" in reasons[str(bad["kind"])]
    assert all("\n" not in r for r in reasons.values())
    (table,) = build_tables(coll.records)
    assert table.row("MoCo IN-1M").cells["AP"].gap == 2.0


def test_duplicate_trial_prefers_finished_then_newest(tmp_path: Path) -> None:
    rec = make_record(label="MoCo IN-1M", trial=0, trials_requested=1, metrics={"AP": 50.0})
    failed = write_trial(tmp_path / "a", make_record(label="MoCo IN-1M", trial=0, trials_requested=1,
                                                     status="failed", error="OOM"))
    finished = write_trial(tmp_path / "b", rec)
    coll = collect([tmp_path])
    assert [r["_path"] for r in coll.records] == [str(finished / "trial_record.json")]
    assert coll.skipped == [(str(failed / "trial_record.json"),
                             f"superseded by {finished / 'trial_record.json'} (same trial 0)")]


def test_missing_root_and_record_file_root(tmp_path: Path) -> None:
    d = write_trial(tmp_path, make_record(metrics={"AP": 50.0}))
    coll = collect([tmp_path / "nope", d / "trial_record.json"])
    assert len(coll.records) == 1
    assert coll.skipped == [(str(tmp_path / "nope"), "run root does not exist")]
