"""Protocol fidelity (issue 20): the paper-era meaning of "SyncBN", DensePose's recipe of the time, LVIS per row
kind, arithmetic precision of both stages, FAIR weights, the tiny default's seed, and the protocol's readings."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

import transfer.modeling  # noqa: F401  (the suite's config keys and heads)
from benchmarks.runner import REPO
from transfer import protocol
from transfer.config import load_cfg
from transfer.weights import InputFormat, decide_input_format

CONFIGS = REPO / "transfer" / "configs"


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# ----------------------------------------------------------------------------- norm: naiveSyncBN, and what ran

@pytest.mark.parametrize("config", ["voc/voc_R_50_C4_24k.yaml", "voc/voc_R_50_DC5_24k.yaml",
                                    "coco/coco_R_50_FPN_1x.yaml", "cityscapes/cityscapes_semseg_R_50_FCN16s_90k.yaml",
                                    "voc_semseg/voc_semseg_R_50_FCN16s_30k.yaml",
                                    "keypoints/coco_keypoints_R_50_FPN_2x.yaml"])
def test_every_family_uses_the_sync_bn_the_paper_era_ran(config: str) -> None:
    cfg = load_cfg(str(CONFIGS / config), [])
    semseg, fpn = cfg.MODEL.META_ARCHITECTURE == "SemanticSegmentor", "fpn" in cfg.MODEL.BACKBONE.NAME
    used = {"backbone": (cfg.MODEL.RESNETS.NORM, True), "fpn": (cfg.MODEL.FPN.NORM, fpn),
            "box": (cfg.MODEL.ROI_BOX_HEAD.NORM, not semseg), "mask": (cfg.MODEL.ROI_MASK_HEAD.NORM, cfg.MODEL.MASK_ON),
            "keypoint": (cfg.MODEL.ROI_KEYPOINT_HEAD.NORM, cfg.MODEL.KEYPOINT_ON),
            "semseg": (cfg.MODEL.SEM_SEG_HEAD.NORM, semseg)}
    norms = {k: v for k, (v, where) in used.items() if where and v}
    assert norms["backbone"] == "naiveSyncBN" and set(norms.values()) == {"naiveSyncBN"}, norms
    assert "02478d2e" in (CONFIGS / "protocol.yaml").read_text()  # the source of the choice is stated


def test_the_norm_class_that_ran_is_what_the_config_name_builds_today() -> None:
    from transfer.trainer import Trainer, norm_classes

    opts = ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]
    cfg = load_cfg(str(CONFIGS / "voc" / "voc_R_50_C4_24k_rgb.yaml"), opts)
    assert "NaiveSyncBatchNorm" in norm_classes(Trainer.build_model(cfg))
    cfg = load_cfg(str(CONFIGS / "voc" / "voc_R_50_C4_24k_rgb.yaml"), [*opts, "MODEL.RESNETS.NORM", "SyncBN"])
    assert "SyncBatchNorm" in norm_classes(Trainer.build_model(cfg))  # today's "SyncBN": torch's, not the naive one


def test_norm_classes_are_recorded_but_never_a_deviation() -> None:
    cfg = load_cfg(str(CONFIGS / "voc" / "voc_R_50_C4_24k_rgb.yaml"), [])
    values = protocol.fingerprint(cfg, 8, "x", extra={"norm_classes": ["NaiveSyncBatchNorm"]})["values"]
    assert values["norm_classes"] == ["NaiveSyncBatchNorm"]
    assert protocol.deviations(values, "voc_det", "R50-C4", "24k", "pretrained") == []


def test_the_protocol_states_its_readings_with_sources() -> None:
    readings = protocol.readings()
    text = " ".join(r["what"] for r in readings)
    for subject in ("4conv1fc", "Keypoint head", "Precise BN", "warm-up", "extra norm after res5"):
        assert subject in text, subject
    assert all(r.get("paper") and r.get("source") for r in readings)
    said = "\n".join(protocol.describe())  # python -m transfer.protocol
    assert "lvis_v0.5/R50-FPN/2x, supervised row: MODEL.RESNETS.NORM FrozenBN" in said and "densepose_2020" in said


def test_no_appendix_section_numbers_are_cited() -> None:
    # the appendix's section numbering could not be checked against the paper: subjects are cited instead
    files = [*CONFIGS.rglob("*.yaml"), *(REPO / "results").glob("*.py"), *(REPO / "transfer" / "tasks").glob("*.py")]
    cited = [f"{p.name}: {m.group(0)}" for p in files for m in re.finditer(r"(appendix|paper) A\.\d", p.read_text())]
    assert cited == []


def test_paper_csv_holds_each_published_number_once() -> None:
    with open(REPO / "results" / "data" / "paper_tables.csv") as f:
        keys = Counter(tuple(r[:7]) for r in list(csv.reader(f))[1:])
    assert [k for k, n in keys.items() if n > 1] == []


# ----------------------------------------------------------------------------- DensePose: the recipe of the time

def test_densepose_config_is_the_paper_era_recipe_and_the_newer_one_a_named_variant() -> None:
    cfg = _yaml(CONFIGS / "densepose" / "densepose_R_50_FPN_s1x.yaml")
    head = cfg["MODEL"]["ROI_DENSEPOSE_HEAD"]
    assert (head["NUM_COARSE_SEGM_CHANNELS"], head["POOLER_RESOLUTION"], head["HEATMAP_SIZE"]) == (15, 14, 56)
    assert (head["INDEX_WEIGHTS"], head["PART_WEIGHTS"], head["POINT_REGRESSION_WEIGHTS"]) == (2.0, 0.3, 0.1)
    assert head["DECODER_ON"] is False and cfg["SOLVER"]["BASE_LR"] == 0.002
    paper = protocol.paper_protocol("coco_densepose", "R50-FPN", "s1x")
    for key, value in head.items():  # the protocol entry says the same
        if f"MODEL.ROI_DENSEPOSE_HEAD.{key}" in protocol.DENSEPOSE_HEAD_KEYS:
            assert paper[f"MODEL.ROI_DENSEPOSE_HEAD.{key}"] == value, key
    assert paper["SOLVER.BASE_LR"] == 0.002
    new = protocol.variant("densepose_2020")["values"]
    assert new["SOLVER.BASE_LR"] == 0.01 and new["MODEL.ROI_DENSEPOSE_HEAD.DECODER_ON"] is True


def test_densepose_fingerprint_holds_the_head_settings_that_differ_between_recipes() -> None:
    cfg = {"MODEL": {"META_ARCHITECTURE": "GeneralizedRCNN", "BACKBONE": {"NAME": "build_resnet_fpn_backbone"},
                     "DENSEPOSE_ON": True, "ROI_DENSEPOSE_HEAD": {"NAME": "DensePoseV1ConvXHead",
                                                                  "NUM_COARSE_SEGM_CHANNELS": 2, "DECODER_ON": True}}}
    values = protocol.fingerprint(cfg, 8, "x")["values"]
    assert values["MODEL.ROI_DENSEPOSE_HEAD.NUM_COARSE_SEGM_CHANNELS"] == 2
    assert values["MODEL.ROI_DENSEPOSE_HEAD.DECODER_ON"] is True
    devs = protocol.deviations(values, "coco_densepose", "R50-FPN", "s1x", "supervised")
    assert "MODEL.ROI_DENSEPOSE_HEAD.NUM_COARSE_SEGM_CHANNELS 2 (paper 15)" in devs


def test_densepose_runner_recipe_2020_overrides_and_gets_its_own_folder() -> None:
    from benchmarks import run

    _, paper = run.parse("densepose", [])
    _, new = run.parse("densepose", ["--recipe", "2020"])
    assert paper.opts == () and paper.run_dir == "R50-FPN-s1x"
    assert new.run_dir == "R50-FPN-s1x-recipe2020" and new.tiny_run_dir.endswith("-recipe2020")
    pairs = dict(zip(new.opts[::2], new.opts[1::2]))
    assert pairs["SOLVER.BASE_LR"] == "0.01" and pairs["MODEL.ROI_DENSEPOSE_HEAD.NUM_COARSE_SEGM_CHANNELS"] == "2"


# ----------------------------------------------------------------------------- LVIS: protocol per row kind

def test_lvis_protocol_is_per_row_kind() -> None:
    cfg = load_cfg(str(CONFIGS / "lvis" / "lvis_v0.5_R_50_FPN_2x_frozenbn.yaml"), [])
    frozen = protocol.fingerprint(cfg, 8, "x")["values"]
    assert protocol.deviations(frozen, "lvis_v0.5", "R50-FPN", "2x", "supervised") == []  # the paper's supervised row
    rgb = load_cfg(str(CONFIGS / "lvis" / "lvis_v0.5_R_50_FPN_2x_frozenbn_rgb.yaml"), [])
    assert protocol.deviations(protocol.fingerprint(rgb, 8, "x")["values"], "lvis_v0.5", "R50-FPN", "2x", "pretrained") == [
        "MODEL.RESNETS.NORM FrozenBN (paper naiveSyncBN)"]  # its MoCo rows tuned BN
    tuned = protocol.fingerprint(load_cfg(str(CONFIGS / "lvis" / "lvis_v0.5_R_50_FPN_2x.yaml"), []), 8, "x")["values"]
    assert protocol.deviations(tuned, "lvis_v0.5", "R50-FPN", "2x", "supervised") == [
        "MODEL.RESNETS.NORM naiveSyncBN (paper FrozenBN)"]


# ----------------------------------------------------------------------------- precision of both stages

def _cfg(*opts: str):
    """The VOC C4 config as a GPU run would have it (load_cfg puts MODEL.DEVICE on the CPU on this machine)."""
    cfg = load_cfg(str(CONFIGS / "voc" / "voc_R_50_C4_24k_rgb.yaml"), list(opts))
    if "MODEL.DEVICE" not in opts:
        cfg.MODEL.DEVICE = "cuda"
    return cfg


def test_finetuning_precision_is_explicit_and_recorded() -> None:
    assert protocol.finetune_precision(_cfg()) == "fp32"
    assert protocol.finetune_precision(_cfg("SOLVER.TF32", "True")) == "tf32"
    assert protocol.finetune_precision(_cfg("SOLVER.TF32", "True", "MODEL.DEVICE", "cpu")) == "fp32"  # no TF32 on CPUs
    assert protocol.finetune_precision(_cfg("SOLVER.AMP.ENABLED", "True")) == "amp-fp16"
    values = protocol.fingerprint(_cfg("SOLVER.TF32", "True"), 8, "x")["values"]
    assert values["precision"] == "tf32"
    assert protocol.deviations(values, "voc_det", "R50-C4", "24k", "pretrained") == ["precision tf32 (paper fp32)"]
    assert protocol.deviations(protocol.fingerprint(_cfg(), 8, "x")["values"], "voc_det", "R50-C4", "24k", "pretrained") == []


def test_trainer_turns_tf32_off_unless_asked() -> None:
    from transfer.trainer import apply_precision

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True  # PyTorch's conv default
        apply_precision(_cfg())
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        apply_precision(_cfg("SOLVER.TF32", "True"))
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_runner_tf32_flag(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from benchmarks import run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as e:
        run.parse("voc", ["--tf32"])
    assert e.value.code == 2 and "--tf32 (TF32 arithmetic) needs a CUDA GPU" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    args, _ = run.parse("voc", ["--tf32"])
    assert args.opts[-2:] == ["SOLVER.TF32", "True"]


def test_rows_pretrained_or_finetuned_off_the_papers_arithmetic_are_footnoted() -> None:
    from results.render_md import render_markdown
    from results.tables import build_tables

    def record(label: str, trial: int, pre_precision: dict | None, opts: tuple = ()) -> dict:
        return {"schema": "moco-transfer-bench/trial-record/1", "task": "voc_det", "arch": "R50-C4", "schedule": "24k",
                "pretrain": {"label": label, "kind": "moco", "sha256": label.encode().hex().ljust(64, "0")[:64],
                             "precision": pre_precision},
                "trial": trial, "seed": trial, "status": "finished", "metrics": {"AP50": 80.0 + trial, "AP": 50.0,
                                                                                   "AP75": 55.0},
                "trials_requested": 2, "fingerprint": protocol.fingerprint(_cfg(*opts), 8, "0.7.2"),
                "_path": f"/x/{label}/{trial}/r.json"}

    fast = {"mode": "fast", "autocast": "bf16", "tf32": True, "paper_arithmetic": False}
    paper = {"mode": "paper", "autocast": None, "tf32": False, "paper_arithmetic": True}
    recs = [record("A", t, paper) for t in range(2)] + [record("B", t, fast) for t in range(2)] + \
           [record("C", t, None, ("SOLVER.TF32", "True")) for t in range(2)]
    (table,) = build_tables(recs)
    rows = {r.label: r for r in table.rows}
    assert not rows["A"].deviations and not rows["A"].display.endswith("†")
    assert rows["B"].deviations == ["pretraining precision bf16 autocast + TF32 (paper fp32)"]
    assert rows["C"].deviations == ["precision tf32 (paper fp32)"]
    text = render_markdown([table])
    assert "pretraining precision bf16 autocast + TF32 (paper fp32)" in text and "precision tf32 (paper fp32)" in text


# ----------------------------------------------------------------------------- FAIR weights

FAIR = "detectron2://ImageNetPretrained/FAIR/R-50-GN.pkl"


def test_fair_weights_get_their_std_and_stride() -> None:
    from benchmarks.common import make_row
    from transfer.trainer import input_format_mismatch

    fmt = decide_input_format(FAIR)
    assert (fmt.format, fmt.style) == ("BGR", "fair")
    assert decide_input_format(FAIR, "BGR").style == "fair"  # the runner passes --input-format: the style stays
    assert decide_input_format("detectron2://ImageNetPretrained/MSRA/R-50.pkl").style == ""
    base = CONFIGS / "voc" / "voc_R_50_C4_24k.yaml"
    wrong = input_format_mismatch(load_cfg(str(base), []), fmt, None)
    assert any(w.startswith("MODEL.PIXEL_STD") for w in wrong) and any("STRIDE_IN_1X1" in w for w in wrong)
    row = make_row("supervised IN-1M (FAIR)", "supervised", base, FAIR)
    assert row.config == base and dict(zip(row.opts[::2], row.opts[1::2])) == {
        "MODEL.PIXEL_STD": "[57.375,57.12,58.395]", "MODEL.RESNETS.STRIDE_IN_1X1": "False"}
    assert input_format_mismatch(load_cfg(str(base), list(row.opts)), fmt, None) == []
    msra = make_row("supervised IN-1M", "supervised", base, "detectron2://ImageNetPretrained/MSRA/R-50.pkl")
    assert msra.opts == ()


def test_the_input_check_compares_pixel_std() -> None:
    from transfer.trainer import input_format_mismatch

    cfg = load_cfg(str(CONFIGS / "voc" / "voc_R_50_C4_24k_rgb.yaml"), ["MODEL.PIXEL_STD", "[1.0,1.0,1.0]"])
    assert input_format_mismatch(cfg, InputFormat("RGB", "test"), None) == ["MODEL.PIXEL_STD [1.0, 1.0, 1.0]"]


# ----------------------------------------------------------------------------- the tiny default's seed

def test_tiny_pretraining_is_reused_only_for_its_own_seed(tiny_root: Path, tmp_path: Path) -> None:
    from benchmarks import run
    from benchmarks.common import tiny_rows

    def weights(seed: int) -> dict[str, str]:
        args, spec = run.parse("voc", ["--tiny", "--seed", str(seed)])
        rows = tiny_rows(args, tiny_root, tmp_path, spec.tiny_config, "t", "run_voc.sh", dry_run=True)
        return {r.kind: r.weights for r in rows if r.weights}

    zero, three = weights(0), weights(3)
    assert set(zero) == {"supervised", "pretrained"}
    assert all(zero[k] != three[k] for k in zero) and all("seed3" in w for w in three.values())


# ----------------------------------------------------------------------------- footnotes of issue #30

def _fp_record(task: str, arch: str, schedule: str, label: str, kind: str, trial: int, values: dict,
               method: str | None = None) -> dict:
    return {"schema": "moco-transfer-bench/trial-record/1", "task": task, "arch": arch, "schedule": schedule,
            "pretrain": {"label": label, "kind": kind, "sha256": label.encode().hex().ljust(64, "0")[:64],
                         "method": method},
            "trial": trial, "seed": trial, "status": "finished", "metrics": {"AP50": 80.0 + trial, "AP": 50.0},
            "trials_requested": 2, "fingerprint": {"hash": "h", "values": values}, "_path": f"/x/{label}/{trial}/r.json"}


def _notes(recs: list[dict]) -> tuple:
    from results.render_md import render_markdown
    from results.tables import build_tables

    (table,) = build_tables(recs)
    return table, render_markdown([table])


def test_naive_syncbn_on_another_world_size_is_a_deviation() -> None:
    four = protocol.fingerprint(_cfg(), 4, "0.7.2")["values"]
    eight = protocol.fingerprint(_cfg(), 8, "0.7.2")["values"]
    table, text = _notes([_fp_record("voc_det", "R50-C4", "24k", "A", "pretrained", t, four) for t in range(2)]
                         + [_fp_record("voc_det", "R50-C4", "24k", "B", "pretrained", t, eight) for t in range(2)])
    rows = {r.label: r for r in table.rows}
    assert rows["A"].deviations == ["world size 4 with naiveSyncBN (paper 8 GPUs: BN statistics pooled over 4 GPU(s)' "
                                    "images instead of 8, and per-GPU padding differs)"]
    assert rows["B"].deviations == [] and "world size 4 with naiveSyncBN" in text
    assert protocol.world_size_deviation({**four, "MODEL.RESNETS.NORM": "FrozenBN"}) is None  # no naiveSyncBN: no note


def test_every_densepose_row_says_the_code_changed_under_the_recipe() -> None:
    recs = [_fp_record("coco_densepose", "R50-FPN", "s1x", label, kind, t, {})
            for label, kind in (("supervised IN-1M", "supervised"), ("MoCo IN-1M", "pretrained")) for t in range(2)]
    table, text = _notes(recs)
    note = next(n for n in table.notes if "5ac96b29" in n)
    assert note.startswith("Every row (supervised IN-1M †, MoCo IN-1M †):")  # † : their fingerprints differ too
    assert "2020-01-10" in note and "49.8 dp AP before" in note and "52.1 after retraining" in note
    assert "torso" in note and "no config restores it" in note
    doc = (REPO / "transfer" / "configs" / "protocol.yaml").read_text()
    assert "52.1 for the legacy recipe\"" not in doc and "49.8 before it" in doc


def test_tables_that_depend_on_unconfirmed_readings_mark_them() -> None:
    kp, kp_text = _notes([_fp_record("coco_keypoints", "R50-FPN", "2x", "MoCo IN-1M", "pretrained", t, {})
                          for t in range(2)])
    marked = [n for n in kp.notes if n.startswith("‡ Every row: depends on a reading no source confirms")]
    assert len(marked) == 3 and any("Keypoint head" in n for n in marked) and any("4conv1fc" in n for n in marked)
    voc, _ = _notes([_fp_record("voc_det", "R50-C4", "24k", "MoCo IN-1M", "pretrained", t, {}) for t in range(2)])
    assert not [n for n in voc.notes if "no source confirms" in n]  # C4 depends on none of them
    city, _ = _notes([_fp_record("cityscapes_instance", "R50-FPN", "d2-cityscapes", "MoCo", "pretrained", t, {})
                      for t in range(2)])
    assert [n for n in city.notes if "4conv1fc" in n]
    lvis_recs = [_fp_record("lvis_v0.5", "R50-FPN", "2x", label, kind, t, {})
                 for label, kind in (("supervised IN-1M", "supervised"), ("MoCo IN-1M", "pretrained")) for t in range(2)]
    lvis, _ = _notes(lvis_recs)
    frozen = [n for n in lvis.notes if "BN frozen" in n]
    assert len(frozen) == 1 and frozen[0].startswith("‡ supervised IN-1M †: depends on a reading no source confirms")
    only_moco, _ = _notes(lvis_recs[2:])
    assert not [n for n in only_moco.notes if "BN frozen" in n]


def test_legend_method_label_and_syncbn_note() -> None:
    table, text = _notes([_fp_record("voc_det", "R50-C4", "24k", label, kind, t, {}, method)
                          for label, kind, method in (("supervised IN-1M", "supervised", None),
                                                      ("tv R-50", "pretrained", "torchvision supervised"))
                          for t in range(2)])
    assert "(this suite's addition: the paper marks gains only)" in table.legend()
    assert "| tv R-50 † | supervised, or re-saved with its fc |" in text
    said = "\n".join(protocol.describe())
    assert "02478d2e (which made it torch's SyncBatchNorm, for PyTorch >= 1.6 only)" in said
    assert "PyTorch >= 1.6 only" in (REPO / "transfer" / "configs" / "protocol.yaml").read_text()
    for name in ("lvis_v0.5_R_50_FPN_2x.yaml", "lvis_v0.5_R_50_FPN_2x_frozenbn.yaml"):
        comment = (REPO / "transfer" / "configs" / "lvis" / name).read_text()
        assert "--supervised-frozen-bn" not in comment and "default" in comment
