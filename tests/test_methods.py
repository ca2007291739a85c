"""A row's method, read from the layout of its weights file (``transfer/methods.py``): one small generated
checkpoint per rule, in the layout its project saves, plus files that must stay "unknown"."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from weights_files import (
    d2_pkl,
    evil_pkl,
    reference_moco_checkpoint,
    reference_moco_pkl,
    resnet_state,
    torchvision_d2_pkl,
    with_mlp_head,
)

from transfer.methods import UNKNOWN, detect_method, method_of


@pytest.fixture(scope="module")
def r18() -> dict[str, torch.Tensor]:
    return resnet_state("resnet18")


def _backbone(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items() if not k.startswith("fc.")}


def _mlp(prefix: str, names=("0", "2")) -> dict[str, torch.Tensor]:
    return {f"{prefix}{n}.weight": torch.zeros(4, 4) for n in names}


def _layouts(r18: dict[str, torch.Tensor]) -> dict[str, tuple[object, str]]:
    """name -> (the object a project saves, the method it must read as)."""
    moco_v1 = reference_moco_checkpoint(r18, mlp=False)
    return {
        "reference MoCo v2 main_moco.py": (reference_moco_checkpoint(r18, mlp=True), "MoCo v2"),
        "reference MoCo v1 main_moco.py": (moco_v1, "MoCo v1"),
        "MoCo without DDP prefix": ({"state_dict": {k.removeprefix("module."): v
                                                    for k, v in moco_v1["state_dict"].items()}}, "MoCo v1"),
        "MoCo v3 builder.py": ({"state_dict": {**_backbone(r18, "module.base_encoder."),
                                               **_mlp("module.base_encoder.fc."),
                                               **_backbone(r18, "module.momentum_encoder."),
                                               **_mlp("module.predictor.")}, "epoch": 100}, "MoCo v3"),
        "DenseCL full (OpenSelfSup)": ({"state_dict": {**_backbone(r18, "encoder_q.0."),
                                                       **_mlp("encoder_q.1.mlp."), **_mlp("encoder_q.1.mlp2."),
                                                       **_backbone(r18, "encoder_k.0."), **_backbone(r18, "backbone."),
                                                       "queue": torch.zeros(4, 8), "queue2": torch.zeros(4, 8)}},
                                       "DenseCL"),
        "DenseCL extract_backbone_weights.py": ({"state_dict": _backbone(r18, ""), "author": "DenseCL"}, "DenseCL"),
        "PixPro main_pretrain.py": ({"model": {**_backbone(r18, "module.encoder."), **_backbone(r18, "module.encoder_k."),
                                               "module.projector.linear1.weight": torch.zeros(4, 4, 1, 1),
                                               "module.projector_k.linear1.weight": torch.zeros(4, 4, 1, 1),
                                               "module.value_transform.linear1.weight": torch.zeros(4, 4, 1, 1)},
                                     "epoch": 100}, "PixPro"),
        "SwAV main_swav.py": ({**_backbone(r18, "module."), **_mlp("module.projection_head."),
                               "module.prototypes.weight": torch.zeros(30, 4)}, "SwAV"),
        "DINO main_dino.py (re-saved without args)": (
            {"student": {**_backbone(r18, "module.backbone."), **_mlp("module.head.mlp."),
                         "module.head.last_layer.weight_g": torch.ones(8, 1)},
             "teacher": {**_backbone(r18, "backbone."), "head.last_layer.weight_g": torch.ones(8, 1)}, "epoch": 100},
            "DINO"),
        "DINO teacher alone": ({**_backbone(r18, "backbone."), **_mlp("head.mlp."),
                                "head.last_layer.weight_g": torch.ones(8, 1), "head.last_layer.weight_v": torch.ones(8, 4)},
                               "DINO"),
        "BYOL (OpenSelfSup)": ({"state_dict": {**_backbone(r18, "online_net.0."), **_backbone(r18, "target_net.0."),
                                               **_backbone(r18, "backbone."), **_mlp("head.predictor.mlp.")}}, "BYOL"),
        "BYOL (byol-pytorch)": ({**_backbone(r18, "online_encoder.net."), **_mlp("online_encoder.projector.net."),
                                 **_mlp("online_predictor.net.")}, "BYOL"),
        "Barlow Twins main.py": ({"model": {**_backbone(r18, "module.backbone."), **_mlp("module.projector.", ("0", "3")),
                                            "module.projector.1.weight": torch.ones(4),
                                            "module.bn.running_mean": torch.zeros(4),
                                            "module.bn.running_var": torch.ones(4)}, "epoch": 300}, "Barlow Twins"),
        "SimCLR (OpenSelfSup)": ({"state_dict": {**_backbone(r18, "backbone."), "neck.fc0.weight": torch.zeros(4, 4),
                                                 "neck.bn0.weight": torch.ones(4)}}, "SimCLR"),
        "SimCLR (Spijkervet)": ({**_backbone(r18, "encoder."), **_mlp("projector.")}, "SimCLR"),
        "torchvision ImageNet model": (dict(r18), "torchvision supervised"),
        "this suite, MoCo v2": ({"state_dict": {f"module.encoder_q.{k}": v for k, v in with_mlp_head(r18).items()},
                                 "suite": {"name": "moco-transfer-bench", "format": 1, "moco_version": "v2",
                                           "args": {"mechanism": "moco", "mlp": True}}}, "MoCo v2"),
        "this suite, end-to-end mechanism": ({"state_dict": _backbone(r18, "module.encoder_q."),
                                              "suite": {"name": "moco-transfer-bench", "moco_version": "v1",
                                                        "args": {"mechanism": "end-to-end"}}}, "end-to-end"),
        # what no rule can tell
        "a backbone saved alone (released SwAV/DINO/Barlow resnet50.pth)": (_backbone(r18, ""), UNKNOWN),
        "a supervised classifier of another class count": ({"state_dict": {**_backbone(r18, ""),
                                                                           "fc.weight": torch.zeros(10, 512)}}, UNKNOWN),
        "a ResNet with an unfamiliar head": ({**dict(r18), "proj.weight": torch.zeros(4, 4)}, UNKNOWN),
    }


def test_each_layout_reads_as_its_method(r18) -> None:
    for name, (obj, want) in _layouts(r18).items():
        got = method_of(obj)
        assert got.name == want, (name, got)
        assert got.reason  # what in the file said so


def test_detectron2_pickles_read_as_their_converter_says(tmp_path: Path, r18) -> None:
    cases = {
        reference_moco_pkl(tmp_path / "v2.pkl", r18, mlp=True): "MoCo v2",
        reference_moco_pkl(tmp_path / "v1.pkl", r18, mlp=False): "MoCo v1",
        d2_pkl(tmp_path / "headless_moco.pkl", r18, "MOCO"): "MoCo",
        torchvision_d2_pkl(tmp_path / "tv.pkl", r18): "torchvision supervised",
        d2_pkl(tmp_path / "tv_no_fc.pkl", r18, "torchvision"): UNKNOWN,
        d2_pkl(tmp_path / "pixpro.pkl", r18, "PixPro"): "PixPro",
        d2_pkl(tmp_path / "densecl.pkl", r18, "OpenSelfSup"): UNKNOWN,  # DenseCL's converter: author OpenSelfSup
    }
    for path, want in cases.items():
        got = detect_method(str(path))
        assert got.name == want, (path.name, got)


def test_files_are_read_safely_and_the_suite_converter_keeps_the_method(tmp_path: Path, r18) -> None:
    from transfer.convert import convert

    for name, mlp, want in (("ref_v2.pth.tar", True, "MoCo v2"), ("ref_v1.pth", False, "MoCo v1")):
        torch.save(reference_moco_checkpoint(r18, mlp=mlp), tmp_path / name)
        assert detect_method(str(tmp_path / name)).name == want
        prov = convert(tmp_path / name, tmp_path / f"{name.split('.')[0]}.pkl", verify=False, log=lambda line: None)
        assert prov["method"] == want
        assert detect_method(str(tmp_path / f"{name.split('.')[0]}.pkl")).name == want  # from the provenance
    # a file converted before the method was recorded: its format still says MoCo
    data = pickle.loads((tmp_path / "ref_v2.pkl").read_bytes())
    del data["provenance"]["method"]
    (tmp_path / "old.pkl").write_bytes(pickle.dumps(data))
    assert detect_method(str(tmp_path / "old.pkl")).name == "MoCo"
    # nothing runs, nothing raises: an unsafe or missing file is "unknown" with the loader's reason
    marker = tmp_path / "ran"
    evil = detect_method(str(evil_pkl(tmp_path / "evil.pkl", marker)))
    assert evil.name == UNKNOWN and "refused to load" in evil.reason and not marker.exists()
    assert detect_method(str(tmp_path / "none.pth")).name == UNKNOWN
    assert detect_method("detectron2://ImageNetPretrained/nowhere/R-50.pkl").name == UNKNOWN
