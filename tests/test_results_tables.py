"""results.tables: grouping, means, gaps, marks, trial accounting; the paper's Table 2 reproduced."""

from __future__ import annotations

import pytest

from results.fixtures import make_record, paper_trials
from results.tables import build_tables, mark_of, round1, tables_frame

# MoCo v1 paper, Table 2 (VOC trainval07+12, Faster R-CNN, 24k): the gaps printed in brackets after
# the MoCo rows, and which of them are green (>= +0.5).
PAPER_T2_GAPS = {
    ("R50-dilated-C5", "MoCo IN-1M"): {"AP50": -0.3, "AP": +0.6, "AP75": +0.8},
    ("R50-dilated-C5", "MoCo IG-1B"): {"AP50": +0.2, "AP": +1.5, "AP75": +2.1},
    ("R50-C4", "MoCo IN-1M"): {"AP50": +0.2, "AP": +2.4, "AP75": +3.8},
    ("R50-C4", "MoCo IG-1B"): {"AP50": +0.9, "AP": +3.7, "AP75": +4.9},
}
PAPER_T2_GREEN = {
    ("R50-dilated-C5", "MoCo IN-1M"): {"AP", "AP75"},
    ("R50-dilated-C5", "MoCo IG-1B"): {"AP", "AP75"},
    ("R50-C4", "MoCo IN-1M"): {"AP", "AP75"},
    ("R50-C4", "MoCo IG-1B"): {"AP50", "AP", "AP75"},
}


def _trials(label: str, values: list[dict[str, float]], **kw) -> list[dict]:
    return [make_record(label=label, trial=t, metrics=m, **kw) for t, m in enumerate(values)]


def test_round_and_marks_boundaries() -> None:
    assert round1(55.9 - 53.5) == 2.4
    assert round1(0.25) == 0.3 and round1(-0.25) == -0.3 and round1(-0.04) == 0.0
    assert mark_of(0.5) == "better" and mark_of(0.4) is None
    assert mark_of(-0.5) == "worse" and mark_of(-0.4) is None and mark_of(None) is None


def test_paper_table2_as_five_identical_trials_reproduces_its_gaps() -> None:
    tables = build_tables(paper_trials("Table 2", trials=5))
    assert [(t.task, t.arch, t.schedule) for t in tables] == [("voc_det", "R50-dilated-C5", "24k"),
                                                                ("voc_det", "R50-C4", "24k")]
    for t in tables:
        assert t.metrics == ["AP50", "AP", "AP75"]
        assert [r.label for r in t.rows] == ["random init", "supervised IN-1M", "MoCo IG-1B", "MoCo IN-1M"]
        assert t.reference is t.row("supervised IN-1M")
        for label in ("MoCo IN-1M", "MoCo IG-1B"):
            row = t.row(label)
            assert row.trials_text() == "5/5"
            gaps = {m: c.gap for m, c in row.cells.items()}
            assert gaps == PAPER_T2_GAPS[(t.arch, label)]
            green = {m for m, c in row.cells.items() if c.mark == "better"}
            assert green == PAPER_T2_GREEN[(t.arch, label)]
            assert not any(c.mark == "worse" for c in row.cells.values())
            assert all(c.std == 0 and c.n == 5 and not c.incomplete for c in row.cells.values())
        assert all(c.gap is None for c in t.reference.cells.values())
    c4 = tables[1]
    moco = c4.row("MoCo IN-1M").cells
    assert [c.value_text(std=False) for c in moco.values()] == ["81.5", "55.9", "62.6"]
    assert [c.gap_text() for c in moco.values()] == ["+0.2", "+2.4", "+3.8"]
    rand = c4.row("random init").cells  # 60.2/33.8/33.1 vs 81.3/53.5/58.8
    assert {m: (c.gap, c.mark) for m, c in rand.items()} == {"AP50": (-21.1, "worse"), "AP": (-19.7, "worse"),
                                                             "AP75": (-25.7, "worse")}


def test_paper_table5_gaps() -> None:
    tables = {(t.arch, t.schedule): t for t in build_tables(paper_trials("Table 5", trials=2))}
    assert list(tables) == [("R50-FPN", "1x"), ("R50-FPN", "2x"), ("R50-C4", "1x"), ("R50-C4", "2x")]
    fpn1x = tables[("R50-FPN", "1x")]
    assert fpn1x.metrics == ["APbb", "APbb50", "APbb75", "APmk", "APmk50", "APmk75"]
    moco = fpn1x.row("MoCo IN-1M").cells  # 38.5 58.9 42.0 35.1 55.9 37.7 vs 38.9 59.6 42.7 35.4 56.5 38.1
    assert [c.gap for c in moco.values()] == [-0.4, -0.7, -0.7, -0.3, -0.6, -0.4]
    assert [c.mark for c in moco.values()] == [None, "worse", "worse", None, "worse", None]
    ig = tables[("R50-C4", "2x")].row("MoCo IG-1B").cells  # 41.1 vs 40.0 APbb
    assert ig["APbb"].gap == 1.1 and ig["APbb"].mark == "better"


