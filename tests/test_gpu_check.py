"""``make gpu-check`` on the CPU: the one-line refusal, and every measuring section at toy sizes (--smoke)
producing the Markdown report; the pure helpers (pytest summary, projections)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from benchmarks import gpu_check


def test_without_a_gpu_it_stops_with_one_line(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gpu-check: error: no CUDA device visible") and err.count("\n") == 0
    assert not list(tmp_path.iterdir())


def test_smoke_run_writes_the_report(tiny_root: Path, tmp_path: Path, capsys) -> None:
    rc = gpu_check.main(["--device", "cpu", "--smoke", "--sections", "env,tests,pretrain,finetune,precision",
                         "--out", str(tmp_path), "--datasets", str(tiny_root)])
    report = next(tmp_path.glob("*-cpu-*.md"))
    text = report.read_text()
    data = json.loads(report.with_suffix(".json").read_text())
    assert rc == 0, text
    assert text.startswith("# GPU check: CPU") and "Date: 20" in text and "Smoke run at toy sizes" in text
    pre = data["pretrain"]["data"]
    targets_met = pre["b_over_a"] >= 3 and pre["b_over_c"] >= 0.85  # toy CPU sizes: usually not
    assert {k: v["status"] for k, v in data.items()} == {"env": "ok", "tests": "skipped", "finetune": "ok", "precision": "ok",
                                                         "pretrain": "ok" if targets_met else "partial"}
    assert all(pre[k]["images_per_s"] > 0 for k in "abc") and set(pre["data"]) >= {"pil", "tensor"}
    assert "(b)/(a) = **" in text and "(b)/(c) = **" in text
    assert all(pre["v3"][k]["images_per_s"] > 0 for k in "bc") and "mechanism moco-v3" in pre["v3"]["b"]["settings"]
    assert "| (d) MoCo v3 ViT, suite default |" in text and "--preset v3-vit -a vit_tiny" in text
    for name in ("VOC R18-C4 (tiny)", "COCO ViTDet (tiny)"):  # the ViTDet path (AdamW, LSJ) is timed too
        modes = {m["mode"]: m for m in data["finetune"]["data"][name]["modes"]}
        assert modes["fp32-tf32off"]["s_per_iter"] > 0 and modes["amp"]["error"] == "Detectron2's AMP needs CUDA"
    prec = data["precision"]["data"]
    assert prec["paper"]["precision"] == "fp32, TF32 off" and all(0 <= v <= 100 for v in prec["fast"]["knn_top1"])
    assert "| torch | " in text and "detectron2" in text and text in capsys.readouterr().out


def test_pytest_summary_and_projections() -> None:
    assert gpu_check.parse_pytest_summary("...\nFAILED x\n2 failed, 5 passed, 1 skipped, 300 deselected in 9.1s\n") == \
        {"failed": 2, "passed": 5, "skipped": 1, "deselected": 300}
    assert gpu_check.parse_pytest_summary("1 error in 0.1s") == {"errors": 1}
    data = {"VOC R50-C4": {"requested_batch": 16, "modes": [{"mode": "amp", "batch": 16, "s_per_iter": 0.5}]},
            "COCO R50-FPN Mask R-CNN": {"requested_batch": 16, "modes": [{"mode": "fp32-tf32off", "batch": 8, "s_per_iter": 1.0},
                                                                         {"mode": "amp", "batch": 16, "s_per_iter": 0.4}]}}
    lines = "\n".join(gpu_check.projections(data))
    assert "full VOC table (3 rows x 5 trials x 24k iterations), `amp`: **2.1 days**" in lines  # 360k x 0.5 s = 50 h
    assert "COCO 1x row (90k iterations), `amp`: **10.0 h** per trial" in lines
    assert "fp32-tf32off" not in lines  # measured at a halved batch: not the protocol, no projection
    vit = {"COCO ViTDet-B Mask R-CNN": {"requested_batch": 1, "modes": [{"mode": "amp", "batch": 1, "s_per_iter": 0.5}]}}
    lines = "\n".join(gpu_check.projections(vit))  # 184,375 x 0.5 s = 25.6 h on each of 64 GPUs
    assert "ViTDet-B 100-epoch row (184,375 iterations of 1 image per GPU on 64 GPUs" in lines
    assert "`amp`: **25.6 h** wall, 68.3 days GPU time per trial" in lines, lines


def test_each_section_gets_its_share_and_the_report_is_written_after_each(monkeypatch, tmp_path: Path) -> None:
    seen: dict[str, float] = {}

    def fake(key):
        def run(ctx):
            seen[key] = ctx.remaining()
            assert (key == "tests") == (not list(tmp_path.glob("*.md")))  # the report exists once a section is done
            return gpu_check.Section(key, key.capitalize())
        return run

    monkeypatch.setattr(gpu_check, "SECTION_FUNCS", {k: fake(k) for k in ("tests", "dist")})
    assert gpu_check.main(["--device", "cpu", "--sections", "tests,dist", "--budget", "100", "--out", str(tmp_path)]) == 0
    share = gpu_check.SHARES["tests"] / (gpu_check.SHARES["tests"] + gpu_check.SHARES["dist"])
    assert abs(seen["tests"] - 100 * share) < 2  # the rest is kept for the sections after it
    assert seen["dist"] > 98  # and what the first one left over goes to the next
    assert "Incomplete" not in next(tmp_path.glob("*.md")).read_text()


def test_a_gpu_test_run_cut_short_still_reports_each_test_and_the_one_running() -> None:
    from benchmarks.gpu_check import parse_pytest_progress

    out = ("tests/test_gpu_path.py::test_a FAILED [ 14%]\ntests/test_gpu_path.py::test_b SKIPPED (no DALI) [ 28%]\n"
           "tests/test_gpu_path.py::test_c PASSED [ 42%]\ntests/test_pretrain_cli.py::test_gpu_run_with_speed_options\n")
    seen, running = parse_pytest_progress(out)
    assert seen == {"failed": ["tests/test_gpu_path.py::test_a"], "skipped": ["tests/test_gpu_path.py::test_b"],
                    "passed": ["tests/test_gpu_path.py::test_c"]}
    assert running == "tests/test_pretrain_cli.py::test_gpu_run_with_speed_options"
    assert parse_pytest_progress(out + "tests/test_pretrain_cli.py::test_gpu_run_with_speed_options PASSED [100%]\n")[1] is None
