"""ViTDet (``--arch ViTDet``): the registered backbone, a ViT ``.pkl`` in the converter's format loaded in full,
the layer-decayed AdamW, the LSJ mapper, a short CPU fine-tuning with box and mask AP, the runner's dry run (the ViT
size read from the file) and the published rows beside a ViTDet run."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.runner import REPO

TINY = REPO / "transfer" / "configs" / "tiny" / "coco_ViTDet_tiny.yaml"
ARCH = {"type": "vit", "embed_dim": 64, "depth": 4, "num_heads": 2, "patch_size": 16, "pretrain_img_size": 64,
        "pretrain_use_cls_token": True}


def write_vit_pkl(path: Path, arch: dict = ARCH) -> Path:
    """A ``.pkl`` as the ViT converter writes it: ``backbone.net.<D2 ViT names>``, no matching heuristics, the
    ViT's size in the provenance; tensors from a freshly built Detectron2 ViT (no relative position biases, as a
    MoCo v3 / MAE ViT has none)."""
    from detectron2.modeling.backbone.vit import ViT

    torch.manual_seed(0)
    net = ViT(img_size=arch["pretrain_img_size"], patch_size=arch["patch_size"], embed_dim=arch["embed_dim"],
              depth=arch["depth"], num_heads=arch["num_heads"], pretrain_img_size=arch["pretrain_img_size"],
              pretrain_use_cls_token=arch["pretrain_use_cls_token"], use_rel_pos=False)
    model = {f"backbone.net.{k}": v.numpy() for k, v in net.state_dict().items()}
    prov = {"format": "vit", "arch": dict(arch), "input_format": "RGB", "method": "MoCo v3", "source": "test"}
    path.write_bytes(pickle.dumps({"model": model, "__author__": "transfer/vit_convert.py",
                                   "matching_heuristics": False, "provenance": prov}))
    return path


def _cfg(opts: list[str] = ()):
    from transfer.config import load_cfg

    return load_cfg(str(TINY), list(opts))


def test_backbone_builds_from_the_tiny_config_with_the_vit_and_pyramid_keys() -> None:
    from detectron2.modeling import build_backbone
    from detectron2.modeling.backbone.vit import SimpleFeaturePyramid, ViT

    cfg = _cfg()
    backbone = build_backbone(cfg)
    assert isinstance(backbone, SimpleFeaturePyramid) and isinstance(backbone.net, ViT)
    keys = set(backbone.state_dict())
    pyramid = {k for k in keys if not k.startswith("net.")}
    assert pyramid and all(k.startswith(("simfp_2.", "simfp_3.", "simfp_4.", "simfp_5.")) for k in pyramid)
    assert {k for k in keys if k.startswith("net.")} >= {"net.pos_embed", "net.patch_embed.proj.weight",
                                                          "net.blocks.3.mlp.fc2.bias", "net.blocks.1.attn.rel_pos_h"}
    assert list(backbone.output_shape()) == ["p2", "p3", "p4", "p5", "p6"]
    assert [backbone.net.blocks[i].window_size for i in range(4)] == [4, 0, 4, 0]  # global blocks 1 and 3
    out = backbone(torch.zeros(1, 3, 128, 128))
    assert out["p2"].shape == (1, 64, 32, 32) and out["p6"].shape == (1, 64, 2, 2)


def test_a_converted_vit_pkl_loads_every_backbone_tensor(tmp_path: Path) -> None:
    from detectron2.modeling import build_model

    from transfer.checkpointer import SuiteCheckpointer

    pkl = write_vit_pkl(tmp_path / "tiny_vit.pkl")
    model = build_model(_cfg())
    ckpt = SuiteCheckpointer(model)
    ckpt.load(str(pkl))
    report = ckpt.last_load_report
    n_file = len(pickle.loads(pkl.read_bytes())["model"])
    assert report.ok and report.backbone_total == report.backbone_loaded == n_file, report.summary()
    # the relative position biases are new (zero-initialised, ViTDet's), the pyramid and heads are new layers
    assert "backbone.simfp_2" in report.expected_missing and not report.unexpected
    loaded = dict(model.named_parameters())["backbone.net.blocks.2.attn.qkv.weight"]
    assert np.allclose(loaded.detach().numpy(), pickle.loads(pkl.read_bytes())["model"]
                       ["backbone.net.blocks.2.attn.qkv.weight"])
    # a truncated file is refused by the same report
    data = pickle.loads(pkl.read_bytes())
    del data["model"]["backbone.net.blocks.3.mlp.fc1.weight"]
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(data))
    ckpt.load(str(tmp_path / "cut.pkl"))
    assert not ckpt.last_load_report.ok and "backbone.net.blocks.3.mlp.fc1.weight" in ckpt.last_load_report.backbone_missing


def test_the_checkpoint_size_sets_the_vit() -> None:
    from transfer.vitdet import apply_checkpoint_size, size_overrides

    cfg = _cfg()
    arch = {**ARCH, "embed_dim": 384, "depth": 12, "num_heads": 12, "pretrain_img_size": 224}
    changed = apply_checkpoint_size(cfg, {"arch": arch})
    assert (cfg.MODEL.VIT.EMBED_DIM, cfg.MODEL.VIT.DEPTH, cfg.MODEL.VIT.NUM_HEADS) == (384, 12, 12) and changed
    assert list(cfg.MODEL.VIT.WINDOW_BLOCK_INDEXES) == [0, 1, 3, 4, 6, 7, 9, 10]  # D2's global blocks 2, 5, 8, 11
    assert size_overrides({"arch": {"type": "resnet"}}) == () and size_overrides(None) == ()


SIZE_RECIPES = {  # ViTDet Table 11 and Detectron2's mask_rcnn_vitdet_{l_100ep,h_75ep}.py, per row kind
    "L": {"embed_dim": 1024, "depth": 24, "num_heads": 16,
          "pretrained": {"MODEL.VIT.DROP_PATH_RATE": 0.4, "SOLVER.LAYER_DECAY": 0.8, "SOLVER.MAX_ITER": 184375},
          "supervised": {"MODEL.VIT.DROP_PATH_RATE": 0.4, "SOLVER.LAYER_DECAY": 1.0, "SOLVER.MAX_ITER": 92187},
          "random": {"MODEL.VIT.DROP_PATH_RATE": 0.4, "SOLVER.LAYER_DECAY": 1.0, "SOLVER.MAX_ITER": 368750,
                     "SOLVER.BASE_LR": 0.00016}},
    "H": {"embed_dim": 1280, "depth": 32, "num_heads": 16,
          "pretrained": {"MODEL.VIT.DROP_PATH_RATE": 0.5, "SOLVER.LAYER_DECAY": 0.9, "SOLVER.MAX_ITER": 138281,
                         "SOLVER.WEIGHT_DECAY_NORM": 0.1, "SOLVER.POS_EMBED_NO_DECAY": False}},
}


@pytest.mark.parametrize("size,kind", [("L", "pretrained"), ("L", "supervised"), ("L", "random"), ("H", "pretrained")])
def test_a_larger_vit_gets_that_sizes_vitdet_recipe_for_its_row_kind(size: str, kind: str) -> None:
    """A ViT-L (or H) file on the ViT-B config of its row kind: the size from the weights and ViTDet's recipe of that
    size (drop path, layer decay, epochs), so the run matches that size's protocol entry and not ViT-B's."""
    from transfer.config import load_cfg
    from transfer.protocol import deviations, fingerprint
    from transfer.tasks.coco import VITDET_CONFIGS
    from transfer.vitdet import apply_checkpoint_size, arch_name

    want = SIZE_RECIPES[size]
    arch = {"type": "vit", "embed_dim": want["embed_dim"], "depth": want["depth"], "num_heads": want["num_heads"],
            "patch_size": 16, "pretrain_img_size": 224}
    cfg = load_cfg(str(REPO / "transfer" / "configs" / "coco" / VITDET_CONFIGS[kind]), [])
    values = fingerprint(cfg, 8, "x")["values"]
    assert deviations(values, "coco_maskrcnn", f"ViTDet-{size}", "table11", kind)  # ViT-B's values are not L's
    changed = apply_checkpoint_size(cfg, {"arch": arch}, kind)
    assert arch_name(cfg) == f"ViTDet-{size}"
    for key, value in want[kind].items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == value, key
    assert any("DROP_PATH_RATE" in line and f"ViTDet's ViTDet-{size} recipe" in line for line in changed), changed
    assert deviations(fingerprint(cfg, 8, "x")["values"], "coco_maskrcnn", f"ViTDet-{size}", "table11", kind) == []
    glob = [i for i in range(want["depth"]) if i not in cfg.MODEL.VIT.WINDOW_BLOCK_INDEXES]
    assert glob == [want["depth"] * q // 4 - 1 for q in (1, 2, 3, 4)]


def test_the_command_line_wins_over_a_sizes_recipe_and_vit_s_is_checked_against_the_reading() -> None:
    from transfer.config import load_cfg
    from transfer.protocol import deviations, fingerprint, unconfirmed_readings
    from transfer.vitdet import apply_checkpoint_size, size_overrides

    arch = {"type": "vit", "embed_dim": 1024, "depth": 24, "num_heads": 16}
    cfg = load_cfg(str(REPO / "transfer" / "configs" / "coco" / "coco_ViTDet_B_300ep_random.yaml"),
                   ["SOLVER.MAX_ITER", "40"])
    apply_checkpoint_size(cfg, {"arch": arch}, "random", given=["SOLVER.MAX_ITER"])
    assert cfg.SOLVER.MAX_ITER == 40 and cfg.MODEL.VIT.DROP_PATH_RATE == 0.4  # the rest of L's recipe applies
    # ViT-S (DeiT-S: 6 heads): ViT-B's recipe with ViT-S's width; the heads come from the weights, not compared
    s_arch = {"type": "vit", "embed_dim": 384, "depth": 12, "num_heads": 6}
    opts = size_overrides({"arch": s_arch}, "pretrained")
    assert dict(zip(opts[::2], opts[1::2]))["MODEL.VIT.NUM_HEADS"] == "6" and "SOLVER.LAYER_DECAY" not in opts
    cfg = load_cfg(str(REPO / "transfer" / "configs" / "coco" / "coco_ViTDet_B_100ep.yaml"), list(opts))
    values = fingerprint(cfg, 8, "x")["values"]
    assert deviations(values, "coco_maskrcnn", "ViTDet-S", "table11", "pretrained") == []
    assert deviations({**values, "MODEL.VIT.DROP_PATH_RATE": 0.3}, "coco_maskrcnn", "ViTDet-S", "table11",
                      "pretrained") == ["MODEL.VIT.DROP_PATH_RATE 0.3 (paper 0.1)"]
    (only,) = unconfirmed_readings("coco_maskrcnn", "ViTDet-S", {"pretrained"})
    assert only["what"].startswith("ViTDet with a ViT-S")


def test_runner_rows_of_a_vit_l_file_get_each_kinds_recipe(tmp_path: Path) -> None:
    """``rows_sized``: the pretrained, supervised and random rows of a sweep whose pretrained file is a ViT-L each
    get ViT-L's recipe for their kind; sizing again (the preflight) replaces, never stacks."""
    from transfer.tasks.coco import VITDET_CONFIGS
    from transfer.vitdet import rows_sized

    big = {"type": "vit", "embed_dim": 1024, "depth": 24, "num_heads": 16, "patch_size": 16, "pretrain_img_size": 224}
    pkl = tmp_path / "vit_l.pkl"
    pkl.write_bytes(pickle.dumps({"model": {}, "__author__": "transfer/vit_convert.py", "matching_heuristics": False,
                                  "provenance": {"format": "vit", "arch": big, "method": "MAE"}}))
    rows = [_row("pretrained", str(pkl)), _row("supervised", "sup.pth"), _row("random", "")]
    for row in rows:
        row.config = REPO / "transfer" / "configs" / "coco" / VITDET_CONFIGS[row.kind]
        row.opts = ("INPUT.FORMAT", "RGB")
    for _ in range(2):
        rows_sized(rows)
    opts = [dict(zip(r.opts[::2], r.opts[1::2])) for r in rows]
    assert [o["MODEL.VIT.EMBED_DIM"] for o in opts] == ["1024"] * 3
    assert [o.get("SOLVER.LAYER_DECAY") for o in opts] == ["0.8", None, None]  # B's configs say 1.0 for these two
    assert [o.get("SOLVER.MAX_ITER") for o in opts] == [None, None, "368750"]  # random init: 200 epochs for L
    assert all(o["INPUT.FORMAT"] == "RGB" for o in opts) and all(len(r.opts) == len(set(r.opts[::2])) * 2 for r in rows)


