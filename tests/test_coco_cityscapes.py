"""COCO Mask R-CNN and Cityscapes instance / semantic segmentation transfer: config fidelity, the FCN-16s
head and dilated backbone, one short real training + real evaluation per config family on the tiny data,
the runners (full protocol with a fake train_net, tiny mode, layout errors) and bad annotations."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import transfer.modeling  # noqa: F401  (registers the suite's Detectron2 components)
from config_asserts import check_flavour, count_cited_values
from tiny_runs import arg, install_fake_train_net, read_calls

from benchmarks import dataset_check as dc
from transfer.tasks import cityscapes as t_cityscapes, coco as t_coco
from benchmarks import runner
from transfer.tasks.cityscapes import CITYSCAPES_THING_CLASSES
from pretrain.resnets import build_resnet
from core.records import RECORD_NAME, read_record
from transfer.trainer import arch_of, cli, load_cfg, schedule_of, task_of

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "transfer" / "configs"
COCO, CITYSCAPES, TINY = CONFIGS / "coco", CONFIGS / "cityscapes", CONFIGS / "tiny"
FLAVOURS = ["", "_rgb", "_random"]


def _check_fpn_bn(cfg) -> None:
    """Normalized fine-tuning with FPN: SyncBN in backbone, FPN, 4conv1fc box head and mask head."""
    assert cfg.MODEL.BACKBONE.NAME == "build_resnet_fpn_backbone" and cfg.MODEL.BACKBONE.FREEZE_AT == 0
    assert cfg.MODEL.RESNETS.NORM == cfg.MODEL.FPN.NORM == "naiveSyncBN"
    box = cfg.MODEL.ROI_BOX_HEAD
    assert (box.NAME, box.NUM_CONV, box.NUM_FC, box.NORM) == ("FastRCNNConvFCHead", 4, 1, "naiveSyncBN")
    assert cfg.MODEL.ROI_MASK_HEAD.NORM == "naiveSyncBN" and cfg.MODEL.ROI_MASK_HEAD.NUM_CONV == 4
    assert list(cfg.MODEL.RPN.IN_FEATURES) == ["p2", "p3", "p4", "p5", "p6"]
    assert cfg.TEST.PRECISE_BN.ENABLED


# ----------------------------------------------------------------------------- config fidelity

@pytest.mark.parametrize("arch", ["C4", "FPN"])
@pytest.mark.parametrize("schedule", ["1x", "2x"])
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_coco_configs_follow_the_paper(arch: str, schedule: str, flavour: str) -> None:
    cfg = load_cfg(str(COCO / f"coco_R_50_{arch}_{schedule}{flavour}.yaml"), [])
    assert cfg.SOLVER.IMS_PER_BATCH == 16 and cfg.SOLVER.BASE_LR == 0.02
    assert cfg.SOLVER.WARMUP_ITERS == 1000 and cfg.SOLVER.WEIGHT_DECAY == 1e-4
    iters, steps = {"1x": (90000, (60000, 80000)), "2x": (180000, (120000, 160000))}[schedule]
    assert cfg.SOLVER.MAX_ITER == iters and tuple(cfg.SOLVER.STEPS) == steps
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (640, 672, 704, 736, 768, 800) and cfg.INPUT.MIN_SIZE_TEST == 800
    assert tuple(cfg.DATASETS.TRAIN) == ("coco_2017_train",) and tuple(cfg.DATASETS.TEST) == ("coco_2017_val",)
    assert cfg.MODEL.MASK_ON and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 80
    assert cfg.MODEL.RESNETS.DEPTH == 50 and cfg.MODEL.BACKBONE.FREEZE_AT == 0
    if arch == "C4":  # reference Base-RCNN-C4-BN.yaml: extra norm after res5, naiveSyncBN, precise BN
        assert cfg.MODEL.ROI_HEADS.NAME == "Res5ROIHeadsExtraNorm" and cfg.MODEL.RESNETS.NORM == "naiveSyncBN"
        assert cfg.TEST.PRECISE_BN.ENABLED
    else:
        _check_fpn_bn(cfg)
    check_flavour(cfg, flavour)
    assert (task_of(cfg), arch_of(cfg), schedule_of(cfg, task_of(cfg))) == ("coco_maskrcnn", f"R50-{arch}", schedule)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_cityscapes_instance_configs_follow_detectron2_recipe(flavour: str) -> None:
    cfg = load_cfg(str(CITYSCAPES / f"cityscapes_instance_R_50_FPN_24k{flavour}.yaml"), [])
    _check_fpn_bn(cfg)
    assert cfg.MODEL.MASK_ON and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 8 and cfg.MODEL.RESNETS.DEPTH == 50
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == tuple(range(800, 1025, 32))
    assert cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING == "choice" and cfg.INPUT.MAX_SIZE_TRAIN == 2048
    assert (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST) == (1024, 2048)
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER) == (8, 0.01, 24000)
    assert tuple(cfg.SOLVER.STEPS) == (18000,)
    assert tuple(cfg.DATASETS.TRAIN) == ("cityscapes_fine_instance_seg_train",)
    assert tuple(cfg.DATASETS.TEST) == ("cityscapes_fine_instance_seg_val",)
    check_flavour(cfg, flavour)
    assert (task_of(cfg), arch_of(cfg), schedule_of(cfg, "cityscapes_instance")) == (
        "cityscapes_instance", "R50-FPN", "d2-cityscapes")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_cityscapes_semseg_configs_follow_the_paper(flavour: str) -> None:
    cfg = load_cfg(str(CITYSCAPES / f"cityscapes_semseg_R_50_FCN16s_90k{flavour}.yaml"), [])
    assert cfg.MODEL.META_ARCHITECTURE == "SemanticSegmentor"
    assert cfg.MODEL.BACKBONE.NAME == "build_resnet_dilated_c5_backbone" and cfg.MODEL.BACKBONE.FREEZE_AT == 0
    res = cfg.MODEL.RESNETS
    assert (res.DEPTH, res.RES5_DILATION, list(res.OUT_FEATURES), res.NORM) == (50, 2, ["res5"], "naiveSyncBN")
    head = cfg.MODEL.SEM_SEG_HEAD
    assert (head.NAME, list(head.IN_FEATURES), head.NUM_CONVS, head.CONVS_DIM, head.DILATION, head.NORM) == (
        "FCNDilatedHead", ["res5"], 2, 256, 6, "naiveSyncBN")
    assert (head.NUM_CLASSES, head.IGNORE_VALUE) == (19, 255)
    assert cfg.INPUT.RANDOM_SCALE.ENABLED and tuple(cfg.INPUT.RANDOM_SCALE.RANGE) == (0.5, 2.0)
    assert cfg.INPUT.CROP.ENABLED and cfg.INPUT.CROP.TYPE == "absolute" and tuple(cfg.INPUT.CROP.SIZE) == (769, 769)
    assert cfg.INPUT.RANDOM_FLIP == "horizontal" and cfg.INPUT.MIN_SIZE_TEST == 0  # full-resolution inference
    sol = cfg.SOLVER
    assert (sol.IMS_PER_BATCH, sol.BASE_LR, sol.WEIGHT_DECAY, sol.MAX_ITER) == (16, 0.01, 1e-4, 90000)
    assert tuple(sol.STEPS) == (round(0.7 * 90000), round(0.9 * 90000)) and sol.GAMMA == 0.1
    assert tuple(cfg.DATASETS.TRAIN) == ("cityscapes_fine_sem_seg_train",)
    assert tuple(cfg.DATASETS.TEST) == ("cityscapes_fine_sem_seg_val",)
    check_flavour(cfg, flavour)
    assert (task_of(cfg), arch_of(cfg), schedule_of(cfg, "cityscapes_semseg")) == (
        "cityscapes_semseg", "R50-dilated-FCN16s", "90k")


def test_new_protocol_values_carry_their_source() -> None:
    keys = ("MAX_ITER", "STEPS", "WARMUP_ITERS", "WEIGHT_DECAY", "MIN_SIZE_TRAIN", "MIN_SIZE_TEST", "MAX_SIZE",
            "IMS_PER_BATCH", "BASE_LR", "FREEZE_AT", "NORM", "RES5_DILATION", "NUM_CONV", "NUM_FC", "NUM_CLASSES",
            "CONVS_DIM", "DILATION", "RANGE", "SIZE: (", "RANDOM_FLIP", "MASK_ON", "TRAIN: (", "TEST: (", "WEIGHTS: \"d")
    files = [*COCO.glob("coco_R_50_*.yaml"), *CITYSCAPES.glob("*.yaml"), CONFIGS / "Base-RCNN-FPN-BN.yaml"]  # ViTDet: its own
    assert len(files) == 12 + 6 + 1
    assert count_cited_values(files, keys, r"paper|reference|Detectron2|Cityscapes|COCO") >= 70


# ----------------------------------------------------------------------------- semantic segmentation pieces

def _tiny_semseg_cfg(*opts: str):
    return load_cfg(str(TINY / "cityscapes_semseg_R_18_FCN16s_tiny.yaml"), ["MODEL.DEVICE", "cpu", *opts])


@pytest.mark.parametrize("depth", [18, 50])
def test_dilated_backbone_has_total_stride_16(depth: int) -> None:
    from detectron2.modeling import build_backbone

    opts = [] if depth == 18 else ["MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.RES2_OUT_CHANNELS", "256"]
    backbone = build_backbone(_tiny_semseg_cfg(*opts))
    shape = backbone.output_shape()["res5"]
    assert (shape.channels, shape.stride) == (512 if depth == 18 else 2048, 16)
    assert backbone(torch.randn(1, 3, 129, 98))["res5"].shape[-2:] == (9, 7)  # ceil(H / 16)
    convs = [m for m in backbone.res5.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert convs and all(c.stride == (1, 1) and c.dilation == (2, 2) and c.padding == (2, 2) for c in convs)


def test_fcn_head_structure_and_output_size() -> None:
    from detectron2.modeling import build_model
    from detectron2.layers import NaiveSyncBatchNorm

    from transfer.semseg import FCNDilatedHead

    model = build_model(_tiny_semseg_cfg()).eval()
    head = model.sem_seg_head
    assert isinstance(head, FCNDilatedHead) and len(head.convs) == 2
    for conv in head.convs:
        assert (conv.kernel_size, conv.dilation, conv.padding, conv.out_channels) == ((3, 3), (6, 6), (6, 6), 256)
        assert isinstance(conv.norm, NaiveSyncBatchNorm) and conv.activation is not None and conv.bias is None
    assert head.predictor.kernel_size == (1, 1) and head.predictor.out_channels == 19
    with torch.no_grad():
        out = model([{"image": torch.randint(0, 255, (3, 129, 131), dtype=torch.uint8)}])
    assert out[0]["sem_seg"].shape == (19, 129, 131)


def test_upsampling_is_pixel_aligned_with_the_stride() -> None:
    from transfer.semseg import upsample_to_input

    ramp = torch.arange(5, dtype=torch.float32).view(1, 1, 5, 1).expand(1, 1, 5, 3)
    up = upsample_to_input(ramp, 16)
    assert up.shape == (1, 1, 80, 48)
    rows = up[0, 0, :, 0]
    torch.testing.assert_close(rows[:65], torch.arange(65, dtype=torch.float32) / 16)  # feature i at pixel 16 i
    assert torch.all(rows[64:] == 4.0)  # past the last feature: its value


def test_semseg_loss_ignores_255_and_stays_finite() -> None:
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    model = build_model(_tiny_semseg_cfg("MODEL.SEM_SEG_HEAD.NORM", "BN", "MODEL.RESNETS.NORM", "BN")).train()
    image = torch.randint(0, 255, (3, 64, 80), dtype=torch.uint8)
    labels = torch.full((64, 80), 255, dtype=torch.long)
    with EventStorage():
        assert model([{"image": image, "sem_seg": labels}])["loss_sem_seg"].item() == 0.0  # all ignored
        labels[:32] = 3
        loss = model([{"image": image, "sem_seg": labels}])["loss_sem_seg"]
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert model.backbone.res5[0].conv1.weight.grad is not None


def test_scale_crop_flip_mapper_follows_the_config(tiny_root: Path) -> None:
    from detectron2.data import DatasetCatalog
    from detectron2.data import transforms as T

    from transfer.semseg import RandomScale, scale_crop_flip_mapper

    cfg = load_cfg(str(CITYSCAPES / "cityscapes_semseg_R_50_FCN16s_90k.yaml"), [])
    mapper = scale_crop_flip_mapper(cfg)
    augs = mapper.augmentations.augs
    assert [type(a) for a in augs] == [RandomScale, T.RandomCrop, T.RandomFlip]
    assert (augs[0].min_scale, augs[0].max_scale) == (0.5, 2.0) and tuple(augs[1].crop_size) == (769, 769)
    tiny = scale_crop_flip_mapper(_tiny_semseg_cfg())
    d = DatasetCatalog.get("cityscapes_fine_sem_seg_train")[0]
    np.random.seed(0)
    for _ in range(4):
        out = tiny(dict(d))
        h, w = out["image"].shape[-2:]
        assert out["sem_seg"].shape == (h, w) and h <= 129 and w <= 129
        assert set(out["sem_seg"].unique().tolist()) <= set(range(19)) | {255}


def test_converted_r18_fills_the_dilated_backbone(tmp_path: Path) -> None:
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    from transfer.convert import convert

    net = build_resnet("resnet18", 128)
    torch.save({"state_dict": {f"module.encoder_q.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "m.pth")
    convert(tmp_path / "m.pth", log=lambda *a: None, verify=False)
    model = build_model(_tiny_semseg_cfg())
    ckpt = DetectionCheckpointer(model)
    incompatible = ckpt._load_model(ckpt._load_file(str(tmp_path / "m.pkl")))
    assert not incompatible.incorrect_shapes
    assert all(k.startswith("sem_seg_head.") for k in incompatible.missing_keys), incompatible.missing_keys
    torch.testing.assert_close(model.backbone.res5[1].conv2.weight, net.layer4[1].conv2.weight)


def test_evaluators_and_paper_metrics(tiny_root: Path) -> None:
    from detectron2.evaluation import COCOEvaluator, SemSegEvaluator

    from transfer.evaluators import CityscapesInstanceEvaluatorInFolder
    from transfer.tasks import evaluator_for as build_evaluator
    from transfer.tasks import paper_metrics, task_of

    cfg = load_cfg(str(TINY / "coco_R_18_FPN_tiny.yaml"), [])
    ev = build_evaluator(cfg, "coco_2017_val", "/tmp/unused")
    assert isinstance(ev, COCOEvaluator) and set(ev._tasks) == {"bbox", "segm"} and not ev._use_fast_impl
    cfg.defrost()
    cfg.MODEL.MASK_ON = False
    assert set(build_evaluator(cfg, "coco_2017_val", "/tmp/unused")._tasks) == {"bbox"}
    assert isinstance(build_evaluator(cfg, "cityscapes_fine_instance_seg_val", "/tmp/x"),
                      CityscapesInstanceEvaluatorInFolder)
    assert isinstance(build_evaluator(cfg, "cityscapes_fine_sem_seg_val", "/tmp/x"), SemSegEvaluator)
    assert task_of(cfg) == "coco_det"  # boxes only: its own task, box metrics only
    assert paper_metrics("coco_det", {"bbox": {"AP": 1.0, "AP50": 2.0}}) == {"APbb": 1.0, "APbb50": 2.0}
    # a model without any detection scores 0 (Detectron2: NaN); tiny COCO has no large (>= 96^2 px) objects
    none = ev._derive_coco_results(None, "segm")
    assert none == {**dict.fromkeys(("AP", "AP50", "AP75", "APs", "APm"), 0.0), "APl": pytest.approx(float("nan"),
                                                                                                    nan_ok=True)}
    coco = {k: {"AP": 1.0, "AP50": 2.0, "AP75": 3.0, "APs": 4.0, "APm": 5.0, "APl": 6.0} for k in ("bbox", "segm")}
    assert paper_metrics("coco_maskrcnn", coco) == {
        "APbb": 1.0, "APbb50": 2.0, "APbb75": 3.0, "APbbS": 4.0, "APbbM": 5.0, "APbbL": 6.0,
        "APmk": 1.0, "APmk50": 2.0, "APmk75": 3.0, "APmkS": 4.0, "APmkM": 5.0, "APmkL": 6.0}
    assert paper_metrics("cityscapes_instance", {"segm": {"AP": 30.0, "AP50": 55.0}}) == {"APmk": 30.0, "APmk50": 55.0}
    assert paper_metrics("cityscapes_semseg", {"sem_seg": {"mIoU": 70.0, "IoU-road": 97.0}}) == {"mIoU": 70.0}


# ----------------------------------------------------------------------------- one short real training per family

def _fast_opts(out: Path) -> list[str]:
    # few proposals at test time: C4 runs res5 once per box, the main CPU cost of its inference
    return ["SOLVER.MAX_ITER", "3", "SOLVER.STEPS", "(2,)", "SOLVER.WARMUP_ITERS", "1", "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.CHECKPOINT_PERIOD", "100", "TEST.PRECISE_BN.NUM_ITER", "2", "MODEL.RPN.POST_NMS_TOPK_TEST", "5",
            "TEST.DETECTIONS_PER_IMAGE", "20", "OUTPUT_DIR", str(out)]


def _moco_pth(tmp_path: Path) -> Path:
    net = build_resnet("resnet18", 128)
    ckpt = tmp_path / "moco.pth.tar"
    torch.save({"epoch": 2, "arch": "resnet18", "suite": {"name": "moco-transfer-bench"},
                "state_dict": {f"module.encoder_q.{k}": v for k, v in net.state_dict().items()}}, ckpt)
    return ckpt


def _finished_record(out: Path, task: str, arch: str, metrics: set[str], undefined: frozenset = frozenset()) -> dict:
    rec = read_record(out / RECORD_NAME)
    assert rec["status"] == "finished" and rec["task"] == task and rec["arch"] == arch, rec.get("error")
    assert set(rec["metrics"]) == metrics
    assert {k for k, v in rec["metrics"].items() if np.isnan(v)} == undefined, rec["metrics"]
    assert all(0.0 <= v <= 100.0 for k, v in rec["metrics"].items() if k not in undefined), rec["metrics"]
    assert rec["tiny"] and rec["schedule"] == "tiny" and rec["timings"]["iterations_run"] == 3
    return rec


COCO_METRICS = {f"AP{t}{s}" for t in ("bb", "mk") for s in ("", "50", "75", "S", "M", "L")}


@pytest.mark.parametrize("arch", ["C4", "FPN"])
def test_coco_mask_rcnn_trains_and_evaluates_with_pycocotools(arch: str, tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "trial"
    # a score threshold of 0 keeps the barely trained model's detections, so pycocotools scores real output
    argv = ["--config-file", str(TINY / f"coco_R_18_{arch}_tiny.yaml"), "--tiny", "--schedule", "tiny", "--seed", "3",
            *_fast_opts(out), "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
    assert cli(argv) == 0
    # the tiny objects are all smaller than 96^2 px: pycocotools has no large ground truth, so APl is undefined
    rec = _finished_record(out, "coco_maskrcnn", f"R18-{arch}", COCO_METRICS, frozenset({"APbbL", "APmkL"}))
    assert set(rec["raw_results"]) == {"bbox", "segm"} and rec["seed"] == 3
    assert (out / "inference" / "coco_instances_results.json").is_file()


def test_cityscapes_instance_trains_and_evaluates_with_cityscapesscripts(
        tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "trial"
    argv = ["--config-file", str(TINY / "cityscapes_instance_R_18_FPN_tiny.yaml"), "--tiny", "--schedule", "tiny",
            *_fast_opts(out), "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
    assert cli(argv) == 0
    _finished_record(out, "cityscapes_instance", "R18-FPN", {"APmk", "APmk50"})
    assert (out / "inference" / "matches.json").is_file() and not (tmp_path / "matches.json").exists()


def test_cityscapes_semseg_trains_from_moco_weights_and_reports_miou(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "trial"
    argv = ["--config-file", str(TINY / "cityscapes_semseg_R_18_FCN16s_tiny.yaml"), "--tiny", "--schedule", "tiny",
            "MODEL.WEIGHTS", str(_moco_pth(tmp_path)), *_fast_opts(out)]
    assert cli(argv) == 0
    rec = _finished_record(out, "cityscapes_semseg", "R18-dilated-FCN16s", {"mIoU"})
    assert rec["pretrain"]["kind"] == "pretrained" and (out / "converted" / "moco.pkl").is_file()
    raw = rec["raw_results"]["sem_seg"]
    from detectron2.data import MetadataCatalog

    classes = MetadataCatalog.get("cityscapes_fine_sem_seg_val").stuff_classes
    assert len(classes) == 19 and {f"IoU-{c}" for c in classes} <= set(raw)


# ----------------------------------------------------------------------------- runners

FAKE_TRAIN_NET = '''
import json, os, sys
from pathlib import Path
argv = sys.argv[1:]
out = Path(argv[argv.index("OUTPUT_DIR") + 1])
with open(Path(sys.argv[0]).with_name("calls.jsonl"), "a") as f:
    f.write(json.dumps({"argv": argv, "datasets": os.environ.get("DETECTRON2_DATASETS")}) + "\\n")
sys.path.insert(0, REPO)
from core.records import write_record
kind = argv[argv.index("--kind") + 1]
write_record(out, {"task": "coco_maskrcnn", "arch": "R50-FPN", "schedule": "1x",
             "seed": int(argv[argv.index("--seed") + 1]), "trial": int(argv[argv.index("--trial") + 1]),
             "pretrain": {"label": argv[argv.index("--label") + 1], "kind": kind, "sha256": None},
             "status": "finished", "metrics": {"APbb": 40.0, "APbb50": 60.0, "APbb75": 44.0, "APmk": 35.0,
             "APmk50": 57.0, "APmk75": 37.0}, "trials_requested": 1, "tiny": "--tiny" in argv})
'''


@pytest.fixture
def fake_train_net(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return install_fake_train_net(tmp_path, monkeypatch, FAKE_TRAIN_NET)


R18 = ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]  # small models for the preflight


@pytest.fixture
def cached_msra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Detectron2's download cache holding the supervised row's R-50.pkl (ResNet-18 tensors in the Caffe2 layout,
    for configs overridden to R18): the preflight checks and loads the supervised weights before any trial."""
    from weights_files import caffe2_pkl, resnet_state

    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "cache" / "detectron2" / "ImageNetPretrained" / "MSRA" / "R-50.pkl"
    path.parent.mkdir(parents=True)
    return caffe2_pkl(path, resnet_state("resnet18"))