def test_missing_and_failed_trials_are_shown_in_the_cell() -> None:
    recs = _trials("supervised IN-1M", [{"AP50": 81.0, "AP": 53.0, "AP75": 58.0}] * 5)
    recs += _trials("MoCo IN-1M", [{"AP50": 81.0, "AP": 55.0, "AP75": 62.0}, {"AP50": 82.0, "AP": 56.0, "AP75": 63.0},
                                   {"AP50": 83.0, "AP": 57.0, "AP75": 64.0}])  # trials 0-2 finished
    recs.append(make_record(label="MoCo IN-1M", trial=3, status="failed", error="loss diverged"))  # trial 4 missing
    (t,) = build_tables(recs)
    row = t.row("MoCo IN-1M")
    assert (row.finished, row.failed, row.requested) == (3, 1, 5)
    assert row.trials_text() == "3/5, 1 failed"
    ap = row.cells["AP"]
    assert ap.mean == pytest.approx(56.0) and ap.std == pytest.approx(1.0) and ap.n == 3
    assert ap.incomplete and ap.count_text() == "3/5, 1 failed"
    assert ap.gap == 3.0 and ap.mark == "better"
    assert not t.row("supervised IN-1M").cells["AP"].incomplete
    assert any("trial 3 failed: loss diverged" in n for n in t.notes)


def test_missing_metric_in_one_trial_counts_against_that_cell_only() -> None:
    recs = _trials("supervised IN-1M", [{"AP50": 81.0, "AP": 53.0, "AP75": 58.0}] * 2, trials_requested=2)
    recs += _trials("MoCo IN-1M", [{"AP50": 81.0, "AP": 55.0, "AP75": 62.0}, {"AP50": 82.0, "AP": 56.0}],
                    trials_requested=2)
    (t,) = build_tables(recs)
    cells = t.row("MoCo IN-1M").cells
    assert not cells["AP"].incomplete
    assert cells["AP75"].incomplete and cells["AP75"].count_text() == "1/2" and cells["AP75"].mean == 62.0


def test_mixed_configs_are_never_averaged() -> None:
    m = {"AP50": 80.0, "AP": 50.0, "AP75": 55.0}
    recs = _trials("MoCo IN-1M", [m] * 2, trials_requested=2)
    recs += _trials("MoCo IN-1M", [{k: v + 10 for k, v in m.items()}] * 2, trials_requested=2, sha256="ab" * 32)
    recs += _trials("MoCo IN-1M", [m] * 2, trials_requested=2, arch="R50-dilated-C5")
    recs += _trials("MoCo IN-1M", [m] * 2, trials_requested=2, schedule="tiny-40", tiny=True)
    recs += _trials("MoCo IN-1M", [m] * 2, trials_requested=2, task="coco_maskrcnn", schedule="1x")
    tables = build_tables(recs)
    keys = [(t.task, t.arch, t.schedule, t.tiny) for t in tables]
    assert keys == [("voc_det", "R50-dilated-C5", "24k", False), ("voc_det", "R50-C4", "24k", False),
                    ("coco_maskrcnn", "R50-C4", "1x", False), ("voc_det", "R50-C4", "tiny-40", True)]
    c4 = tables[1]
    assert len(c4.rows) == 2  # same label, different weights: two rows
    displays = sorted(r.display for r in c4.rows)
    assert displays[0].startswith("MoCo IN-1M [") and displays[0] != displays[1]
    assert sorted(r.cells["AP"].mean for r in c4.rows) == [50.0, 60.0]
    assert tables[3].tiny and "not the paper's protocol" in tables[3].legend()
    assert tables[2].metrics[0] == "APbb" and tables[2].row("MoCo IN-1M").cells["APbb"].mean is None


def test_reference_choice_and_no_supervised() -> None:
    m = {"AP50": 80.0, "AP": 50.0, "AP75": 55.0}
    recs = _trials("supervised torchvision", [m] * 2, kind="supervised")
    recs += _trials("supervised IN-1M", [{**m, "AP": 51.0}] * 4, kind="supervised")
    recs += _trials("MoCo IN-1M", [{**m, "AP": 52.0}] * 5)
    (t,) = build_tables(recs)
    assert t.reference is t.row("supervised IN-1M")
    assert t.row("MoCo IN-1M").cells["AP"].gap == 1.0
    assert t.row("supervised torchvision").cells["AP"].gap == -1.0
    assert any("2 supervised rows" in n and "supervised IN-1M" in n for n in t.notes)
    (t2,) = build_tables(_trials("MoCo IN-1M", [m] * 2))
    assert t2.reference is None and all(c.gap is None for c in t2.rows[0].cells.values())
    assert "no gaps" in t2.legend()


def test_row_order_random_supervised_others() -> None:
    m = {"AP50": 80.0, "AP": 50.0, "AP75": 55.0}
    recs = _trials("A-method", [m]) + _trials("supervised IN-1M", [m]) + _trials("random init", [m])
    (t,) = build_tables(recs)
    assert [r.kind for r in t.rows] == ["random", "supervised", "pretrained"]