def test_vit_h_recipe_decays_norms_and_pos_embed() -> None:
    from detectron2.modeling import build_model

    from transfer.trainer import Trainer

    cfg = _cfg(["SOLVER.WEIGHT_DECAY", "0.1", "SOLVER.WEIGHT_DECAY_NORM", "0.1", "SOLVER.POS_EMBED_NO_DECAY", "False"])
    model = build_model(cfg)
    group = {id(p): g for g in Trainer.build_optimizer(cfg, model).param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert group[id(params["backbone.net.pos_embed"])]["weight_decay"] == pytest.approx(0.1)
    assert group[id(params["backbone.net.blocks.1.norm1.weight"])]["weight_decay"] == pytest.approx(0.1)


def test_adamw_has_layer_decayed_lr_and_no_decay_on_norms_and_pos_embed() -> None:
    from detectron2.modeling import build_model

    from transfer.trainer import Trainer

    cfg = _cfg(["SOLVER.LAYER_DECAY", "0.7", "SOLVER.BASE_LR", "0.001", "SOLVER.WEIGHT_DECAY", "0.1"])
    model = build_model(cfg)
    opt = Trainer.build_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.999)
    group = {id(p): g for g in opt.param_groups for p in g["params"]}
    params = dict(model.named_parameters())

    def lr(name: str) -> float:
        return group[id(params[name])]["lr"]

    def wd(name: str) -> float:
        return group[id(params[name])]["weight_decay"]

    depth = 4  # layer ids: pos/patch embed 0, block i -> i + 1, the rest depth + 1; lr x 0.7 ** (depth + 1 - id)
    assert lr("backbone.net.blocks.0.attn.qkv.weight") == pytest.approx(1e-3 * 0.7 ** 4)
    assert lr("backbone.net.blocks.3.attn.qkv.weight") == pytest.approx(1e-3 * 0.7 ** 1)
    assert lr("backbone.net.patch_embed.proj.weight") == pytest.approx(1e-3 * 0.7 ** 5)
    assert lr("roi_heads.box_predictor.cls_score.weight") == pytest.approx(1e-3)
    assert lr("backbone.simfp_4.0.weight") == pytest.approx(1e-3)
    assert depth == cfg.MODEL.VIT.DEPTH
    assert wd("backbone.net.pos_embed") == 0.0 and wd("backbone.net.blocks.1.norm1.weight") == 0.0
    assert wd("backbone.net.blocks.1.attn.qkv.weight") == pytest.approx(0.1)
    assert wd("roi_heads.box_head.fc1.weight") == pytest.approx(0.1)


