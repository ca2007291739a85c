"""MoCo v1 Table 6 completed: PASCAL VOC semantic segmentation, COCO keypoints, LVIS v0.5 and COCO DensePose.

Config fidelity against the paper's protocol, one short real training + real evaluation per task on the tiny data
(DensePose: up to the import boundary, the project is not installed here), the SBD converter, the dataset checks
on broken inputs, the runners (full protocol with a fake train_net, the LVIS frozen-BN row, DensePose's one-line
refusal) and the Table 6 view of ``results``."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import transfer.modeling  # noqa: F401  (registers the suite's Detectron2 components and VOC semantic segmentation)
from config_asserts import check_flavour, count_cited_values
from tiny_runs import arg, install_fake_train_net, read_calls

from benchmarks import dataset_check as dc
from transfer.tasks import coco_keypoints as t_coco_keypoints, densepose as t_densepose, lvis as t_lvis, voc_semseg as t_voc_semseg
from benchmarks import runner
from pretrain.resnets import build_resnet
from core.records import RECORD_NAME, read_record
from transfer.trainer import arch_of, cli, load_cfg, schedule_of, task_of

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "transfer" / "configs"
TINY = CONFIGS / "tiny"
FLAVOURS = ["", "_rgb", "_random"]
FAMILIES = {"voc_semseg": "voc_semseg/voc_semseg_R_50_FCN16s_30k", "keypoints": "keypoints/coco_keypoints_R_50_FPN_2x",
            "lvis": "lvis/lvis_v0.5_R_50_FPN_2x", "densepose": "densepose/densepose_R_50_FPN_s1x"}


def _cfg(family: str, flavour: str):
    return load_cfg(str(CONFIGS / f"{FAMILIES[family]}{flavour}.yaml"), [], read_only=family == "densepose")


def _check_fpn_syncbn(cfg) -> None:
    assert cfg.MODEL.BACKBONE.NAME == "build_resnet_fpn_backbone" and cfg.MODEL.BACKBONE.FREEZE_AT == 0
    assert cfg.MODEL.RESNETS.DEPTH == 50 and cfg.MODEL.FPN.NORM == "naiveSyncBN"
    box = cfg.MODEL.ROI_BOX_HEAD
    assert (box.NUM_CONV, box.NUM_FC, box.NORM) == (4, 1, "naiveSyncBN") and cfg.TEST.PRECISE_BN.ENABLED
    assert (cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.WEIGHT_DECAY) == (1000, 1e-4)
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (640, 672, 704, 736, 768, 800) and cfg.INPUT.MIN_SIZE_TEST == 800


# ----------------------------------------------------------------------------- config fidelity

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_voc_semseg_configs_follow_the_paper(flavour: str) -> None:
    cfg = _cfg("voc_semseg", flavour)
    assert cfg.MODEL.META_ARCHITECTURE == "SemanticSegmentor"
    res, head = cfg.MODEL.RESNETS, cfg.MODEL.SEM_SEG_HEAD
    assert (cfg.MODEL.BACKBONE.NAME, res.DEPTH, res.RES5_DILATION, res.NORM) == (
        "build_resnet_dilated_c5_backbone", 50, 2, "naiveSyncBN")
    assert (head.NAME, head.NUM_CONVS, head.CONVS_DIM, head.DILATION, head.NORM, head.NUM_CLASSES, head.IGNORE_VALUE) \
        == ("FCNDilatedHead", 2, 256, 6, "naiveSyncBN", 21, 255)
    assert cfg.INPUT.RANDOM_SCALE.ENABLED and tuple(cfg.INPUT.RANDOM_SCALE.RANGE) == (0.5, 2.0)
    assert tuple(cfg.INPUT.CROP.SIZE) == (513, 513) and cfg.INPUT.RANDOM_FLIP == "horizontal"
    assert cfg.INPUT.MIN_SIZE_TEST == 0  # original image size
    sol = cfg.SOLVER
    assert (sol.IMS_PER_BATCH, sol.BASE_LR, sol.WEIGHT_DECAY, sol.MAX_ITER) == (16, 0.003, 1e-4, 30000)
    assert tuple(sol.STEPS) == (round(0.7 * 30000), round(0.9 * 30000)) and sol.GAMMA == 0.1
    assert tuple(cfg.DATASETS.TRAIN) == ("voc_2012_sem_seg_train_aug",)
    assert tuple(cfg.DATASETS.TEST) == ("voc_2012_sem_seg_val",)
    check_flavour(cfg, flavour)
    assert (task_of(cfg), arch_of(cfg), schedule_of(cfg, "voc_semseg")) == ("voc_semseg", "R50-dilated-FCN16s", "30k")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_keypoint_configs_follow_the_paper(flavour: str) -> None:
    cfg = _cfg("keypoints", flavour)
    _check_fpn_syncbn(cfg)
    assert cfg.MODEL.KEYPOINT_ON and not cfg.MODEL.MASK_ON and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1
    kp = cfg.MODEL.ROI_KEYPOINT_HEAD
    assert (kp.NAME, kp.NORM, kp.NUM_KEYPOINTS) == ("KRCNNConvNormDeconvUpsampleHead", "naiveSyncBN", 17)
    assert (cfg.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA, cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN) == (0.5, 1500)
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER) == (16, 0.02, 180000)
    assert tuple(cfg.SOLVER.STEPS) == (120000, 160000)
    assert tuple(cfg.DATASETS.TRAIN) == ("keypoints_coco_2017_train",)
    assert tuple(cfg.DATASETS.TEST) == ("keypoints_coco_2017_val",)
    check_flavour(cfg, flavour)
    assert (task_of(cfg), arch_of(cfg), schedule_of(cfg, "coco_keypoints")) == ("coco_keypoints", "R50-FPN", "2x")


@pytest.mark.parametrize("flavour", [*FLAVOURS, "_frozenbn", "_frozenbn_rgb"])
def test_lvis_configs_follow_the_paper(flavour: str) -> None:
    cfg = _cfg("lvis", flavour)
    _check_fpn_syncbn(cfg)
    assert cfg.MODEL.MASK_ON and cfg.MODEL.ROI_MASK_HEAD.NORM == "naiveSyncBN"
    assert (cfg.MODEL.ROI_HEADS.NUM_CLASSES, cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST, cfg.TEST.DETECTIONS_PER_IMAGE) == (
        1230, 0.0001, 300)
    assert (cfg.DATALOADER.SAMPLER_TRAIN, cfg.DATALOADER.REPEAT_THRESHOLD) == ("RepeatFactorTrainingSampler", 0.001)
    assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER) == (16, 0.02, 180000)
    assert tuple(cfg.SOLVER.STEPS) == (120000, 160000)
    assert (tuple(cfg.DATASETS.TRAIN), tuple(cfg.DATASETS.TEST)) == (("lvis_v0.5_train",), ("lvis_v0.5_val",))
    assert cfg.MODEL.RESNETS.NORM == ("FrozenBN" if "frozenbn" in flavour else "naiveSyncBN")
    check_flavour(cfg, flavour.replace("_frozenbn", ""))
    assert (task_of(cfg), arch_of(cfg), schedule_of(cfg, "lvis_v0.5")) == ("lvis_v0.5", "R50-FPN", "2x")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_densepose_configs_follow_the_recipe(flavour: str) -> None:
    cfg = _cfg("densepose", flavour)  # read without the DensePose project: its own keys are only read
    _check_fpn_syncbn(cfg)
    assert cfg.MODEL.DENSEPOSE_ON and not cfg.MODEL.MASK_ON and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1
    assert cfg.MODEL.ROI_HEADS.NAME == "DensePoseROIHeads"
    assert cfg.MODEL.ROI_DENSEPOSE_HEAD.NAME == "DensePoseV1ConvXHead"
    sol = cfg.SOLVER
    assert (sol.IMS_PER_BATCH, sol.BASE_LR, sol.MAX_ITER, tuple(sol.STEPS), sol.WARMUP_FACTOR) == (
        16, 0.002, 130000, (100000, 120000), 0.1)  # the DensePose recipe of the paper's time (protocol.yaml)
    head = cfg.MODEL.ROI_DENSEPOSE_HEAD
    assert (head.NUM_COARSE_SEGM_CHANNELS, head.HEATMAP_SIZE, head.POOLER_RESOLUTION, head.DECODER_ON) == (15, 56, 14, False)
    assert tuple(cfg.DATASETS.TRAIN) == ("densepose_coco_2014_train", "densepose_coco_2014_valminusminival")
    assert tuple(cfg.DATASETS.TEST) == ("densepose_coco_2014_minival",)
    check_flavour(cfg, flavour)
    assert (task_of(cfg), arch_of(cfg), schedule_of(cfg, "coco_densepose")) == ("coco_densepose", "R50-FPN", "s1x")


def test_table6_config_values_carry_their_source() -> None:
    keys = ("MAX_ITER", "STEPS", "WARMUP", "WEIGHT_DECAY", "MIN_SIZE_TRAIN", "MIN_SIZE_TEST", "IMS_PER_BATCH",
            "BASE_LR", "NORM", "NUM_CLASSES", "SIZE: (", "KEYPOINT_ON", "MASK_ON", "DENSEPOSE_ON", "TRAIN: (",
            "TEST: (", "WEIGHTS: \"d", "SAMPLER_TRAIN", "REPEAT_THRESHOLD", "DETECTIONS_PER_IMAGE", "SCORE_THRESH")
    files = [p for d in ("voc_semseg", "keypoints", "lvis", "densepose") for p in (CONFIGS / d).glob("*.yaml")]
    assert len(files) == 14
    assert count_cited_values(files, keys, r"paper|Detectron2|DensePose|VOC|LVIS") >= 60


def test_densepose_config_without_the_project_stops_in_one_line(tiny_root: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    from transfer.tasks import densepose as densepose_support

    assert not densepose_support.available()  # this machine: no Detectron2 DensePose project
    assert densepose_support.is_densepose_config(TINY / "densepose_R_18_FPN_tiny.yaml")
    assert not densepose_support.is_densepose_config(TINY / "coco_keypoints_R_18_FPN_tiny.yaml")
    rc = cli(["--config-file", str(TINY / "densepose_R_18_FPN_tiny.yaml"), "OUTPUT_DIR", str(tmp_path / "t")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "pip install -e projects/DensePose" in err[0]
    assert not (tmp_path / "t").exists()
    with pytest.raises(densepose_support.DensePoseMissing):
        densepose_support.build_evaluator(None, "densepose_coco_2014_minival", str(tmp_path))


def test_densepose_and_lvis_metric_names() -> None:
    from transfer.tasks import paper_metrics

    raw = {"bbox": {"AP": 50.0, "AP50": 80.0}, "densepose_gps": {"AP": 48.3, "AP50": 85.6, "AP75": 50.6},
           "densepose_gpsm": {"AP": 49.0, "AP50": 86.0, "AP75": 52.0}}
    assert paper_metrics("coco_densepose", raw) == {"APbb": 50.0, "APbb50": 80.0, "APdp": 48.3, "APdp50": 85.6,
                                                    "APdp75": 50.6, "APdpm": 49.0, "APdpm50": 86.0, "APdpm75": 52.0}
    m = paper_metrics("lvis_v0.5", {"segm": {"AP": 24.4, "AP50": 37.8, "AP75": 25.8, "APr": -100.0, "APc": 20.0,
                                             "APf": 30.0}})
    assert {k: v for k, v in m.items() if not math.isnan(v)} == {"APmk": 24.4, "APmk50": 37.8, "APmk75": 25.8,
                                                                  "APmkc": 20.0, "APmkf": 30.0}
    assert math.isnan(m["APmkr"])  # the lvis package's -1 (no ground truth in the group) is not a number


# ----------------------------------------------------------------------------- keypoint head with norm

def test_keypoint_head_has_a_norm_after_each_conv() -> None:
    from detectron2.modeling import build_model
    from detectron2.layers import NaiveSyncBatchNorm

    from transfer.modeling import KRCNNConvNormDeconvUpsampleHead

    model = build_model(load_cfg(str(TINY / "coco_keypoints_R_18_FPN_tiny.yaml"), ["MODEL.DEVICE", "cpu"])).eval()
    head = model.roi_heads.keypoint_head
    assert isinstance(head, KRCNNConvNormDeconvUpsampleHead)
    convs = [m for n, m in head.named_children() if n.startswith("conv_fcn")]
    assert len(convs) == 4 and all(isinstance(c.norm, NaiveSyncBatchNorm) and c.bias is None for c in convs)
    with torch.no_grad():
        heatmaps = head.layers(torch.randn(3, 64, 14, 14))
    assert heatmaps.shape == (3, 17, 56, 56)  # 14 -> deconv 28 -> upsampled 56, one map per COCO keypoint


# ----------------------------------------------------------------------------- end to end on the tiny data

def _fast_opts(out: Path) -> list[str]:
    return ["SOLVER.MAX_ITER", "3", "SOLVER.STEPS", "(2,)", "SOLVER.WARMUP_ITERS", "1", "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.CHECKPOINT_PERIOD", "100", "TEST.PRECISE_BN.NUM_ITER", "2", "OUTPUT_DIR", str(out)]


def _record(out: Path, task: str, arch: str, metrics: set[str]) -> dict:
    rec = read_record(out / RECORD_NAME)
    assert rec["status"] == "finished" and rec["task"] == task and rec["arch"] == arch, rec.get("error")
    assert metrics <= set(rec["metrics"]), rec["metrics"]
    assert all(0.0 <= rec["metrics"][k] <= 100.0 for k in metrics), rec["metrics"]
    assert rec["tiny"] and rec["timings"]["iterations_run"] == 3
    return rec


def test_voc_semseg_trains_from_moco_weights_and_reports_miou(tiny_root: Path, tmp_path: Path) -> None:
    net = build_resnet("resnet18", 128)
    ckpt = tmp_path / "moco.pth.tar"
    torch.save({"epoch": 2, "arch": "resnet18", "state_dict": {f"module.encoder_q.{k}": v
                                                               for k, v in net.state_dict().items()}}, ckpt)
    out = tmp_path / "trial"
    argv = ["--config-file", str(TINY / "voc_semseg_R_18_FCN16s_tiny.yaml"), "--tiny", "--schedule", "tiny",
            "MODEL.WEIGHTS", str(ckpt), *_fast_opts(out)]
    assert cli(argv) == 0
    rec = _record(out, "voc_semseg", "R18-dilated-FCN16s", {"mIoU"})
    assert rec["pretrain"]["kind"] == "pretrained" and rec["dataset"]["train"] == ["voc_2012_sem_seg_train_aug"]
    raw = rec["raw_results"]["sem_seg"]
    from transfer.tasks.voc_semseg import voc_semseg_classes

    assert len(voc_semseg_classes()) == 21 and {f"IoU-{c}" for c in voc_semseg_classes()} <= set(raw)
    # the val split is the official SegmentationClass (palette PNGs); train_aug excludes its images
    from detectron2.data import DatasetCatalog

    val = {d["image_id"] for d in DatasetCatalog.get("voc_2012_sem_seg_val")}
    train = DatasetCatalog.get("voc_2012_sem_seg_train_aug")
    assert val and not val & {d["image_id"] for d in train}
    assert all("SegmentationClassAug" in d["sem_seg_file_name"] for d in train)


def test_coco_keypoints_train_and_evaluate_with_pycocotools(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "trial"
    argv = ["--config-file", str(TINY / "coco_keypoints_R_18_FPN_tiny.yaml"), "--tiny", "--schedule", "tiny",
            *_fast_opts(out)]
    assert cli(argv) == 0
    rec = _record(out, "coco_keypoints", "R18-FPN", {"APkp", "APkp50", "APkp75", "APbb"})
    assert set(rec["raw_results"]) == {"bbox", "keypoints"}
    dets = json.loads((out / "inference" / "coco_instances_results.json").read_text())
    assert dets and all(len(d["keypoints"]) == 51 for d in dets)  # real keypoint predictions were scored
    assert rec["fingerprint"]["values"]["MODEL.ROI_KEYPOINT_HEAD.NORM"] == "naiveSyncBN"
    assert "NaiveSyncBatchNorm" in rec["fingerprint"]["values"]["norm_classes"]  # the class that ran


def test_lvis_trains_and_evaluates_with_the_lvis_package(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "trial"
    # Detectron2's lvis_v0.5_val_rand_100 (a third of the tiny val): 1230-class inference is slow on a CPU
    argv = ["--config-file", str(TINY / "lvis_v0.5_R_18_FPN_tiny.yaml"), "--tiny", "--schedule", "tiny",
            "DATASETS.TEST", "('lvis_v0.5_val_rand_100',)", "MODEL.RPN.POST_NMS_TOPK_TEST", "5",
            "TEST.DETECTIONS_PER_IMAGE", "20", *_fast_opts(out)]
    assert cli(argv) == 0
    groups = {"APmkr", "APmkc", "APmkf"}  # the tiny val subset has ground truth in all three frequency groups
    rec = _record(out, "lvis_v0.5", "R18-FPN", {"APmk", "APmk50", "APmk75", "APbb", *groups})
    assert set(rec["raw_results"]) == {"bbox", "segm"} and rec["fingerprint"]["values"]["DATALOADER.SAMPLER_TRAIN"] \
        == "RepeatFactorTrainingSampler"
    assert json.loads((out / "inference" / "lvis_instances_results.json").read_text())
    assert not hasattr(np, "float")  # the lvis package's alias was only there while it evaluated


# ----------------------------------------------------------------------------- SBD converter and dataset checks

def _copy(tiny_root: Path, tmp_path: Path, *names: str) -> Path:
    root = tmp_path / "datasets"
    for name in names:
        shutil.copytree(tiny_root / name, root / name)
    return root


def test_sbd_converter_builds_train_aug(tiny_root: Path, tmp_path: Path) -> None:
    from benchmarks.voc_sbd import main as voc_sbd_main
    from transfer.tasks.voc_semseg import read_sbd_cls
    from transfer.tasks.voc_semseg import read_split

    root = _copy(tiny_root, tmp_path, "VOC2012", "sbd")
    voc, sbd = root / "VOC2012", root / "sbd" / "dataset"
    shutil.rmtree(voc / "SegmentationClassAug")
    (voc / "ImageSets" / "Segmentation" / "train_aug.txt").unlink()
    assert voc_sbd_main(["--voc", str(voc), "--sbd", str(sbd)]) == 0
    seg = voc / "ImageSets" / "Segmentation"
    train, val = read_split(seg / "train.txt"), read_split(seg / "val.txt")
    sbd_ids = read_split(sbd / "train.txt") + read_split(sbd / "val.txt")
    train_aug = read_split(seg / "train_aug.txt")
    assert set(sbd_ids) & set(val) and set(sbd_ids) & set(train)  # the tiny SBD overlaps both VOC splits
    assert train_aug == sorted((set(train) | set(sbd_ids)) - set(val))
    for i in train_aug:
        with Image.open(voc / "SegmentationClassAug" / f"{i}.png") as img:
            assert img.mode == "L"
            labels = np.asarray(img)
        if i in train:  # the official VOC label (with its 255 borders) wins over SBD's
            with Image.open(voc / "SegmentationClass" / f"{i}.png") as ref:
                assert np.array_equal(labels, np.asarray(ref))
        else:
            assert np.array_equal(labels, read_sbd_cls(sbd / "cls" / f"{i}.mat"))
    assert t_voc_semseg.check_voc_semseg(root) == []
    (sbd / "cls" / f"{sbd_ids[-1]}.mat").write_bytes(b"not a mat file")
    assert voc_sbd_main(["--voc", str(voc), "--sbd", str(sbd)]) == 2


def test_voc_semseg_check_finds_palette_labels_val_in_train_and_bad_values(tiny_root: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    from benchmarks import run
    from transfer.tasks.voc_semseg import read_split

    root = _copy(tiny_root, tmp_path, "VOC2012")
    voc = root / "VOC2012"
    seg = voc / "ImageSets" / "Segmentation"
    train_aug, val = read_split(seg / "train_aug.txt"), read_split(seg / "val.txt")
    palette = voc / "SegmentationClassAug" / f"{train_aug[0]}.png"
    shutil.copy(voc / "SegmentationClass" / f"{train_aug[0]}.png", palette)  # a palette PNG for training
    bad = voc / "SegmentationClass" / f"{val[0]}.png"
    with Image.open(bad) as img:
        arr, pal = np.asarray(img).copy(), img.getpalette()
    arr[0, :2] = 37
    out = Image.fromarray(arr, mode="P")
    out.putpalette(pal)
    out.save(bad)
    (seg / "train_aug.txt").write_text("".join(f"{i}\n" for i in [*train_aug, val[1]]))
    problems = t_voc_semseg.check_voc_semseg(root)
    assert len(problems) == 4, problems
    assert problems[0].startswith(f"{palette}: palette PNG") and "benchmarks.voc_sbd" in problems[0]
    assert problems[1] == f"{bad}: holds values [37] that are neither classes 0-20 nor 255 (ignore)"
    assert problems[2].startswith(f"{voc / 'SegmentationClassAug' / val[1]}.png: missing (listed in")
    assert problems[3].startswith(f"{seg / 'train_aug.txt'}: lists 1 val image(s) (e.g. {val[1]})")
    rc = run.main(["voc_semseg", "--datasets", str(root), "--rows", "random", "--output", str(tmp_path / "out")])
    assert rc == 2 and str(palette) in capsys.readouterr().err and not (tmp_path / "out").exists()
    (seg / "train_aug.txt").unlink()
    assert any("split file missing; build it" in p and "--sbd" in p for p in t_voc_semseg.check_voc_semseg(root))


def test_keypoint_lvis_and_densepose_checks_find_bad_annotations(tiny_root: Path, tmp_path: Path) -> None:
    root = _copy(tiny_root, tmp_path, "coco", "lvis")
    notes: list[str] = []
    assert t_coco_keypoints.check_coco_keypoints(root, notes=notes) == [] and t_lvis.check_lvis(root) == []
    assert t_densepose.check_densepose(root) == []

    kp = root / "coco" / "annotations" / "person_keypoints_val2017.json"
    doc = json.loads(kp.read_text())
    doc["annotations"][0]["keypoints"] = doc["annotations"][0]["keypoints"][:-3]
    doc["annotations"][1]["num_keypoints"] += 1
    kp.write_text(json.dumps(doc))
    problems = t_coco_keypoints.check_coco_keypoints(root)
    assert [p.split(": ", 2)[-1] for p in problems] == [
        "keypoints must be 17 x [x, y, v] with v 0, 1 or 2",
        f"num_keypoints {doc['annotations'][1]['num_keypoints']} but {doc['annotations'][1]['num_keypoints'] - 1} "
        "labelled"]

    lvis = root / "lvis" / "lvis_v0.5_train.json"
    doc = json.loads(lvis.read_text())
    doc["annotations"][0]["category_id"] = 5000
    doc["annotations"][1]["segmentation"] = [[1.0, 2.0, 3.0, 4.0]]
    gone = root / "coco" / "train2017" / doc["images"][2]["coco_url"].split("/")[-1]
    gone.unlink()
    lvis.write_text(json.dumps(doc))
    problems = t_lvis.check_lvis(root)
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"{gone}: missing") and "coco_url" in problems[0]
    assert any("category_id 5000 is not an LVIS v0.5 id" in p for p in problems)
    assert any("polygons of >= 3 points" in p for p in problems)

    dp = root / "coco" / "annotations" / "densepose_minival2014.json"
    doc = json.loads(dp.read_text())
    doc["annotations"][0]["dp_I"][0] = 25.0
    doc["annotations"][1]["dp_masks"] = doc["annotations"][1]["dp_masks"][:13]
    dp.write_text(json.dumps(doc))
    assert [p.split(": ", 2)[-1] for p in t_densepose.check_densepose(root)] == [
        "dp_I must be part indices 1-24", "dp_masks must be 14 entries, each an RLE ({'size', 'counts'}) or []"]


def test_dataset_check_cli_knows_the_table6_layouts(tiny_root: Path, capsys: pytest.CaptureFixture) -> None:
    for name in ("voc_semseg", "coco_keypoints", "lvis", "densepose"):
        assert dc.main([name, "--datasets", str(tiny_root)]) == 0
        assert f"{name}: layout under {tiny_root} OK" in capsys.readouterr().out


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
write_record(out, {"task": "lvis_v0.5", "arch": "R50-FPN", "schedule": "2x",
             "seed": int(argv[argv.index("--seed") + 1]), "trial": int(argv[argv.index("--trial") + 1]),
             "pretrain": {"label": argv[argv.index("--label") + 1], "kind": argv[argv.index("--kind") + 1],
                          "sha256": None},
             "status": "finished", "metrics": {"APmk": 24.0, "APmk50": 37.0, "APmk75": 25.0},
             "trials_requested": 1, "tiny": "--tiny" in argv})
'''


@pytest.fixture
def fake_train_net(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return install_fake_train_net(tmp_path, monkeypatch, FAKE_TRAIN_NET)


@pytest.mark.parametrize("task,layouts,stem,run_dir", [
    ("voc_semseg", ("VOC2012",), "voc_semseg_R_50_FCN16s_30k", "R50-dilated-FCN16s"),
    ("coco_keypoints", ("coco",), "coco_keypoints_R_50_FPN_2x", "R50-FPN-2x"),
    ("lvis", ("coco", "lvis"), "lvis_v0.5_R_50_FPN_2x", "R50-FPN-2x")])
def test_table6_runners_pick_configs_per_row(task: str, layouts: tuple, stem: str, run_dir: str, tiny_root: Path,
                                            tmp_path: Path, fake_train_net: Path) -> None:
    from benchmarks import run
    from benchmarks.common import full_rows

    # the config flavour per row follows the weights (MSRA: BGR base; a MoCo .pth: _rgb; none: _random)
    args, spec = run.parse(task, ["--weights", str(tmp_path / "moco.pth")])
    rows = full_rows(args, spec.config, spec.prog)
    assert {(r.kind, r.config.name) for r in rows} == {
        ("supervised", f"{stem}.yaml"), ("pretrained", f"{stem}_rgb.yaml"), ("random", f"{stem}_random.yaml")}
    # a full-protocol sweep (random init: no weights to fetch) trains on the checked dataset root
    root = _copy(tiny_root, tmp_path, *layouts)
    out = tmp_path / "out"
    argv = [task, "--datasets", str(root), "--rows", "random", "--trials", "2", "--output", str(out)]
    assert run.main(argv) == 0
    calls = read_calls(fake_train_net)
    assert [Path(arg(c["argv"], "--config-file")).name for c in calls] == [f"{stem}_random.yaml"] * 2
    assert {c["datasets"] for c in calls} == {str(root)} and all("--tiny" not in c["argv"] for c in calls)
    assert {Path(arg(c["argv"], "OUTPUT_DIR")).relative_to(out.resolve()).parts[0] for c in calls} == {run_dir}
    assert run.main(argv) == 0
    assert len(read_calls(fake_train_net)) == 2  # finished trials are skipped


def test_lvis_supervised_row_has_bn_frozen_by_default_as_the_paper(tiny_root: Path, tmp_path: Path) -> None:
    from benchmarks import run
    from benchmarks.common import full_rows, tiny_rows

    args, bench = run.parse("lvis", ["--weights", str(tmp_path / "moco.pth")])
    rows = full_rows(args, bench.config, "run_lvis.sh")
    bench.adjust_rows(rows, False)
    assert {(r.label, r.config.name) for r in rows} == {
        ("supervised IN-1M (BN frozen)", "lvis_v0.5_R_50_FPN_2x_frozenbn.yaml"),
        ("moco", "lvis_v0.5_R_50_FPN_2x_rgb.yaml"), ("random init", "lvis_v0.5_R_50_FPN_2x_random.yaml")}
    sup = next(r for r in rows if r.kind == "supervised")
    assert load_cfg(str(sup.config), []).MODEL.RESNETS.NORM == "FrozenBN"
    # torchvision-style supervised weights (RGB) get the RGB flavour of the frozen-BN config
    args, _ = run.parse("lvis", ["--supervised-weights", str(tmp_path / "sup.pth"),
                                 "--supervised-format", "RGB", "--rows", "supervised"])
    rows = full_rows(args, bench.config, "run_lvis.sh")
    bench.adjust_rows(rows, False)
    assert [r.config.name for r in rows] == ["lvis_v0.5_R_50_FPN_2x_frozenbn_rgb.yaml"]
    # the tiny default's supervised row: the tiny frozen-BN config
    rows = tiny_rows(run.parse("lvis", ["--tiny", "--rows", "supervised"])[0], tiny_root, tmp_path,
                     bench.tiny_config, "lvis-tiny", "run_lvis.sh", dry_run=True)
    bench.adjust_rows(rows, True)
    assert [(r.label, r.config.name) for r in rows] == [
        ("supervised (tiny labels) (BN frozen)", "lvis_v0.5_R_18_FPN_tiny_frozenbn.yaml")]
    assert run.parse("lvis", ["--supervised-tuned-bn"])[1].adjust_rows is None  # BN tuned: the variant
    assert run.parse("lvis", ["--supervised-frozen-bn"])[1].adjust_rows is not None  # the old flag still reads


def test_run_densepose_refuses_in_one_line_without_the_project(tmp_path: Path, fake_train_net: Path) -> None:
    env = {**runner.child_env(None), "VENV": str(Path(sys.executable).parents[1]), "PYTHONPATH": str(REPO)}
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "run_densepose.sh"), "--tiny", "--output",
                          str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        "run_densepose.sh: error: " + __import__("transfer.tasks.densepose", fromlist=["MISSING"]).MISSING]
    assert not (tmp_path / "out").exists() and not fake_train_net.exists()


# ----------------------------------------------------------------------------- results: the Table 6 view

def _rec(task: str, arch: str, schedule: str, label: str, kind: str, metrics: dict, trial: int = 0) -> dict:
    return {"task": task, "arch": arch, "schedule": schedule, "trial": trial, "seed": trial, "status": "finished",
            "pretrain": {"label": label, "kind": kind, "sha256": kind}, "metrics": metrics, "trials_requested": 2,
            "tiny": False}


def test_table6_view_lays_out_all_tasks_with_gaps_and_paper_rows(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    from results import cli as results_cli
    from core.records import write_record
    from results.table6 import TABLE6_COLUMNS, build_table6, render_table6_markdown

    recs = []
    for t in range(2):
        recs += [_rec("voc_semseg", "R50-dilated-FCN16s", "30k", "supervised IN-1M", "supervised", {"mIoU": 74.0 + t}, t),
                 _rec("voc_semseg", "R50-dilated-FCN16s", "30k", "MoCo mine", "moco", {"mIoU": 73.0 + t}, t),
                 _rec("coco_keypoints", "R50-FPN", "2x", "MoCo mine", "moco",
                      {"APkp": 66.0, "APkp50": 87.0, "APkp75": 72.0}, t)]
    view = build_table6(recs)
    assert [c[0] for c in view.columns] == [c[0] for c in TABLE6_COLUMNS] and len(view.columns) == 6
    assert view.rows == [("measured", "supervised IN-1M"), ("measured", "MoCo mine")]
    cell = view.cell("voc_semseg", ("measured", "MoCo mine"), "mIoU")
    assert (cell.mean, cell.gap, cell.mark) == (73.5, -1.0, "worse")
    assert view.cell("lvis_v0.5", ("measured", "MoCo mine"), "APmk") is None
    text = render_table6_markdown(view)
    assert "| MoCo mine | 66.0±0.0 | 87.0±0.0 | 72.0±0.0 | — |" in text  # keypoints measured, dense pose absent
    assert "73.5±0.7 (-1.0 ▼)" in text

    paper = build_table6(recs, with_paper=True)
    assert ("MoCo v1 (He et al. CVPR 2020)", "MoCo IG-1B") in paper.rows
    # every Table 6 task has its published rows, also those without records; appendix rows are left out
    for task, _, _ in TABLE6_COLUMNS:
        assert paper.tables[task] is not None
        assert {r.paper_table for r in paper.tables[task].rows if not r.measured} == {"Table 6"}
    dp = paper.cell("coco_densepose", ("MoCo v1 (He et al. CVPR 2020)", "MoCo IN-1M"), "APdp75")
    assert (dp.mean, dp.gap) == (53.9, 3.3)  # 53.9 - 50.6, the paper's own gap
    assert any("BN frozen" in n for n in paper.notes)

    for i, r in enumerate(recs):
        write_record(tmp_path / "runs" / f"t{i}", r)
    assert results_cli.main(["--runs", str(tmp_path / "runs"), "--table6", "--with-paper"]) == 0
    out = capsys.readouterr().out
    assert "VOC sem. seg. mIoU" in out and "COCO dense pose APdp" in out and "MoCo IG-1B (paper)" in out
    assert (tmp_path / "runs" / "tables" / "table6.md").read_text() == out
    assert results_cli.main(["--table6", "--with-paper", "--out", str(tmp_path / "paper")]) == 0  # paper alone
    assert "39.5 (-34.9 ▼)" in capsys.readouterr().out  # VOC semantic segmentation, random init
