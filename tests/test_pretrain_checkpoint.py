"""Checkpoint files: weights_only-safe contents, atomic names/pruning, RNG round trips, one-line errors."""

from __future__ import annotations

import argparse
import random

import numpy as np
import pytest
import torch

from pretrain import checkpoint as ck


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.random(), np.random.rand(), torch.rand(1), np.random.randn()
    path = ck.save_atomic({"rng": ck.rng_state()}, tmp_path / "r.pth")
    expect = (random.random(), np.random.rand(), np.random.randn(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ck.set_rng_state(torch.load(path, map_location="cpu", weights_only=True)["rng"])
    got = (random.random(), np.random.rand(), np.random.randn(), torch.rand(3))
    assert got[:3] == expect[:3] and torch.equal(got[3], expect[3])


def test_names_latest_and_prune(tmp_path):
    assert ck.checkpoint_name(4) == "checkpoint_0004.pth.tar"
    assert ck.checkpoint_name(4, 120) == "checkpoint_0004_iter000120.pth.tar"
    for e, it in [(0, 0), (1, 5), (1, 0), (2, 3)]:
        ck.save_atomic({"epoch": e}, tmp_path / ck.checkpoint_name(e, it))
    (tmp_path / "notes.txt").write_text("x")
    names = [p.name for p in ck.list_checkpoints(tmp_path)]
    assert names == ["checkpoint_0000.pth.tar", "checkpoint_0001_iter000005.pth.tar", "checkpoint_0001.pth.tar",
                     "checkpoint_0002_iter000003.pth.tar"]
    assert ck.latest_checkpoint(tmp_path).name == "checkpoint_0002_iter000003.pth.tar"
    ck.prune(tmp_path, 2)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == names[-2:]
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(ck.CheckpointError, match="does not exist"):
        ck.load_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ck.CheckpointError, match="empty"):
        ck.load_checkpoint(tmp_path / "empty.pth")
    (tmp_path / "junk.pth").write_bytes(b"definitely not a checkpoint" * 10)
    with pytest.raises(ck.CheckpointError, match="not a readable PyTorch checkpoint"):
        ck.load_checkpoint(tmp_path / "junk.pth")
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=0.03)}, tmp_path / "unsafe.pth")
    with pytest.raises(ck.CheckpointError, match=r"weights_only=True.*argparse.Namespace") as e:
        ck.load_checkpoint(tmp_path / "unsafe.pth")
    assert "\n" not in str(e.value)
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ck.CheckpointError, match="top level is a list"):
        ck.load_checkpoint(tmp_path / "list.pth")


def test_moco_checkpoint_checks():
    moco = {"arch": "resnet50", "state_dict": {"module.encoder_q.conv1.weight": torch.zeros(1)}}
    ck.check_moco_checkpoint(moco, "x", "resnet50")
    with pytest.raises(ck.CheckpointError, match="made with arch resnet50, not resnet18"):
        ck.check_moco_checkpoint(moco, "x", "resnet18")
    with pytest.raises(ck.CheckpointError, match="not a MoCo checkpoint"):
        ck.check_moco_checkpoint({"state_dict": {"conv1.weight": torch.zeros(1)}}, "x", "resnet50")
    sup = {"state_dict": {"conv1.weight": torch.zeros(1), "fc.bias": torch.zeros(1)}}
    assert set(ck.encoder_weights(sup, "x")) == {"conv1.weight", "fc.bias"}
    assert set(ck.encoder_weights(moco, "x")) == {"conv1.weight"}
    with pytest.raises(ck.CheckpointError, match="no ResNet encoder"):
        ck.encoder_weights({"state_dict": {"w": torch.zeros(1)}}, "x")


def test_suite_marker_and_version():
    assert ck.moco_version({"preset": "v2-800ep"}) == "v2"
    assert ck.moco_version({"preset": None, "mlp": False, "aug_plus": False, "cos": False}) == "v1"
    assert ck.moco_version({"mlp": True}) == "v2"
    marker = ck.suite_marker({"data": ck.Path("/d"), "schedule": (120, 160), "lr": 0.03})
    assert marker == {"name": "moco-transfer-bench", "format": 1, "moco_version": "v1",
                      "args": {"data": "/d", "schedule": [120, 160], "lr": 0.03}}


def test_metrics_csv_is_cut_back_to_the_resumed_step(tmp_path):
    from pretrain.logs import MetricsLog

    log = MetricsLog(tmp_path, resume_step=None, tensorboard=False)
    for step in range(1, 6):
        log.step({"step": step, "epoch": 0, "iter": step - 1, "loss": 1.0 / step, "acc1": 0.0, "acc5": 0.0, "lr": 0.1})
    log.close()
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write("6,0,5,0.16")  # a row cut short by a kill
    MetricsLog(tmp_path, resume_step=3, tensorboard=False).close()
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("step,") and [ln.split(",")[0] for ln in lines[1:]] == ["1", "2", "3"]
    assert float(lines[2].split(",")[3]) == 0.5  # full precision kept
