"""Pretraining precision travels checkpoint -> .pkl provenance -> trial record; the fine-tuning --amp flag."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from benchmarks.common import base_parser, parse_with_opts
from benchmarks.runner import REPO
from pretrain.checkpoint import suite_marker
from pretrain.resnets import build_resnet
from pretrain.speed import check_precision, resolve_speed

TINY_CFG = REPO / "transfer" / "configs" / "tiny" / "voc_R_18_C4_tiny.yaml"


def test_precision_flag_resolves_to_fp32_without_tf32() -> None:
    paper = resolve_speed(argparse.Namespace(precision="paper", amp="auto"), torch.device("cpu"))
    assert paper.amp_dtype is None and not paper.tf32
    assert paper.record() == {"mode": "paper", "autocast": None, "tf32": False, "paper_arithmetic": True}
    assert check_precision(argparse.Namespace(precision="paper", amp="fp16")).startswith("--precision paper means fp32")
    assert check_precision(argparse.Namespace(precision="paper", amp="off")) is None
    assert check_precision(argparse.Namespace(precision="fast", amp="bf16")) is None


def test_pretrain_precision_reaches_the_trial_record(tmp_path: Path) -> None:
    from transfer.trainer import build_parser, load_cfg, make_record, prepare_weights

    precision = {"mode": "fast", "autocast": "bf16", "tf32": True, "paper_arithmetic": False}
    net = build_resnet("resnet18", 128)
    ckpt = tmp_path / "moco.pth.tar"
    torch.save({"epoch": 1, "arch": "resnet18", "state_dict": {f"module.encoder_q.{k}": v for k, v in net.state_dict().items()},
                "suite": suite_marker({"arch": "resnet18"}, precision=precision, data_backend="dali")}, ckpt)
    cfg = load_cfg(str(TINY_CFG), ["MODEL.WEIGHTS", str(ckpt), "OUTPUT_DIR", str(tmp_path / "out")])
    pretrain = prepare_weights(cfg)  # converts the .pth (verified in Detectron2) like a trial does
    assert pretrain["provenance"]["pretrain_precision"] == precision
    assert pretrain["provenance"]["pretrain_data_backend"] == "dali"
    args = build_parser().parse_args(["--config-file", str(TINY_CFG)])
    record = make_record(cfg, args, pretrain, "finished", {}, {})
    assert record["pretrain"]["precision"] == precision and record["pretrain"]["kind"] == "pretrained"
    # a checkpoint that does not say (reference MoCo, torchvision): None, not a guess
    from transfer.convert import pretrain_facts

    assert pretrain_facts({"state_dict": {}}) == {"pretrain_precision": None, "pretrain_data_backend": None}


def test_amp_flag_adds_the_detectron2_option_and_needs_a_gpu(monkeypatch, capsys) -> None:
    parser = lambda: base_parser("run_voc.sh", "x", "voc")  # noqa: E731
    args = parse_with_opts(parser(), ["--tiny", "--", "SOLVER.BASE_LR", "0.01"])
    assert args.amp is False and args.opts == ["SOLVER.BASE_LR", "0.01"]  # off by default: the paper's fp32
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as e:
            parse_with_opts(parser(), ["--amp"])
        assert e.value.code == 2 and "--amp (Detectron2 AMP) needs a CUDA GPU" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    args = parse_with_opts(parser(), ["--amp", "--", "SOLVER.BASE_LR", "0.01"])
    assert args.opts == ["SOLVER.BASE_LR", "0.01", "SOLVER.AMP.ENABLED", "True"]


def test_train_net_refuses_amp_on_the_cpu_in_one_line(tmp_path: Path, capsys) -> None:
    from transfer.trainer import cli

    rc = cli(["--config-file", str(TINY_CFG), "SOLVER.AMP.ENABLED", "True", "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "",
              "OUTPUT_DIR", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "needs a CUDA GPU" in err
    assert not (tmp_path / "model_final.pth").exists()
