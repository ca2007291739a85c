"""benchmarks/ablation.py: sweep specs as data, one point per call, records, skip and resume, tables + plot."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from benchmarks import ablation
from pretrain import main_moco
from pretrain.synthetic import write_image_folder
from core.ablation_records import read_ablation_record

SPEC = """\
name: small
view: figure3
eval: knn
pretrain: {arch: resnet18, batch_size: 8, crop_size: 32, epochs: 1, workers: 0, tensorboard: false,
           print_freq: 100, lr_per_256: 0.48}
points:
  - grid: {mechanism: [moco, memory-bank], K: [16]}
  - {mechanism: end-to-end, K: 8}
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_image_folder(root / "train", classes=3, per_class=10, size=36)
    write_image_folder(root / "val", classes=3, per_class=4, size=36, seed=1)
    return root


def losses(folder: Path) -> list[float]:
    return [float(r["loss"]) for r in csv.DictReader(open(folder / "metrics.csv"))]


def test_shipped_specs_expand_to_the_papers_points() -> None:
    fig3 = ablation.load_spec("figure3")
    ids = [p.id for p in fig3.points]
    assert len(ids) == 16 and ids[:3] == ["end-to-end_K256", "end-to-end_K512", "end-to-end_K1024"]
    assert "memory-bank_K4096_bank_lossnce" in ids and "moco_K65536" in ids
    e2e = ablation.pretrain_argv(fig3, fig3.point("end-to-end_K1024"), "/in", Path("/out"), 0, None)
    assert "--batch-size" in e2e and e2e[e2e.index("--batch-size") + 1] == "1024" and "--moco-k" not in e2e
    params = ablation.effective_params(e2e)
    assert params["K"] == 1024 and params["lr"] == pytest.approx(0.03 * 1024 / 256)  # linear scaling rule
    assert ablation.effective_params(ablation.pretrain_argv(fig3, fig3.point("moco_K4096"), "/in", Path("/o"), 0,
                                                            None))["T"] == 0.07  # preset v1
    t3 = ablation.load_spec("table3")
    assert t3.output == "figure3" and {p.id for p in t3.points} <= set(ids) and t3.voc == ["DC5", "C4"]
    assert [p.params["moco_m"] for p in ablation.load_spec("momentum").points] == [0.0, 0.9, 0.99, 0.999, 0.9999]
    v2 = ablation.load_spec("v2_ablation")
    assert [p.label for p in v2.points][:2] == ["MoCo v1", "(a) MLP"] and v2.view == "v2_table1"
    assert len(ablation.load_spec("temperature").points) == 12
    tiny = ablation.load_spec("tiny")
    assert tiny.eval == "knn" and {p.params["mechanism"] for p in tiny.points} == {"moco", "end-to-end", "memory-bank"}


def test_bad_specs_fail_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text("view: figure3\npoints: [{mechanism: moco, kay: 3}]\n")
    assert ablation.main([str(tmp_path / "a.yaml"), "--data", str(tmp_path)]) == 2
    assert "unknown key 'kay'" in capsys.readouterr().err
    (tmp_path / "b.yaml").write_text("view: figure9\npoints: [{}]\n")
    assert ablation.main([str(tmp_path / "b.yaml"), "--data", str(tmp_path)]) == 2
    assert "'view' must be one of" in capsys.readouterr().err
    assert ablation.main(["nonesuch"]) == 2
    assert "no sweep spec 'nonesuch'" in capsys.readouterr().err


def test_sweep_runs_skips_and_resumes(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    assert ablation.main([str(spec), "--data", str(data), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    for point in ("moco_K16", "memory-bank_K16", "end-to-end_K8"):
        rec = read_ablation_record(out / point / "seed0" / "ablation_record.json")
        assert rec["status"] == "finished" and rec["eval"] == "knn" and 0 <= rec["metrics"]["top1"] <= 100
        assert rec["metrics"]["knn_top1_init"] is not None and rec["params"]["mechanism"] in point
    assert read_ablation_record(out / "end-to-end_K8" / "seed0" / "ablation_record.json")["params"]["lr"] == \
        pytest.approx(0.48 * 8 / 256)
    assert "| encoder at random initialisation |" in printed and "K=8" in printed and "K=16" in printed
    assert (out / "tables" / "plots" / "figure_ablation_figure3_knn.png").is_file()
    # rerun: every point is skipped
    assert ablation.main([str(spec), "--data", str(data), "--output", str(out)]) == 0
    assert capsys.readouterr().out.count("already finished, skipped") == 3
    # an interrupted point resumes from its pretraining checkpoint and ends as an uninterrupted one
    sp = ablation.load_spec(spec)
    other = tmp_path / "other"
    argv = ablation.pretrain_argv(sp, sp.point("memory-bank_K16"), str(data), other / "memory-bank_K16" / "seed0" /
                                  "pretrain", 0, str(data / "val"))
    main_moco.main([*argv, "--max-iters", "2"])
    rec = ablation.run_point(str(spec), "memory-bank_K16", str(other), data=str(data))
    pretrain = other / "memory-bank_K16" / "seed0" / "pretrain"
    assert rec["status"] == "finished" and "resumed from" in (pretrain / "log.txt").read_text()
    assert losses(pretrain) == losses(out / "memory-bank_K16" / "seed0" / "pretrain")
    assert rec["metrics"]["top1"] == read_ablation_record(out / "memory-bank_K16" / "seed0" /
                                                          "ablation_record.json")["metrics"]["top1"]


FAILING = """\
name: s
view: figure3
eval: knn
pretrain: {arch: resnet18, batch_size: 8, crop_size: 32, epochs: 1, workers: 0, tensorboard: false, print_freq: 100}
points:
  - {id: ok, mechanism: moco, K: 16}
  - {id: too-small, mechanism: moco, K: 4}
"""


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(data: Path, tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(FAILING)
    assert ablation.main([str(spec), "--data", str(data), "--output", str(tmp_path / "o")]) == 1
    bad = read_ablation_record(tmp_path / "o" / "too-small" / "seed0" / "ablation_record.json")
    assert bad["status"] == "failed" and "queue must hold at least one batch" in bad["error"] and "\n" not in bad["error"]
    assert read_ablation_record(tmp_path / "o" / "ok" / "seed0" / "ablation_record.json")["status"] == "finished"


def test_list_prints_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert ablation.main(["figure3", "--list", "--data", "/imagenet", "--points", "moco_K65536"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("moco_K65536\tMoCo K=65536\tpython pretrain/main_moco.py --preset v1 --mechanism moco "
                           "--moco-k 65536")
    assert line.endswith("/imagenet") and "--resume auto" in line
