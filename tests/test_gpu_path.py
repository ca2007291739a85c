"""GPU twins of the CPU tests of issue #12 (run by ``pytest -m gpu`` and by ``make gpu-check``).

CPU twins: tests/test_data_backends.py (tensor backend), tests/test_precision_amp.py (precision record,
--amp plumbing), tests/test_gpu_check.py (fine-tuning benchmark), tests/test_dist_check.py (gloo checks),
tests/test_pretrain_v3_distributed.py (MoCo v3 on 2 processes).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.runner import REPO
from pretrain import main_moco
from pretrain.augment import moco_recipe
from pretrain.backends import build_loader
from pretrain.data import EpochBatchSampler, scan_images
from pretrain.synthetic import write_image_folder

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda", 0)
TINY_CFG = REPO / "transfer" / "configs" / "tiny" / "voc_R_18_C4_tiny.yaml"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    # 4:4:4 JPEGs: the comparison checks the pipeline (crops, flips, colour jitter), not chroma reconstruction, which
    # differs between nvJPEG (nearest) and libjpeg (interpolated) on 4:2:0 files (measured: mean |diff| 0.063 there).
    return write_image_folder(tmp_path_factory.mktemp("gpu_imgs") / "train", classes=2, per_class=8, size=64, subsampling=0)


def _batches(backend: str, folder: Path, device: torch.device) -> list:
    images = scan_images(folder)
    sampler = EpochBatchSampler(len(images.samples), 8, seed=2)
    sampler.set_epoch(0)
    return [((q.cpu(), k.cpu()), lab, sk) for (q, k), lab, sk, _ in build_loader(backend, images, sampler, moco_recipe(48, True),
                                                                              2, device, True)]


def test_tensor_backend_on_the_gpu_matches_the_cpu(folder: Path) -> None:
    gpu, cpu = _batches("tensor", folder, CUDA), _batches("tensor", folder, torch.device("cpu"))
    for ((gq, gk), gl, _), ((cq, ck), cl, _) in zip(gpu, cpu):
        assert torch.equal(gl, cl)
        assert (gq - cq).abs().mean() < 0.05 and (gk - ck).abs().mean() < 0.05  # nvJPEG vs libjpeg IDCT, float order


def test_dali_backend_on_the_gpu_matches_the_tensor_backend(folder: Path) -> None:
    pytest.importorskip("nvidia.dali", reason="DALI is optional (pip install nvidia-dali-cuda130)")
    dali, tensor = _batches("dali", folder, CUDA), _batches("tensor", folder, CUDA)
    for ((dq, dk), dl, _), ((tq, tk), tl, _) in zip(dali, tensor):
        assert torch.equal(dl, tl) and (dq - tq).abs().mean() < 0.08 and (dk - tk).abs().mean() < 0.08


def test_precision_is_recorded_on_the_gpu(folder: Path, tmp_path: Path) -> None:
    base = ["-a", "resnet18", "-b", "8", "--crop-size", "32", "--moco-k", "32", "-j", "0", "--no-tensorboard", "--seed", "1",
            "--epochs", "1", "--compile", "off", "--device", "cuda", str(folder)]
    fast = torch.load(main_moco.main([*base, "--output-dir", str(tmp_path / "f")]), map_location="cpu", weights_only=True)
    assert fast["suite"]["precision"]["tf32"] is True and fast["suite"]["precision"]["autocast"] in ("bf16", "fp16")
    assert fast["suite"]["data_backend"] in ("tensor", "dali")  # auto on a GPU
    paper = torch.load(main_moco.main([*base, "--precision", "paper", "--output-dir", str(tmp_path / "p")]),
                       map_location="cpu", weights_only=True)
    assert paper["suite"]["precision"] == {"mode": "paper", "autocast": None, "tf32": False, "paper_arithmetic": True}
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


def test_detectron2_amp_trial_records_it(tiny_root: Path, tmp_path: Path) -> None:
    from core.records import RECORD_NAME, read_record
    from transfer.trainer import cli

    out = tmp_path / "amp"
    assert cli(["--config-file", str(TINY_CFG), "--tiny", "SOLVER.AMP.ENABLED", "True", "SOLVER.MAX_ITER", "4",
                "SOLVER.WARMUP_ITERS", "1", "SOLVER.IMS_PER_BATCH", "2", "TEST.PRECISE_BN.NUM_ITER", "2", "MODEL.WEIGHTS", "",
                "OUTPUT_DIR", str(out)]) == 0
    rec = read_record(out / RECORD_NAME)
    assert rec["status"] == "finished" and "AMP:\n    ENABLED: true" in rec["config"]


def test_finetune_speed_measures_fp32_and_amp(tiny_root: Path) -> None:
    from benchmarks.finetune_speed import measure

    res = measure(TINY_CFG, ["fp32-tf32off", "amp"], 2, 2, 1, 2, "cuda")
    assert [m["mode"] for m in res["modes"]] == ["fp32-tf32off", "amp"]
    assert all(m["s_per_iter"] > 0 and m["peak_alloc_gib"] > 0 for m in res["modes"]), res


def test_nccl_world_one_ddp_and_syncbn() -> None:
    from benchmarks.dist_check import run_checks

    res = run_checks(["ddp", "SyncBN", "naiveSyncBN"], 1, "nccl", "cuda", timeout=180)
    assert all(r["ok"] for r in res), res


def test_moco_v3_on_two_processes_with_syncbn_equals_one_process(tmp_path: Path) -> None:
    """GPU twin of tests/test_pretrain_v3_distributed.py: with SyncBN (CUDA only) the 2-process MoCo v3 ViT run
    gives the losses of one process on the whole batch."""
    from benchmarks.dist_check import run_moco_v3

    res = run_moco_v3("cuda", "gloo", tmp_path)
    assert res["ok"], res
    assert len(res["detail"]["losses_2proc"]) == 3
