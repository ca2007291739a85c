"""Every full-protocol config family builds its R50 model and trains one step on the tiny data.

The fidelity tests check the configs' values; this checks that those values make a model Detectron2
can build, feed from the real dataset registrations and train (SyncBN on one process, the extra-norm
C4 head, the dilated-C5 reduce backbone, FPN with BN heads, the FCN-16s head). Images, proposals and
ROIs are shrunk so one R50 step takes seconds on a CPU; nothing else is overridden.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks.runner import REPO

CONFIGS = REPO / "transfer" / "configs"
FAMILIES = [
    "voc/voc_R_50_C4_24k.yaml",
    "voc/voc_R_50_DC5_24k.yaml",
    "coco/coco_R_50_C4_1x.yaml",
    "coco/coco_R_50_FPN_1x.yaml",
    "cityscapes/cityscapes_instance_R_50_FPN_24k.yaml",
    "cityscapes/cityscapes_semseg_R_50_FCN16s_90k.yaml",
]
SMALL = ["MODEL.WEIGHTS", "", "SOLVER.MAX_ITER", "1", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "0",
         "DATASETS.TEST", "()", "TEST.PRECISE_BN.ENABLED", "False", "DATALOADER.NUM_WORKERS", "0",
         "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "192",
         "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16"]


@pytest.mark.parametrize("name", FAMILIES)
def test_full_config_trains_one_step(name: str, tiny_root: Path, tmp_path: Path) -> None:
    from transfer.trainer import Trainer, load_cfg

    cfg = load_cfg(str(CONFIGS / name), [*SMALL, "OUTPUT_DIR", str(tmp_path)])
    assert cfg.MODEL.RESNETS.DEPTH == 50 and cfg.SOLVER.MAX_ITER == 1
    trainer = Trainer(cfg)
    trainer.train()
    assert (trainer.start_iter, trainer.iter) == (0, 1)  # the one iteration ran
    losses = {k: v.latest() for k, v in trainer.storage.histories().items() if "loss" in k}
    assert losses and all(math.isfinite(v) for v in losses.values()), losses
    assert (tmp_path / "model_final.pth").is_file()
