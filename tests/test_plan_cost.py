"""The plan's cost (``benchmarks/cost.py``): GPU-hours and wall-clock per row and in total from measured s/iter,
naming the figure; the figures file against the gpu-check report it came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.cost import FIGURES, NO_FIGURE, load_figures, pick_figure, plan_cost
from benchmarks.plan import Row

CONFIGS = Path(__file__).resolve().parent.parent / "transfer" / "configs"
VOC = CONFIGS / "voc" / "voc_R_50_C4_24k.yaml"


def _voc_rows() -> list[Row]:
    return [Row("supervised IN-1M", "supervised", VOC), Row("MoCo v2", "pretrained", CONFIGS / "voc" / "voc_R_50_C4_24k_rgb.yaml"),
            Row("random init", "random", CONFIGS / "voc" / "voc_R_50_C4_24k_random.yaml")]


def test_voc_plan_on_no_gpu_uses_the_suites_h200_figure() -> None:
    lines = plan_cost(_voc_rows(), 5, [], gpus=8, gpu=None, detect=False)
    # 2.057 s/iter at batch 16 on one H200 x 24000 iterations = 13.71 GPU-hours per trial; 5 trials = 68.6
    assert lines[0] == ("cost supervised IN-1M: 68.6 GPU-hours (5 x 13.7), wall-clock 8.6 h on 8 GPU(s) per trial")
    assert lines[3] == ("cost total: 205.7 GPU-hours (8.6 GPU-days), wall-clock 25.7 h"
                        " (training only, linear scaling across GPUs assumed)")
    assert "2.057 s/iter at batch 16 on 1 x NVIDIA H200, fp32" in lines[4]
    assert "docs/gpu-check/2026-12-04-nvidia-h200.json" in lines[4]
    assert lines[-1] == "cost: no GPU on this machine; the figures are of the GPUs named"


def test_amp_and_tf32_use_their_own_figures() -> None:
    amp = plan_cost(_voc_rows()[:1], 5, ["SOLVER.AMP.ENABLED", "True"], gpus=1, gpu=None, detect=False)
    assert amp[0].startswith("cost supervised IN-1M: 20.4 GPU-hours (5 x 4.1)")  # 0.612 x 24000 / 3600 = 4.08
    assert "0.612 s/iter" in amp[2] and ", amp:" in amp[2]
    tf32 = plan_cost(_voc_rows()[:1], 1, ["SOLVER.TF32", "True"], gpus=1, gpu=None, detect=False)
    assert tf32[0].startswith("cost supervised IN-1M: 4.8 GPU-hours")  # 0.717 x 24000 / 3600 = 4.78


def test_a_v100_machine_uses_detectron2s_model_zoo_figure() -> None:
    lines = plan_cost(_voc_rows()[:1], 1, [], gpus=8, gpu="Tesla V100-SXM2-32GB", detect=False)
    # 0.537 s/iter on 8 V100 at batch 16 = 4.296 GPU-s per iteration; 24000 iterations = 28.6 GPU-hours
    assert lines[0] == "cost supervised IN-1M: 28.6 GPU-hours (1 x 28.6), wall-clock 3.6 h on 8 GPU(s) per trial"
    assert "0.537 s/iter at batch 16 on 8 x NVIDIA V100, fp32: Detectron2 MODEL_ZOO.md" in lines[2]


def test_a_config_without_a_figure_says_so() -> None:
    sem = CONFIGS / "voc_semseg"
    config = next(p for p in sorted(sem.glob("*.yaml")) if "random" not in p.name and "rgb" not in p.name)
    lines = plan_cost([Row("supervised", "supervised", config)], 5, [], gpus=8, gpu=None, detect=False)
    assert lines == [f"cost supervised: {NO_FIGURE} (voc_semseg, R50-dilated-FCN16s, fp32)"]


def test_figures_match_the_gpu_check_report_they_name() -> None:
    figures = load_figures()
    root = FIGURES.parent
    modes = {"fp32": "fp32-tf32off", "tf32": "fp32-tf32on", "amp": "amp"}
    names = {("voc_det", "R50-C4"): "VOC R50-C4", ("coco_maskrcnn", "R50-FPN"): "COCO R50-FPN Mask R-CNN"}
    ours = [f for f in figures if f.source.startswith("this suite")]
    assert len(ours) == 6
    for f in ours:
        report = json.loads((root / "2026-12-04-nvidia-h200.json").read_text())
        assert "2026-12-04-nvidia-h200.json" in f.source
        modes_measured = {m["mode"]: m for m in report["finetune"]["data"][names[(f.task, f.arch)]]["modes"]}
        measured = modes_measured[modes[f.precision]]
        assert f.s_per_iter == pytest.approx(measured["s_per_iter"], abs=5e-4) and f.batch == measured["batch"]
    assert pick_figure(figures, "voc_det", "R50-C4", "fp32", "NVIDIA H200").s_per_iter == 2.057
    assert pick_figure(figures, "voc_det", "R50-C4", "amp", "Tesla V100-SXM2-16GB") is None  # no V100 AMP figure