def _copy(tiny_root: Path, tmp_path: Path, name: str) -> Path:
    root = tmp_path / "datasets"
    shutil.copytree(tiny_root / name, root / name)
    return root


def test_run_coco_full_protocol_picks_configs_per_row(tiny_root: Path, tmp_path: Path, fake_train_net: Path,
                                                       cached_msra: Path, capsys: pytest.CaptureFixture) -> None:
    from benchmarks import run

    root = _copy(tiny_root, tmp_path, "coco")
    out = tmp_path / "out"
    moco = _moco_pth(tmp_path)
    rc = run.main(["coco", "--datasets", str(root), "--arch", "C4", "--schedule", "2x", "--trials", "2", "--seed", "5",
                        "--weights", str(moco), "--output", str(out), "--", *R18, "SOLVER.MAX_ITER", "7"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "note: " in text and "have no annotations" in text  # tiny COCO has images without objects
    calls = read_calls(fake_train_net)
    assert len(calls) == 6 and {c["datasets"] for c in calls} == {str(root)}
    configs = {(arg(c["argv"], "--kind"), Path(arg(c["argv"], "--config-file")).name) for c in calls}
    assert configs == {("supervised", "coco_R_50_C4_2x.yaml"), ("pretrained", "coco_R_50_C4_2x_rgb.yaml"),
                       ("random", "coco_R_50_C4_2x_random.yaml")}
    assert sorted(int(arg(c["argv"], "--seed")) for c in calls) == [5, 5, 5, 6, 6, 6]
    assert all(c["argv"][-2:] == ["SOLVER.MAX_ITER", "7"] and "--tiny" not in c["argv"] for c in calls)
    assert all(Path(arg(c["argv"], "OUTPUT_DIR")).relative_to(out.resolve()).parts[0] == "R50-C4-2x" for c in calls)
    assert "supervised IN-1M" in text and "random init" in text  # the comparison table
    # the .pth was converted once for the sweep; every MoCo trial gets that .pkl
    assert {arg(c["argv"], "MODEL.WEIGHTS") for c in calls if arg(c["argv"], "--kind") == "pretrained"} == \
        {str(p) for p in (out / "weights").glob("moco-*.pkl")} != set()
    # a second run skips every finished trial
    assert run.main(["coco", "--datasets", str(root), "--arch", "C4", "--schedule", "2x", "--trials", "2", "--seed", "5",
                          "--weights", str(moco), "--output", str(out), "--", *R18]) == 0
    assert len(read_calls(fake_train_net)) == 6


@pytest.mark.parametrize("task,stem,run_dir", [("instance", "cityscapes_instance_R_50_FPN_24k", "instance-R50-FPN"),
                                              ("semantic", "cityscapes_semseg_R_50_FCN16s_90k",
                                               "semantic-R50-dilated-FCN16s")])
def test_run_cityscapes_full_protocol_picks_configs_per_task(task: str, stem: str, run_dir: str, tiny_root: Path,
                                                             tmp_path: Path, fake_train_net: Path,
                                                             cached_msra: Path) -> None:
    from benchmarks import run

    root = _copy(tiny_root, tmp_path, "cityscapes")
    out = tmp_path / "out"
    assert run.main(["cityscapes", "--datasets", str(root), "--task", task, "--rows", "supervised,random", "--trials", "1",
                                "--output", str(out), "--", *R18]) == 0
    calls = read_calls(fake_train_net)
    assert {Path(arg(c["argv"], "--config-file")).name for c in calls} == {f"{stem}.yaml", f"{stem}_random.yaml"}
    assert {Path(arg(c["argv"], "OUTPUT_DIR")).relative_to(out.resolve()).parts[0] for c in calls} == {run_dir}


@pytest.mark.parametrize("task,config", [("instance", "cityscapes_instance_R_18_FPN_tiny.yaml"),
                                         ("semantic", "cityscapes_semseg_R_18_FCN16s_tiny.yaml")])
def test_run_cityscapes_tiny_reuses_checkpoints_and_uses_tiny_data(task: str, config: str, tmp_path: Path,
                                                                   fake_train_net: Path) -> None:
    from benchmarks import run

    out = tmp_path / "out"
    sup = out / "pretrain" / "supervised-seed0" / "checkpoint_0007.pth.tar"  # made by an earlier run: reused
    sup.parent.mkdir(parents=True)
    net = build_resnet("resnet18", 8)
    torch.save({"state_dict": net.state_dict(), "arch": "resnet18", "epoch": 8}, sup)
    moco = _moco_pth(tmp_path)
    rc = run.main(["cityscapes", "--tiny", "--task", task, "--weights", str(moco), "--output", str(out),
                              "--datasets", str(tmp_path / "nowhere")])
    assert rc == 0
    calls = read_calls(fake_train_net)
    assert {Path(arg(c["argv"], "--config-file")).name for c in calls} == {config}
    converted = {str(p) for p in (out / "weights").glob("*.pkl")}  # each .pth converted once, reused by trials
    assert len(converted) == 2 and {arg(c["argv"], "MODEL.WEIGHTS") for c in calls} == {"", *converted}
    assert all("--tiny" in c["argv"] and arg(c["argv"], "--schedule") == "tiny" for c in calls)
    assert {c["datasets"] for c in calls} == {str(out / "datasets")}
    assert (out / "datasets" / "cityscapes" / "gtFine").is_dir()


def test_runner_scripts_show_help_from_anywhere(tmp_path: Path) -> None:
    env = {**runner.child_env(None), "VENV": str(Path(sys.executable).parents[1])}
    for script, flag in (("run_coco.sh", "--schedule"), ("run_cityscapes.sh", "--task")):
        res = subprocess.run(["bash", str(REPO / "benchmarks" / script), "--help"], capture_output=True, text=True,
                             cwd=tmp_path, env=env)
        assert res.returncode == 0 and flag in res.stdout and "--tiny" in res.stdout and "--weights" in res.stdout


# ----------------------------------------------------------------------------- bad annotations

def _edit_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_run_coco_refuses_bad_annotations_before_training(tiny_root: Path, tmp_path: Path, fake_train_net: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    from benchmarks import run

    root = _copy(tiny_root, tmp_path, "coco")
    train = root / "coco" / "annotations" / "instances_train2017.json"

    def edit(doc: dict) -> None:
        doc["annotations"][0].pop("segmentation")                # missing mask
        doc["annotations"][1]["segmentation"] = [[1.0, 2.0]]     # polygon with one point
        doc["annotations"][2]["category_id"] = 12                # 12 is not a COCO category id

    _edit_json(train, edit)
    rc = run.main(["coco", "--datasets", str(root), "--rows", "random", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and not fake_train_net.exists() and not (tmp_path / "out").exists()
    lines = [line.strip() for line in err.splitlines()[1:]]
    assert all(line.startswith(str(train)) for line in lines) and len(lines) == 3
    assert any("no usable segmentation" in line for line in lines)
    assert any("category_id 12 is not in 'categories'" in line for line in lines)


def test_coco_images_without_annotations(tiny_root: Path, tmp_path: Path) -> None:
    root = _copy(tiny_root, tmp_path, "coco")
    val = root / "coco" / "annotations" / "instances_val2017.json"
    n_images = len(json.loads(val.read_text())["images"])
    notes: list[str] = []
    assert t_coco.check_coco(root, notes=notes) == []
    line = next(n for n in notes if n.startswith(str(val)))
    assert re.search(rf": \d+ of {n_images} images have no annotations; Detectron2 leaves them out of training "
                     r"\(DATALOADER.FILTER_EMPTY_ANNOTATIONS\)", line)
    _edit_json(val, lambda doc: doc.update(annotations=[]))
    problems = t_coco.check_coco(root)
    assert problems == [f"{val}: none of its {n_images} images has an annotation; there is nothing to train on or "
                        "to evaluate"]


def test_cityscapes_bad_polygons_train_ids_and_empty_frames(tiny_root: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    from benchmarks import run

    root = _copy(tiny_root, tmp_path, "cityscapes")
    gt = root / "cityscapes" / "gtFine"
    polys = sorted((gt / "train").glob("*/*_gtFine_polygons.json"))

    def unknown_label(doc: dict) -> None:
        doc["objects"][-2]["label"] = "spaceship"

    _edit_json(polys[0], unknown_label)
    _edit_json(polys[1], lambda doc: doc["objects"][-2].update(polygon=[[1, 2], [3, 4]]))
    polys[2].write_text("{")
    train_ids = sorted((gt / "val").glob("*/*_gtFine_labelTrainIds.png"))[0]
    arr = np.array(Image.open(train_ids))
    arr[0, :3] = 33  # a label id, not a train id
    Image.fromarray(arr).save(train_ids)

    problems = t_cityscapes.check_cityscapes(root, "instance_seg")
    assert len(problems) == 3
    assert problems[0].startswith(f"{polys[0]}: objects[") and "unknown label 'spaceship'" in problems[0]
    assert problems[1].startswith(f"{polys[1]}: objects[") and ">= 3 [x, y] points" in problems[1]
    assert problems[2].startswith(f"{polys[2]}: cannot read as JSON")
    semantic = t_cityscapes.check_cityscapes(root, "sem_seg")  # labels are not read for semantic segmentation
    assert [p for p in semantic if str(train_ids) in p] == [
        f"{train_ids}: holds values [33] that are neither train ids 0-18 nor 255 (ignore); regenerate it with "
        "csCreateTrainIdLabelImgs (cityscapesscripts)"]
    rc = run.main(["cityscapes", "--datasets", str(root), "--task", "semantic", "--output", str(tmp_path / "out")])
    assert rc == 2 and str(train_ids) in capsys.readouterr().err and not (tmp_path / "out").exists()

    # frames without thing instances: a note when some, an error when all
    shutil.rmtree(root)
    root = _copy(tiny_root, tmp_path, "cityscapes")
    polys = sorted((root / "cityscapes" / "gtFine" / "train").glob("*/*_gtFine_polygons.json"))
    things = set(CITYSCAPES_THING_CLASSES)
    for path in polys[:3]:
        _edit_json(path, lambda doc: doc.update(objects=[o for o in doc["objects"] if o["label"] not in things]))
    notes: list[str] = []
    assert t_cityscapes.check_cityscapes(root, "instance_seg", notes=notes) == []
    assert notes == [f"{root / 'cityscapes' / 'gtFine' / 'train'}: 3 of {len(polys)} frames have no instance of the "
                     "8 thing classes; Detectron2 leaves them out of training (DATALOADER.FILTER_EMPTY_ANNOTATIONS) "
                     "and keeps them in evaluation"]
    for path in polys[3:]:
        _edit_json(path, lambda doc: doc.update(objects=[o for o in doc["objects"] if o["label"] not in things]))
    assert any("none of its" in p and "frames has an instance" in p for p in t_cityscapes.check_cityscapes(root, "instance_seg"))