def test_lsj_mapper_gives_the_tiny_square(tiny_root: Path) -> None:
    from detectron2.data import DatasetCatalog

    from transfer.vitdet import lsj_mapper

    cfg = _cfg()
    mapper = lsj_mapper(cfg)
    sizes = set()
    np.random.seed(0)  # ResizeScale draws its scale from numpy's global generator: the same draws in any test order
    # images with annotations only, as the training loader takes them (DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    for d in [d for d in DatasetCatalog.get("coco_2017_train") if d["annotations"]][:20]:
        out = mapper(d)
        sizes.add(tuple(out["image"].shape[1:]))
        assert out["image"].shape[1] <= 128 and out["image"].shape[2] <= 128
    # ResizeScale then a 128 crop without padding: scaled images at least 128 on both sides come out 128x128
    assert (128, 128) in sizes


def test_tiny_vitdet_trains_on_cpu_and_evaluates_box_and_mask_ap(tiny_root: Path, tmp_path: Path) -> None:
    from transfer.tasks import paper_metrics
    from transfer.trainer import Trainer

    pkl = write_vit_pkl(tmp_path / "tiny_vit.pkl")
    cfg = _cfg(["MODEL.WEIGHTS", str(pkl), "SOLVER.MAX_ITER", "4", "SOLVER.STEPS", "(3,)", "SOLVER.WARMUP_ITERS",
                "1", "OUTPUT_DIR", str(tmp_path / "out"), "DATASETS.TEST", "()"])
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    assert trainer.checkpointer.last_load_report.ok
    trainer.train()
    assert trainer.iter == 4
    cfg.defrost()
    cfg.DATASETS.TEST = ("coco_2017_val",)
    results = Trainer.test(cfg, trainer.model)
    metrics = paper_metrics("coco_maskrcnn", results)
    assert {"APbb", "APmk"} <= set(metrics) and np.isfinite([metrics["APbb"], metrics["APmk"]]).all()