def test_with_paper_adds_reference_rows_with_their_own_gaps() -> None:
    m = {"AP50": 80.0, "AP": 50.0, "AP75": 55.0}
    recs = _trials("supervised IN-1M", [m] * 5) + _trials("MoCo IN-1M", [m] * 5, schedule="tiny-40", tiny=True)
    c4, tiny = build_tables(recs, with_paper=True)
    paper = [r for r in c4.rows if not r.measured]
    assert [r.label for r in paper][:4] == ["random init", "supervised IN-1M", "MoCo IN-1M", "MoCo IG-1B"]
    assert {r.source_text for r in paper} == {"paper: MoCo v1 Table 2", "paper: MoCo v2 Table 1 (d)/(e)"}
    assert c4.paper_reference is c4.row("supervised IN-1M", source="paper")
    assert c4.row("MoCo IN-1M", source="paper").cells["AP"].gap == 2.4
    assert c4.row("MoCo v2 800ep", source="paper").cells["AP"].gap == 3.9  # 57.4 - 53.5
    assert any("He et al. CVPR 2020" in n for n in c4.notes)
    assert all(r.measured for r in tiny.rows) and "No published numbers" in tiny.notes[-1]


def test_a_tiny_table_shows_the_published_rows_of_the_benchmark_it_demonstrates() -> None:
    """A tiny record that says which full-scale benchmark it stands in for gets that benchmark's published rows
    with ``with_paper``, apart from its own: gaps among the published rows only, a note saying they are not
    comparable; without the field (older records) nothing is added."""
    m = {"AP50": 30.0, "AP": 12.0, "AP75": 9.0}
    recs = _trials("MoCo v2 (tiny)", [m], schedule="tiny", tiny=True) + _trials("random init", [m], schedule="tiny",
                                                                                 tiny=True)
    for r in recs:
        r["demonstrates"] = {"arch": "R50-C4", "schedule": "24k"}
    (t,) = build_tables(recs, with_paper=True)
    paper = [r for r in t.rows if not r.measured]
    assert t.tiny and paper and {r.label for r in paper} >= {"supervised IN-1M", "MoCo IN-1M"}
    assert t.row("MoCo IN-1M", source="paper").cells["AP"].gap == 2.4  # to the paper's supervised row
    measured = t.row("MoCo v2 (tiny)")
    assert measured.cells["AP"].gap is None and "supervised" not in measured.diffs  # never against the paper
    assert any("stands in for (R50-C4, 24k" in n and "for orientation only" in n for n in t.notes), t.notes
    assert "full-scale benchmark, for orientation" in t.legend()
    for r in recs:
        del r["demonstrates"]
    (t,) = build_tables(recs, with_paper=True)
    assert all(r.measured for r in t.rows) and "No published numbers" in t.notes[-1]


def test_unknown_task_uses_recorded_metrics() -> None:
    recs = _trials("MoCo IN-1M", [{"mIoU": 70.0, "pixAcc": 90.0}], task="ade20k_semseg", arch="R50-FCN",
                   schedule="80k")
    (t,) = build_tables(recs)
    assert t.metrics == ["mIoU", "pixAcc"] and t.paper_table is None


def test_nan_metric_counts_as_missing_and_empty_fields_stay_empty() -> None:
    recs = _trials("random init", [{"AP50": 60.0, "AP": float("nan"), "AP75": 33.0}, {"AP50": 61.0, "AP": 34.0,
                                                                                        "AP75": 33.0}],
                   trials_requested=2)
    recs.append(make_record(label="random init", trial=2, trials_requested=2, status="failed"))
    (t,) = build_tables(recs)
    row = t.rows[0]
    assert row.weights is None and row.sha256 == "" and row.requested == 3  # 3 trials seen > 2 requested
    assert row.cells["AP"].n == 1 and row.cells["AP"].count_text() == "1/3, 1 failed"
    assert row.errors == ["trial 2 failed: no error message"]
    frame = tables_frame([t])
    assert set(frame.weights) == {""} and set(frame.sha256) == {""}


def test_every_registered_task_gets_its_title_and_metric_order() -> None:
    """One registry (transfer/tasks): results has no task table of its own, so none can drift from the trainer's."""
    from results.fixtures import make_record
    from transfer import tasks

    registered = tasks.tasks()
    assert {"voc_det", "coco_maskrcnn", "coco_det", "cityscapes_instance", "cityscapes_semseg", "voc_semseg",
            "coco_keypoints", "lvis_v0.5", "coco_densepose", "custom_voc"} <= set(registered)
    for name, task in registered.items():
        metrics = {m: 50.0 + i for i, m in enumerate(reversed(task.metrics))}  # recorded in another order
        (table,) = build_tables([make_record(task=name, arch="R50-FPN", schedule="1x", trial=t, trials_requested=2,
                                             metrics=metrics) | {"_path": f"/x/{name}/t{t}/trial_record.json"}
                                 for t in range(2)])
        assert task.title and table.title.startswith(f"{task.title}: R50-FPN, 1x"), name
        assert table.metrics == list(task.metrics), name
