"""Ablation tables and plots: Figure 3, Table 3, momentum, MoCo v2 Table 1, the paper-only tables, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from results.ablation import AblationTable, build_ablation_tables
from results.collect import collect_ablation
from core.ablation_records import (AblationRecordError, finished_record, read_ablation_record,
                                      write_ablation_record)
from results.cli import main
from results.collect import collect
from results.fixtures import make_record, write_trial
from results.paper_only import paper_only_tables
from results.render_md import render_markdown

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def ablation(root: Path, view: str, point: str, params: dict, top1: float | None, seed: int = 0, tiny: bool = False,
             ev: str = "linear", label: str | None = None, voc: dict | None = None, init: float | None = None) -> Path:
    folder = root / point / f"seed{seed}"
    write_ablation_record(folder, {
        "sweep": view, "view": view, "point": point, "label": label or point, "params": params, "eval": ev,
        "seed": seed, "tiny": tiny, "status": "finished" if top1 is not None else "failed",
        "error": None if top1 is not None else "main_moco.py: error: boom",
        "metrics": {"top1": top1, "knn_top1_init": init} if top1 is not None else {}, "voc": voc})
    return folder


def fig3(mech: str, k: int, **kw) -> dict:
    return {"mechanism": mech, "K": k, "m": 0.999, "T": 0.07, "mlp": False, "bank_loss": "infonce", **kw}


def test_figure3_means_over_seeds_paper_series_and_plot(tmp_path: Path) -> None:
    for seed, delta in ((0, -0.5), (1, 0.5)):
        ablation(tmp_path, "figure3", "moco_K256", fig3("moco", 256), 54.7 + delta, seed)
        ablation(tmp_path, "figure3", "memory-bank_K256", fig3("memory-bank", 256), 50.0 + delta, seed)
    ablation(tmp_path, "figure3", "end-to-end_K512", fig3("end-to-end", 512), 56.0)
    ablation(tmp_path, "figure3", "moco_K512", fig3("moco", 512), None)  # a failed point
    coll = collect_ablation([tmp_path])
    assert len(coll.records) == 6 and not coll.skipped
    (t,) = [t for t in build_ablation_tables(coll.records, with_paper=True) if t.key == "ablation_figure3_linear"]
    assert [r.display for r in t.measured_rows()] == ["end-to-end", "memory bank", "MoCo"]  # the paper's order
    assert t.metrics == ["K=256", "K=512", "K=1024", "K=4096", "K=16384", "K=65536"]  # measured + paper columns
    moco = t.row("MoCo")
    assert moco.cells["K=256"].mean == pytest.approx(54.7) and moco.cells["K=256"].std == pytest.approx(0.7071, abs=1e-3)
    assert moco.cells["K=512"].mean is None and moco.cells["K=512"].failed == 1 and moco.failed == 1
    assert t.row("MoCo", source="paper").cells["K=65536"].mean == 60.6
    assert t.row("memory bank (NCE)", source="paper").cells["K=4096"].mean == 54.3
    md = render_markdown([t])
    assert "| MoCo | this run | 2/3, 1 failed | 54.7±0.7 | — [0/1, 1 failed] |" in md
    assert "moco_K512 seed 0: main_moco.py: error: boom" in md
    (png,) = t.make_plots(tmp_path / "plots")
    assert png.name == "figure_ablation_figure3_linear.png" and png.read_bytes()[:8] == PNG_MAGIC


def test_tiny_knn_table_has_the_init_baseline_and_no_paper_rows(tmp_path: Path) -> None:
    for mech in ("moco", "end-to-end"):
        for k in (16, 64):
            ablation(tmp_path, "figure3", f"{mech}_K{k}", fig3(mech, k), 80.0 + k / 16, tiny=True, ev="knn", init=70.0)
    tables = build_ablation_tables(collect_ablation([tmp_path]).records, with_paper=True)
    tiny = next(t for t in tables if t.tiny)
    assert tiny.key == "ablation_figure3_tiny_knn" and not tiny.has_paper_rows
    assert tiny.metrics == ["K=16", "K=64"] and tiny.row("encoder at random initialisation").cells["K=64"].mean == 70.0
    assert tiny.row("MoCo").cells["K=64"].mean == 84.0 and "kNN top-1" in tiny.title
    paper = next(t for t in tables if t.key == "ablation_figure3_paper")  # the published figure, on its own
    assert not paper.measured_rows() and paper.row("MoCo", source="paper").cells["K=1024"].mean == 57.5


def test_table3_and_v2_table1_read_the_points_voc_trials(tmp_path: Path) -> None:
    for mech, ap in (("moco", 55.9), ("memory-bank", 54.9)):
        folder = ablation(tmp_path, "figure3", f"{mech}_K65536", fig3(mech, 65536), 60.0, label=f"{mech} big",
                          voc={"archs": ["C4"], "trials": 2, "dir": "voc"})
        for t in range(2):
            write_trial(folder / "voc" / "C4", make_record(label=f"{mech} big", trial=t, trials_requested=2,
                                                           metrics={"AP50": 81.0, "AP": ap + t, "AP75": 60.0}))
    folder = ablation(tmp_path, "v2_table1", "a", {"mlp": True}, 66.0, label="(a) MLP",
                      voc={"archs": ["C4"], "trials": 1, "dir": "voc"})
    write_trial(folder / "voc", make_record(label="(a) MLP", trial=0, trials_requested=1,
                                            metrics={"AP50": 82.0, "AP": 56.4, "AP75": 62.6}))
    write_trial(tmp_path / "elsewhere", make_record(label="moco big", metrics={"AP50": 1.0, "AP": 1.0, "AP75": 1.0}))
    trials = collect([tmp_path]).records
    tables = {t.key: t for t in build_ablation_tables(collect_ablation([tmp_path]).records, trials, with_paper=True)}
    t3 = tables["ablation_table3"]
    assert t3.metrics[:3] == ["R50-dilated-C5 AP50", "R50-dilated-C5 AP", "R50-dilated-C5 AP75"]  # paper's arch order
    moco = t3.row("moco big")
    assert moco.cells["R50-C4 AP"].mean == pytest.approx(56.4) and moco.cells["R50-C4 AP"].n == 2  # not 'elsewhere'
    assert t3.row("memory bank IN-1M", source="paper").cells["R50-C4 AP75"].mean == 60.6
    v2 = tables["ablation_v2_table1_linear"]
    assert v2.metrics == ["linear top-1", "AP50", "AP", "AP75"]
    assert v2.row("(a) MLP").cells["AP"].mean == 56.4 and v2.row("(a) MLP").cells["linear top-1"].mean == 66.0
    assert v2.row("(e) MLP+aug+cos 800ep", source="paper").cells["linear top-1"].mean == 71.1
    assert "ablation_momentum_paper" in tables and "ablation_temperature_paper" in tables


def test_paper_only_tables() -> None:
    t1, t4, v2t2, v2t3 = paper_only_tables()
    assert t1.row("MoCo IN-1M K=65536 m=0.999 — R50w4x", source="paper").cells["top-1"].mean == 68.6
    assert t4.row("MoCo IG-1B — R50-C4, 9k", source="paper").cells["AP75"].mean == 51.7
    assert v2t2.row("SimCLR batch 4096, 1000ep", source="paper").cells["top-1"].mean == 69.3
    assert v2t3.row("end-to-end batch 4096", source="paper").cells["time (hours)"].mean is None
    assert all(isinstance(t, AblationTable) and not t.measured_rows() for t in (t1, t4, v2t2, v2t3))


def test_record_validation_and_finished(tmp_path: Path) -> None:
    folder = ablation(tmp_path, "momentum", "m0.99", {"K": 4096, "m": 0.99}, 57.8)
    assert finished_record(folder)["metrics"]["top1"] == 57.8
    (folder / "ablation_record.json").write_text('{"schema": "moco-transfer-bench/ablation-record/1", "view": "x"}')
    with pytest.raises(AblationRecordError, match="partial record"):
        read_ablation_record(folder / "ablation_record.json")
    assert finished_record(folder) is None
    with pytest.raises(AblationRecordError, match="without a numeric top1"):
        write_ablation_record(tmp_path / "bad", {"sweep": "s", "view": "momentum", "point": "p", "label": "p",
                                                 "params": {}, "eval": "knn", "seed": 0, "status": "finished",
                                                 "metrics": {"top1": None}})
    assert not (tmp_path / "bad" / "ablation_record.json").exists()


def test_cli_with_paper_alone_and_with_ablation_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--with-paper", "--out", str(tmp_path / "paper"), "--formats", "md,png"]) == 0
    out = capsys.readouterr().out
    for title in ("(layout of MoCo v1 Figure 3)", "(layout of MoCo v1 Table 3)", "(MoCo v1 Table 1)",
                  "(MoCo v1 Table 4)", "(layout of MoCo v2 Table 1)", "(MoCo v2 Table 2)", "momentum ablation"):
        assert title in out
    assert (tmp_path / "paper" / "plots" / "figure_ablation_figure3_paper.png").is_file()
    assert main([]) == 2
    ablation(tmp_path / "runs", "momentum", "m0.99", {"K": 4096, "m": 0.99}, 57.0)
    (tmp_path / "runs" / "junk" / "ablation_record.json").parent.mkdir()
    (tmp_path / "runs" / "junk" / "ablation_record.json").write_text("{")
    assert main(["--runs", str(tmp_path / "runs"), "--formats", "md"]) == 0
    out, err = capsys.readouterr()
    assert "| MoCo K=4096 | 1/1 | 57.0 |" in out and "corrupt JSON" in err
    assert "results: 1 table(s) from 1 record(s)" in err
