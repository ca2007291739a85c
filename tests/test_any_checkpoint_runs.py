"""Any checkpoint in (issue 28, done-when): a real ``--tiny`` sweep from a Lightning ``.ckpt`` and a timm-style
``.safetensors`` file (one random ResNet-18 saved both ways) trains both rows and tabulates them."""

from __future__ import annotations

from pathlib import Path

import torch
from checkpoint_layouts import backbone
from safetensors.torch import save_file
from tiny_runs import FAST, run_voc, table_rows, tiny_output

from core.records import RECORD_NAME, read_record

ONE_ITER = ["SOLVER.MAX_ITER", "1", *FAST, "SOLVER.WARMUP_ITERS", "0", "TEST.PRECISE_BN.ENABLED", "False",
            "DATALOADER.NUM_WORKERS", "0", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64"]


def test_a_lightning_ckpt_and_a_safetensors_file_train_and_tabulate(tmp_path: Path, tiny_root: Path) -> None:
    enc = backbone(0)
    head = {"classifier.weight": torch.zeros(10, 512), "classifier.bias": torch.zeros(10)}
    torch.save({"epoch": 9, "global_step": 90, "pytorch-lightning_version": "2.1.0",
                "state_dict": {**{f"backbone.{k}": v for k, v in enc.items()}, **head}},
               tmp_path / "solo.ckpt")
    save_file({**enc, "fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}, tmp_path / "r18.safetensors",
              metadata={"format": "pt"})
    out = tiny_output(tmp_path / "out", tiny_root)
    res = run_voc("--tiny", "--rows", "pretrained", "--trials", "1", "--output", str(out),
                  "--weights", f"Lightning={tmp_path / 'solo.ckpt'}", "--weights",
                  f"HF={tmp_path / 'r18.safetensors'}", "--", *ONE_ITER)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-3000:]
    assert "input    RGB: r18.safetensors: safetensors file" in res.stdout, res.stdout[-3000:]
    rows = [r.split("|")[1].strip() for r in table_rows(res.stdout)]
    assert "Lightning" in rows and "HF" in rows, res.stdout[-3000:]
    recs = {r["pretrain"]["label"]: r for r in map(read_record, out.rglob(RECORD_NAME))}
    assert sorted(recs) == ["HF", "Lightning"]
    for rec in recs.values():  # trained from the whole backbone, one iteration, evaluated
        report = rec["pretrain"]["load_report"]
        assert report["backbone_missing_count"] == report["shape_mismatch_count"] == 0
        assert report["backbone_loaded"] == report["backbone_total"] > 90
        assert rec["fingerprint"]["values"]["SOLVER.MAX_ITER"] == 1 and rec["metrics"]["AP50"] >= 0
    assert recs["HF"]["pretrain"]["sha256"] != recs["Lightning"]["pretrain"]["sha256"]
