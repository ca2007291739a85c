"""Issue 28, any checkpoint in: one generated file per layout of ``transfer/layouts.py`` (``checkpoint_layouts.py``)
is recognised, names its method and the sub-encoder taken, and yields every backbone tensor written; a file no
layout fits is refused in one line with the encoders found and the override; a few go through convert.py and the
runner's dry run in one step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from checkpoint_layouts import LAYOUTS, backbone, soco_c4_pkl
from tiny_runs import tiny_output

from transfer.checkpoint_formats import find_encoder
from transfer.checkpoint_io import ConvertError, load_untrusted
from transfer.methods import detect_method


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_each_layout_is_recognised_with_its_method_and_encoder(name: str, tmp_path: Path) -> None:
    write, layout, method, encoder = LAYOUTS[name]
    path, want = write(tmp_path)
    enc = find_encoder(load_untrusted(path), str(path))
    assert enc.format == layout, enc.layout
    assert encoder in enc.layout, enc.layout
    found = detect_method(str(path))
    assert found.name == method, found
    if method == "unknown":  # the layout is known, the method is not: the reason says so, not "no rule matches"
        assert "layout does not say which method made it" in found.reason, found
    kept = {k: v for k, v in enc.tensors.items() if not k.startswith("fc.")}
    assert len(kept) == len(want), sorted(set(want) ^ set(kept))[:5]
    assert all(torch.equal(kept[k], v) for k, v in want.items())  # the encoder that transfers, not its twin
    if name == "torch.compile":
        assert enc.notes and "_orig_mod." in enc.notes[0]


def test_soco_pickle_is_not_labelled_pixpro(tmp_path: Path) -> None:
    assert detect_method(str(soco_c4_pkl(tmp_path))).name == "SoCo"
    other = tmp_path / "pixpro_100ep.pkl"
    other.write_bytes(soco_c4_pkl(tmp_path).read_bytes())
    assert detect_method(str(other)).name == "PixPro"


def test_an_unknown_layout_is_one_line_with_the_encoders_found_and_the_override(tmp_path: Path) -> None:
    path = tmp_path / "two.pth"
    torch.save({"state_dict": {**{f"net_a.{k}": v for k, v in backbone(0).items()},
                               **{f"net_b.{k}": v for k, v in backbone(1).items()}}}, path)
    with pytest.raises(ConvertError) as e:
        find_encoder(load_untrusted(path), str(path))
    line = str(e.value)
    assert "\n" not in line and "state_dict:net_a., state_dict:net_b." in line and "#prefix=" in line and "--prefix" in line
    enc = find_encoder(load_untrusted(path), str(path), prefix="net_b.")
    assert torch.equal(enc.tensors["conv1.weight"], backbone(1)["conv1.weight"])


def test_convert_takes_the_slotcon_teacher_and_a_nested_override(tmp_path: Path) -> None:
    from transfer.convert import convert
    from transfer.weights import weights_provenance

    write, *_ = LAYOUTS["slotcon"]
    path, _ = write(tmp_path)
    prov = convert(path, tmp_path / "slotcon.pkl", verify=False, log=lambda line: None)
    assert prov["method"] == "SlotCon" and prov["prefix"] == "module.encoder_k." and prov["arch"] == "resnet18"
    assert "encoder_k" in weights_provenance(str(tmp_path / "slotcon.pkl"))["layout"]
    dino_path, _ = LAYOUTS["dino"][0](tmp_path)
    prov = convert(dino_path, tmp_path / "student.pkl", prefix="student:module.backbone.", verify=False,
                   log=lambda line: None)
    assert prov["format"] == "custom" and prov["method"] == "DINO"


def test_a_resnet18_for_an_r50_benchmark_names_the_tiny_run(tmp_path: Path) -> None:
    from benchmarks.preflight import depth_problem
    from transfer.convert import convert

    path, _ = LAYOUTS["barlowtwins"][0](tmp_path)
    convert(path, tmp_path / "bt.pkl", verify=False, log=lambda line: None)
    line = depth_problem(str(tmp_path / "bt.pkl"), 50, "voc_R_50_C4_24k_rgb.yaml")
    assert line and "ResNet-18" in line and "needs a ResNet-50" in line and "--tiny" in line
    assert depth_problem(str(tmp_path / "bt.pkl"), 18, "voc_R_18_C4_tiny.yaml") is None


def test_the_runner_plans_slotcon_and_an_override_in_one_step(tmp_path: Path, tiny_root: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    from benchmarks import run

    slot, _ = LAYOUTS["slotcon"][0](tmp_path)
    dino_path, _ = LAYOUTS["dino"][0](tmp_path)
    out = tiny_output(tmp_path / "out", tiny_root)
    rc = run.main(["voc", "--tiny", "--dry-run", "--rows", "pretrained", "--output", str(out),
                   "--weights", str(slot), "--weights", f"{dino_path}#prefix=student:module.backbone."])
    text = capsys.readouterr()
    assert rc == 0, text.out[-3000:] + text.err[-2000:]
    assert "method   SlotCon:" in text.out
    assert "encoder  SlotCon layout (slotcon), teacher (momentum) encoder_k: model/module.encoder_k.*" in text.out
    assert "encoder  custom prefix 'student:module.backbone.'" in text.out


def test_the_override_parses_with_and_without_a_label(tmp_path: Path) -> None:
    from benchmarks.backbones import read_weights_list, split_label, split_prefix

    assert split_prefix("a/ckpt.pth#prefix=teacher:module.backbone.") == ("a/ckpt.pth", "teacher:module.backbone.")
    assert split_label(split_prefix("q=a.pth#prefix=model:module.encoder_q.")[0]) == ("q", "a.pth")
    with pytest.raises(ValueError, match="empty prefix"):
        split_prefix("a.pth#prefix=")
    (tmp_path / "list.yaml").write_text("- {path: a.pth, prefix: module.encoder_k.}\n- b.pth#prefix=encoder_q.\n")
    assert [s.prefix for s in read_weights_list(tmp_path / "list.yaml")] == ["module.encoder_k.", "encoder_q."]


def test_a_resaved_network_with_its_fc_is_not_called_supervised(tmp_path: Path) -> None:
    """byol-pytorch's README saves ``resnet.state_dict()`` with its 1000-class fc: the key stays, the label hedges."""
    from transfer.methods import SUPERVISED, shown
    from weights_files import resnet_state

    path = tmp_path / "improved-net.pt"
    sd = resnet_state("resnet18", 0)
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    torch.save(sd, path)
    method = detect_method(str(path))
    assert method.name == SUPERVISED and "re-saved with its fc" in method.reason
    assert shown(method.name) == "supervised, or re-saved with its fc" and shown("MoCo v2") == "MoCo v2"


def test_the_mm_config_names_the_method_and_moco_version(tmp_path: Path) -> None:
    path, _ = LAYOUTS["mmpretrain"][0](tmp_path)
    method = detect_method(str(path))
    assert method.name == "MoCo v2" and "'MoCoV2Neck'" in method.reason and "meta['cfg']" in method.reason
