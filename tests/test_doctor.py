"""transfer.doctor: versions, Detectron2 source and ops, GPUs, datasets and what each benchmark lacks."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

from transfer import doctor


def test_doctor_reports_stack_and_datasets(tiny_root: Path, capsys: pytest.CaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tiny_root))
    assert doctor.main() == 0
    out = capsys.readouterr().out
    assert f"torch: {torch.__version__}" in out
    assert "detectron2: 0." in out and "detectron2 compiled ops: " in out
    assert ("GPUs: none" in out) != torch.cuda.is_available()
    for bench in ("voc (run_voc.sh): ready", "coco (run_coco.sh): ready", "cityscapes (run_cityscapes.sh): ready",
                  "voc_semseg (run_voc_semseg.sh): ready", "lvis (run_lvis.sh): ready",
                  "coco_keypoints (run_coco_keypoints.sh): ready", "densepose (run_densepose.sh): ready"):
        assert bench in out
    # DensePose is a Detectron2 project, not a PyPI package: its absence is reported, not fatal
    densepose = next(line for line in out.splitlines() if line.startswith("densepose: "))
    assert ("MISSING" in densepose) != (importlib.util.find_spec("densepose") is not None)

    partial = tmp_path / "datasets"
    shutil.copytree(tiny_root / "VOC2007", partial / "VOC2007")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(partial))
    doctor.main()
    out = capsys.readouterr().out
    assert "voc (run_voc.sh): missing VOC2012/JPEGImages" in out
    assert "coco (run_coco.sh): missing coco/train2017" in out


def test_doctor_names_the_detectron2_source_written_by_setup() -> None:
    lines = doctor.detectron2_report()
    source = Path(__import__("sys").prefix) / "detectron2-source.txt"
    if source.exists():
        assert source.read_text().strip() in lines[0]
    assert lines[1].startswith("detectron2 compiled ops: ")