def test_runner_dry_run_plans_the_vit_size_from_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from benchmarks import run

    pkl = write_vit_pkl(tmp_path / "tiny_vit.pkl", {**ARCH, "num_heads": 4})
    rc = run.main(["coco", "--arch", "ViTDet", "--weights", str(pkl), "--dry-run", "--tiny",
                   "--output", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "MODEL.VIT.NUM_HEADS 4" in out and "MODEL.VIT.EMBED_DIM 64" in out, out
    args, spec = run.parse("coco", ["--arch", "ViTDet", "--weights", str(pkl)])
    assert spec.requires is not None and "--supervised-weights" in spec.requires()  # no default supervised ViT
    args, spec = run.parse("coco", ["--arch", "ViTDet", "--rows", "pretrained,random", "--weights", str(pkl)])
    assert spec.requires is None
    rows = [_row("pretrained", str(pkl)), _row("random", ""), _row("supervised", str(pkl))]
    spec.adjust_rows(rows, False)
    assert [r.config.name for r in rows] == ["coco_ViTDet_B_100ep.yaml", "coco_ViTDet_B_300ep_random.yaml",
                                             "coco_ViTDet_B_50ep_supervised.yaml"]
    assert all("MODEL.VIT.NUM_HEADS" in r.opts for r in rows)  # random init takes the pretrained row's size


def test_a_dry_run_sizes_the_vit_of_a_checkpoint_not_converted_yet(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    """A MoCo v3 ``.pth`` (converted only for the dry run's check) builds a detector of its own size and loads every
    backbone tensor; before, the check built the config's size and skipped every tensor as shape-mismatched."""
    from test_convert_vit import moco_v3

    from benchmarks import run

    pth, _, _ = moco_v3(tmp_path)  # 48-dim, 2 blocks, patch 16, 12 heads (vit_small in its arch)
    rc = run.main(["coco", "--arch", "ViTDet", "--weights", str(pth), "--dry-run", "--tiny", "--rows",
                   "pretrained,random", "--output", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "MODEL.VIT.EMBED_DIM 48" in out and "MODEL.VIT.DEPTH 2" in out, out
    assert "backbone 27/27 tensors loaded, 0 missing, 0 shape-mismatched" in out, out  # 3 + 2 blocks x 12
    assert "method   MoCo v3" in out


def test_a_dry_run_plans_a_transformers_vit_from_its_safetensors_and_config(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """A Hugging Face ``ViTModel`` folder (model.safetensors + config.json) is one ``--weights`` away: the heads from
    config.json, every backbone tensor loaded."""
    from test_convert_vit import hf_vit

    from benchmarks import run

    st, _, _ = hf_vit(tmp_path)
    rc = run.main(["coco", "--arch", "ViTDet", "--weights", str(st), "--dry-run", "--tiny", "--rows", "pretrained",
                   "--output", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "MODEL.VIT.NUM_HEADS 4" in out and "MODEL.VIT.EMBED_DIM 48" in out, out
    assert "backbone 27/27 tensors loaded, 0 missing, 0 shape-mismatched" in out, out


def _row(kind: str, weights: str):
    from benchmarks.plan import Row

    return Row(kind, kind, Path("x.yaml"), weights)


def test_paper_rows_for_vitdet_appear_beside_a_vitdet_run() -> None:
    from results.paper import paper_rows
    rows = paper_rows("coco_maskrcnn", "ViTDet-B", "table11")
    labels = {r["label"] for r in rows}
    assert any(r["kind"] == "random" for r in rows) and any(r["kind"] == "supervised" for r in rows)
    mae = [r for r in rows if "MAE" in r["label"] and r["table"] == "Table 5"]
    assert mae and mae[0]["metrics"] == {"APbb": 51.6, "APmk": 45.9}
    assert not any("Li21" in r["source"] for r in rows), labels  # Li et al. 2021 is another protocol: never pooled
    assert paper_rows("coco_maskrcnn", "ViT-B (Li21 BN-FPN)", "li21")  # kept, under its own protocol


def test_paper_rows_show_with_a_vitdet_record(tmp_path: Path) -> None:
    from results.tables import build_tables

    rec = {"task": "coco_maskrcnn", "arch": "ViTDet-B", "schedule": "table11", "tiny": False, "status": "finished",
           "trial": 0, "seed": 0, "metrics": {"APbb": 50.0, "APmk": 44.0},
           "pretrain": {"label": "MoCo v3", "kind": "pretrained", "method": "MoCo v3", "order": 0}}
    tables = build_tables([rec], with_paper=True)
    labels = [r.label for t in tables for r in t.rows]
    assert "MoCo v3" in labels and any("MAE" in label for label in labels), labels
    (t,) = tables  # the published rows' method is the weights' (MAE), not the paper's name
    assert {r.method for r in t.rows if not r.measured and r.kind == "pretrained"} == {"MAE"}
    assert "(layout of ViTDet Table 4)" in t.title
    assert json.dumps(labels)


def test_tiny_vitdet_chain_pretrains_converts_finetunes_and_tabulates(tiny_root: Path, tmp_path: Path) -> None:
    """``run_coco.sh --tiny --arch ViTDet``: tiny MoCo v3 ViT pretraining, conversion verified against the source
    ViT's features, a few Mask R-CNN iterations with every backbone tensor loaded, and the table."""
    import subprocess
    import sys

    from tiny_runs import tiny_output

    out = tiny_output(tmp_path / "out", tiny_root)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "VENV": str(Path(sys.executable).parents[1]),
           "OMP_NUM_THREADS": "1", "DETECTRON2_DATASETS": str(tiny_root)}
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "run_coco.sh"), "--tiny", "--arch", "ViTDet", "--rows",
                          "pretrained", "--output", str(out), "--", "SOLVER.MAX_ITER", "4"],
                         env=env, capture_output=True, text=True, timeout=600)
    text = res.stdout + res.stderr
    assert res.returncode == 0, text[-3000:]
    assert "verified in Detectron2's ViT: patch features match the source" in text
    records = list((out / "ViTDet-tiny").glob("*/trial0/trial_record.json"))
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    assert rec["status"] == "finished" and "APbb" in rec["metrics"] and "APmk" in rec["metrics"]
    assert rec["pretrain"]["method"] == "MoCo v3"
    assert "backbone 51/51 tensors loaded, 0 missing" in (records[0].parent / "console.log").read_text()
    assert rec["demonstrates"] == {"arch": "ViTDet-B", "schedule": "table11"}
    lines = text.splitlines()
    tiny_row = next(i for i, ln in enumerate(lines) if ln.startswith("| MoCo v3 (tiny ViT pretraining) | MoCo v3 |"))
    assert "| this run | 1/1 |" in lines[tiny_row]
    # the published ViTDet-B rows beside, after the tiny row, for orientation only
    after = lines[tiny_row + 1:tiny_row + 40]
    assert any(ln.startswith("| MAE IN-1K (100 ep) |") and "paper: ViTDet" in ln for ln in after), after
    assert any(ln.startswith("| random init (300 ep, no rel. pos.) |") for ln in after), after
    assert "Published numbers of the full-scale benchmark this demonstration stands in for (ViTDet-B, table11" in text


def test_vitdet_tables_footnote_the_readings_no_source_confirms() -> None:
    """The random-init row of a ViTDet table depends on two readings (its epochs scaled from D2's schedule, no layer
    decay); a ViT-S table, on the ViT-S recipe itself: each is footnoted with ‡, a pretrained ViT-B row is not."""
    from results.tables import build_tables

    def rec(arch: str, kind: str, label: str) -> dict:
        return {"task": "coco_maskrcnn", "arch": arch, "schedule": "table11", "tiny": False, "status": "finished",
                "trial": 0, "seed": 0, "metrics": {"APbb": 40.0, "APmk": 35.0},
                "pretrain": {"label": label, "kind": kind, "method": "MAE" if kind == "pretrained" else None}}

    (b,) = build_tables([rec("ViTDet-B", "pretrained", "MAE"), rec("ViTDet-B", "random", "random init")])
    marked = [n for n in b.notes if n.startswith("‡")]
    assert len(marked) == 2 and all(n.startswith("‡ random init:") for n in marked), b.notes
    assert any("300 epochs" in n for n in marked) and any("layer-wise lr decay" in n for n in marked)
    (s,) = build_tables([rec("ViTDet-S", "pretrained", "MoCo v3")])
    assert [n for n in s.notes if n.startswith("‡")] and "ViTDet with a ViT-S" in " ".join(s.notes)
