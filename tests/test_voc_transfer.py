"""VOC transfer: config fidelity, the extra-norm C4 head, the dilated-C5 backbone, the trainer end
to end on the tiny data (real VOC loader + evaluator), the runner's skip/resume, and layout errors."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

import transfer.modeling  # noqa: F401  (registers the suite's Detectron2 components)
from config_asserts import check_flavour, count_cited_values
from benchmarks import runner
from pretrain.resnets import build_resnet
from core.records import RECORD_NAME, read_record
from transfer.trainer import SetupError, cli, load_cfg, prepare_weights

REPO = Path(__file__).resolve().parents[1]
VOC = REPO / "transfer" / "configs" / "voc"
TINY = REPO / "transfer" / "configs" / "tiny" / "voc_R_18_C4_tiny.yaml"


# ----------------------------------------------------------------------------- config fidelity

@pytest.mark.parametrize("arch", ["C4", "DC5"])
@pytest.mark.parametrize("flavour", ["", "_rgb", "_random"])
def test_voc_configs_follow_the_paper(arch: str, flavour: str) -> None:
    cfg = load_cfg(str(VOC / f"voc_R_50_{arch}_24k{flavour}.yaml"), [])
    assert cfg.SOLVER.IMS_PER_BATCH == 16 and cfg.SOLVER.BASE_LR == 0.02
    assert cfg.SOLVER.MAX_ITER == 24000 and tuple(cfg.SOLVER.STEPS) == (18000, 22000)
    assert cfg.SOLVER.WARMUP_ITERS == 100
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == tuple(range(480, 801, 32)) and cfg.INPUT.MIN_SIZE_TEST == 800
    assert tuple(cfg.DATASETS.TRAIN) == ("voc_2007_trainval", "voc_2012_trainval")
    assert tuple(cfg.DATASETS.TEST) == ("voc_2007_test",)
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 20 and not cfg.MODEL.MASK_ON
    assert cfg.MODEL.RESNETS.DEPTH == 50 and cfg.MODEL.BACKBONE.FREEZE_AT == 0
    assert cfg.MODEL.RESNETS.NORM in ("SyncBN", "naiveSyncBN") and cfg.TEST.PRECISE_BN.ENABLED
    if arch == "C4":
        assert cfg.MODEL.ROI_HEADS.NAME == "Res5ROIHeadsExtraNorm"
    else:
        assert cfg.MODEL.BACKBONE.NAME == "build_resnet_dc5_reduce_backbone"
        assert cfg.MODEL.RESNETS.RES5_DILATION == 2 and cfg.MODEL.DC5_REDUCE.CHANNELS == 512
        assert cfg.MODEL.ROI_BOX_HEAD.NUM_FC == 2 and list(cfg.MODEL.RPN.IN_FEATURES) == ["res5"]
    check_flavour(cfg, flavour)


def test_protocol_values_carry_their_source() -> None:
    keys = ("MAX_ITER", "STEPS", "WARMUP_ITERS", "MIN_SIZE_TRAIN", "MIN_SIZE_TEST", "IMS_PER_BATCH", "BASE_LR",
            "FREEZE_AT", "NORM", "RES5_DILATION", "NUM_FC", "CHANNELS", "NAME: \"Res5ROIHeadsExtraNorm\"")
    files = [*VOC.glob("*.yaml"), *(REPO / "transfer" / "configs").glob("Base-*.yaml")]
    assert count_cited_values(files, keys, r"paper|reference|Detectron2") >= 20


# ----------------------------------------------------------------------------- modeling

def _tiny_cfg(*opts: str):
    return load_cfg(str(TINY), ["MODEL.DEVICE", "cpu", *opts])


def test_extra_norm_head_after_res5_and_basic_blocks_for_r18() -> None:
    from detectron2.layers import NaiveSyncBatchNorm
    from detectron2.modeling import build_model
    from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock

    model = build_model(_tiny_cfg())
    res5 = model.roi_heads.res5
    assert isinstance(res5[-1], NaiveSyncBatchNorm) and res5[-1].num_features == 512
    assert [type(b) for b in list(res5)[:-1]] == [BasicBlock, BasicBlock]
    r50 = build_model(_tiny_cfg("MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.RES2_OUT_CHANNELS", "256"))
    assert [type(b) for b in list(r50.roi_heads.res5)[:-1]] == [BottleneckBlock] * 3
    assert r50.roi_heads.res5[-1].num_features == 2048
    out = model.roi_heads.res5(torch.randn(2, 256, 8, 8))
    assert out.shape == (2, 512, 4, 4)


def test_converted_r18_fills_backbone_and_res5_head(tmp_path: Path) -> None:
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    from transfer.convert import convert

    net = build_resnet("resnet18", 128)
    torch.save({"state_dict": {f"module.encoder_q.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "m.pth")
    convert(tmp_path / "m.pth", log=lambda *a: None)
    model = build_model(_tiny_cfg())
    ckpt = DetectionCheckpointer(model)
    incompatible = ckpt._load_model(ckpt._load_file(str(tmp_path / "m.pkl")))
    assert not incompatible.incorrect_shapes and not incompatible.unexpected_keys
    # only the new layers (RPN, box predictor, extra norm) start from scratch
    assert all(k.startswith(("proposal_generator.", "roi_heads.box_predictor.", "roi_heads.res5.norm.")) or "num_batches" in k
               for k in incompatible.missing_keys), incompatible.missing_keys
    torch.testing.assert_close(model.roi_heads.res5[0].conv1.weight, net.layer4[0].conv1.weight)
    torch.testing.assert_close(model.backbone.res2[1].conv2.weight, net.layer1[1].conv2.weight)


def test_dilated_c5_backbone_trains_one_step() -> None:
    """CPU twin of the R50-dilated-C5 path: the model builds and a training step gives finite losses."""
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, Instances

    cfg = load_cfg(str(VOC / "voc_R_50_DC5_24k_rgb.yaml"),
                   ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.NORM", "BN", "MODEL.DC5_REDUCE.CHANNELS", "64",
                    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16"])
    model = build_model(cfg)
    shape = model.backbone.output_shape()["res5"]
    assert (shape.channels, shape.stride) == (64, 16)
    feats = model.backbone(torch.randn(1, 3, 64, 96))
    assert feats["res5"].shape == (1, 64, 4, 6)
    inst = Instances((64, 96), gt_boxes=Boxes(torch.tensor([[8.0, 8.0, 40.0, 50.0]])), gt_classes=torch.tensor([3]))
    from detectron2.utils.events import EventStorage

    with EventStorage():
        losses = model([{"image": torch.randint(0, 255, (3, 64, 96), dtype=torch.uint8), "instances": inst}])
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.reduce.weight.grad is not None


def test_rgb_weights_with_a_bgr_config_are_refused(tmp_path: Path) -> None:
    from transfer.convert import convert

    torch.save(build_resnet("resnet18", 8).state_dict(), tmp_path / "tv.pth")
    convert(tmp_path / "tv.pth", log=lambda *a: None, verify=False)
    cfg = _tiny_cfg("MODEL.WEIGHTS", str(tmp_path / "tv.pkl"), "INPUT.FORMAT", "BGR", "OUTPUT_DIR", str(tmp_path))
    with pytest.raises(SetupError, match="RGB"):
        prepare_weights(cfg)


# ----------------------------------------------------------------------------- trainer end to end

def _fast_opts(out: Path, iters: int) -> list[str]:
    return ["SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", "(3,)", "SOLVER.WARMUP_ITERS", "1", "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.CHECKPOINT_PERIOD", "2", "TEST.PRECISE_BN.NUM_ITER", "2", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
            "OUTPUT_DIR", str(out)]


def test_train_net_runs_a_tiny_trial_records_it_and_resumes(tiny_root: Path, tmp_path: Path) -> None:
    net = build_resnet("resnet18", 128)
    ckpt = tmp_path / "moco.pth.tar"
    torch.save({"epoch": 2, "arch": "resnet18", "suite": {"name": "moco-transfer-bench"},
                "state_dict": {f"module.encoder_q.{k}": v for k, v in net.state_dict().items()}}, ckpt)
    out = tmp_path / "trial0"
    base = ["--config-file", str(TINY), "--seed", "7", "--trial", "0", "--trials-requested", "3", "--tiny",
            "--label", "MoCo test", "MODEL.WEIGHTS", str(ckpt)]
    assert cli(base + _fast_opts(out, 4)) == 0
    rec = read_record(out / RECORD_NAME)
    assert rec["status"] == "finished" and rec["task"] == "voc_det" and rec["arch"] == "R18-C4"
    assert set(rec["metrics"]) == {"AP50", "AP", "AP75"}
    assert all(0.0 <= v <= 100.0 for v in rec["metrics"].values())
    assert rec["metrics"]["AP50"] >= rec["metrics"]["AP75"]
    assert rec["seed"] == 7 and rec["trials_requested"] == 3 and rec["tiny"] is True
    assert rec["pretrain"]["kind"] == "pretrained" and rec["pretrain"]["label"] == "MoCo test"
    assert rec["pretrain"]["method"] == "MoCo" and "this suite's checkpoint" in rec["pretrain"]["method_reason"]
    assert rec["pretrain"]["order"] is None  # run outside a sweep
    from transfer.checkpoint_io import sha256_of

    assert rec["pretrain"]["sha256"] == sha256_of(ckpt)
    assert (out / "converted" / "moco.pkl").exists() and "MAX_ITER: 4" in rec["config"]
    assert rec["timings"]["iterations_run"] == 4
    per_class = rec["raw_results"]["bbox_per_class_AP50"]
    from transfer.tasks.voc import VOC_CLASSES_USED

    assert set(per_class) == set(VOC_CLASSES_USED)  # averaged over classes with ground truth only
    assert (out / "last_checkpoint").exists() and (out / "metrics.json").exists()
    # SOLVER.KEEP_CHECKPOINTS (1): the periodic checkpoint of iteration 1 was pruned once iteration 3's was written
    assert sorted(p.name for p in out.glob("model_*.pth")) == ["model_0000003.pth", "model_final.pth"]

    # resume: continues from the last checkpoint (iteration 4) up to the new MAX_ITER
    assert cli(["--resume", *base, *_fast_opts(out, 6)]) == 0
    rec2 = read_record(out / RECORD_NAME)
    assert rec2["timings"]["resumed_from_iter"] == 4 and rec2["timings"]["iterations_run"] == 2


def test_train_net_setup_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(["--config-file", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    (tmp_path / "bad.pth").write_bytes(b"")
    assert cli(["--config-file", str(TINY), "MODEL.WEIGHTS", str(tmp_path / "bad.pth"), "OUTPUT_DIR", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "empty" in err


# ----------------------------------------------------------------------------- runner

FAKE_TRAIN_NET = '''
import json, sys
from pathlib import Path
argv = sys.argv[1:]
out = Path(argv[argv.index("OUTPUT_DIR") + 1])
seed = int(argv[argv.index("--seed") + 1])
with open(Path(sys.argv[0]).with_name("calls.jsonl"), "a") as f:
    f.write(json.dumps({"out": str(out), "resume": "--resume" in argv, "seed": seed}) + "\\n")
if (out / "CRASH").exists():
    print("train_net.py: error: RuntimeError: simulated crash"); sys.exit(1)
sys.path.insert(0, REPO)
from core.records import write_record
write_record(out, {"task": "voc_det", "arch": "R18-C4", "schedule": "tiny", "seed": seed,
             "trial": int(argv[argv.index("--trial") + 1]),
             "pretrain": {"label": argv[argv.index("--label") + 1], "kind": "random", "sha256": None},
             "status": "finished", "metrics": {"AP50": 50.0 + seed, "AP": 30.0, "AP75": 25.0},
             "trials_requested": 2, "tiny": True})
'''


def test_runner_skips_finished_resumes_interrupted_and_keeps_going(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    fake = tmp_path / "fake" / "train_net.py"
    fake.parent.mkdir()
    fake.write_text(f"REPO = {str(REPO)!r}\n" + FAKE_TRAIN_NET)
    monkeypatch.setattr(runner, "TRAIN_NET", fake)
    rows = [runner.Row("random init", "random", TINY), runner.Row("MoCo x", "moco", TINY, "w.pkl")]
    plan = runner.plan_trials(rows, 2, tmp_path / "out", "R18-C4", base_seed=10, opts=[])
    assert [t.seed for t in plan] == [10, 11, 10, 11]
    assert len({t.output for t in plan}) == 4
    # trial 1 of row 0 was interrupted (a Detectron2 checkpoint exists), trial 0 of row 1 will crash
    plan[1].output.mkdir(parents=True)
    (plan[1].output / "last_checkpoint").write_text("model_0000001.pth")
    plan[2].output.mkdir(parents=True)
    (plan[2].output / "CRASH").write_text("")
    env = runner.child_env(None)
    counts = runner.run_all(plan, trials_requested=2, env=env)
    assert counts == {"skipped": 0, "finished": 3, "failed": 1, "elsewhere": 0, "held": 0}
    calls = [json.loads(line) for line in (fake.parent / "calls.jsonl").read_text().splitlines()]
    assert [c["resume"] for c in calls] == [False, True, False, False]
    assert "simulated crash" in capsys.readouterr().out
    # second run: the finished trials are skipped, only the failed one runs again
    (plan[2].output / "CRASH").unlink()
    counts = runner.run_all(plan, trials_requested=2, env=env)
    assert counts == {"skipped": 3, "finished": 1, "failed": 0, "elsewhere": 0, "held": 0}
    assert len((fake.parent / "calls.jsonl").read_text().splitlines()) == 5
    assert runner.print_table(tmp_path / "out") == 0
    table = capsys.readouterr().out
    assert "random init" in table and "MoCo x" in table
    assert "60.5" in table  # AP50 of the fake trials: 50 + seed, seeds 10 and 11


def test_run_voc_reports_a_broken_layout_before_training(tiny_root: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    from benchmarks import run

    root = tmp_path / "datasets"
    for name in ("VOC2007", "VOC2012"):
        shutil.copytree(tiny_root / name, root / name)
    victim = sorted((root / "VOC2007" / "Annotations").glob("*.xml"))[3]
    victim.write_text("<annotation><object><name>person</name>")
    rc = run.main(["voc", "--datasets", str(root), "--rows", "random", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and victim.name in err
    assert not (tmp_path / "out").exists()


def test_run_voc_sh_help_works_from_anywhere(tmp_path: Path) -> None:
    import subprocess

    res = subprocess.run(["bash", str(REPO / "benchmarks" / "run_voc.sh"), "--help"], capture_output=True, text=True,
                         cwd=tmp_path, env={**runner.child_env(None), "VENV": str(Path(sys.executable).parents[1])})
    assert res.returncode == 0 and "--weights" in res.stdout and "--tiny" in res.stdout
