"""transfer/convert.py: every input format and depth, Detectron2 equivalence, every bad input."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pretrain.resnets import build_resnet
from transfer.checkpoint_io import ConvertError, sha256_of
from transfer.convert import convert, main
from transfer.resnet_spec import backbone_tensors, infer_spec
from transfer.verify import build_detectron2_resnet, torchvision_stages, verify_pkl

REPO = Path(__file__).resolve().parents[1]


def randomized(arch: str, head_dim: int = 128, mlp: bool = False, seed: int = 0) -> torch.nn.Module:
    """A ResNet whose weights *and* BN statistics are random, so any mis-mapped tensor shows."""
    torch.manual_seed(seed)
    net = build_resnet(arch, head_dim)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    if mlp:
        dim = net.fc.in_features
        net.fc = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.ReLU(), torch.nn.Linear(dim, head_dim))
    return net


def reference_d2_name(key: str) -> str:
    """The naming rule of the reference MoCo -> Detectron2 script, written as its string replacements."""
    if "layer" not in key:
        key = "stem." + key
    for t in (1, 2, 3, 4):
        key = key.replace(f"layer{t}", f"res{t + 1}")
    for t in (1, 2, 3):
        key = key.replace(f"bn{t}", f"conv{t}.norm")
    return key.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")


def load_pkl(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f)


def save_moco(path: Path, net: torch.nn.Module, prefix: str = "module.encoder_q.", with_key: bool = True,
              **extra) -> Path:
    sd = {prefix + k: v for k, v in net.state_dict().items()}
    if prefix.startswith("module.encoder_q") and with_key:
        sd.update({"module.encoder_k." + k: v.clone() for k, v in net.state_dict().items()})
        sd["module.queue"] = torch.randn(128, 16)
        sd["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    torch.save({"epoch": 200, "arch": "resnet50", "state_dict": sd, "optimizer": {"state": {}, "param_groups": []}, **extra}, path)
    return path


# ---------------------------------------------------------------- formats (ResNet-18: fast)

def _moco_v3(path: Path, net: torch.nn.Module) -> None:
    dim = net.fc.in_features
    net.fc = torch.nn.Sequential(torch.nn.Linear(dim, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Linear(32, 16))
    sd = {"module.base_encoder." + k: v for k, v in net.state_dict().items()}
    sd.update({"module.momentum_encoder." + k: v for k, v in net.state_dict().items()})
    sd["module.predictor.0.weight"] = torch.randn(16, 16)
    torch.save({"epoch": 99, "arch": "resnet18", "state_dict": sd, "scaler": {"scale": 1024.0}}, path)


FORMATS = {
    "moco": lambda p, n: save_moco(p, n),
    "moco-nomodule": lambda p, n: save_moco(p, n, prefix="encoder_q."),
    "moco-suite": lambda p, n: save_moco(p, n, suite={"name": "moco-transfer-bench", "format": 1}),
    "moco-v3": _moco_v3,
    "torchvision": lambda p, n: torch.save(n.state_dict(), p),
    "torchvision-ddp": lambda p, n: torch.save({"state_dict": {"module." + k: v for k, v in n.state_dict().items()}}, p),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_input_format_converts_and_verifies(tmp_path: Path, fmt: str) -> None:
    net = randomized("resnet18")
    src = tmp_path / "ckpt.pth.tar"
    FORMATS[fmt](src, net)
    prov = convert(src, log=lambda *a: None)
    out = tmp_path / "ckpt.pkl"
    assert prov["format"] == fmt and prov["arch"] == "resnet18"
    data = load_pkl(out)
    assert data["matching_heuristics"] is True and data["__author__"]
    assert data["provenance"]["sha256"] == sha256_of(src)
    assert max(data["provenance"]["verification"]["max_relative_error"].values()) <= 1e-4
    expected = {reference_d2_name(k) for k in randomized("resnet18").state_dict()
                if not k.startswith("fc") and not k.endswith("num_batches_tracked")}
    assert set(data["model"]) == expected
    assert not any(k.startswith(("fc", "stem.fc")) for k in data["model"])
    # values are the source tensors, untouched
    torch.testing.assert_close(torch.from_numpy(data["model"]["res3.1.conv2.norm.running_var"]),
                               net.state_dict()["layer2.1.bn2.running_var"])


def test_prefix_overrides_detection(tmp_path: Path) -> None:
    net = randomized("resnet18")
    src = tmp_path / "odd.pth"
    torch.save({"model": {"backbone.body." + k: v for k, v in net.state_dict().items()}}, src)
    with pytest.raises(ConvertError, match="--prefix"):
        convert(src, log=lambda *a: None)
    prov = convert(src, prefix="backbone.body.", log=lambda *a: None)
    assert prov["format"] == "custom" and prov["prefix"] == "backbone.body."


def test_mlp_head_of_moco_v2_is_dropped(tmp_path: Path) -> None:
    net = randomized("resnet18", mlp=True)
    prov = convert(save_moco(tmp_path / "v2.pth", net), tmp_path / "v2.pkl", log=lambda *a: None)
    assert {"fc.0.weight", "fc.0.bias", "fc.2.weight", "fc.2.bias"} <= set(prov["dropped"])
    assert prov["epoch"] == 200


# ---------------------------------------------------------------- depths and widths

@pytest.mark.parametrize("arch", ["resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "resnet50w2"])
def test_each_depth_and_width_matches_detectron2(tmp_path: Path, arch: str) -> None:
    # No key encoder: the format tests cover it. The 2x-wide one is saved in half precision (as some released
    # checkpoints are), so fp16 gets covered. ResNet-50w4 takes the same width rule as w2 (its 1.5 GB file took
    # over a minute of CI for nothing more; its widths are checked below without building it).
    net = randomized(arch).half() if arch == "resnet50w2" else randomized(arch)
    src = save_moco(tmp_path / f"{arch}.pth", net, with_key=False)
    prov = convert(src, log=lambda *a: None)
    src.unlink()  # free the source before the .pkl is read back (the widest pair is over 2 GB)
    assert prov["arch"] == arch
    data = load_pkl(tmp_path / f"{arch}.pkl")
    (tmp_path / f"{arch}.pkl").unlink()
    spec = prov["resnet"]
    if arch in ("resnet50", "resnet101", "resnet152"):
        assert (spec["stem_out"], spec["res2_out"], spec["width_per_group"]) == (64, 256, 64)
    if arch == "wide_resnet50_2":
        assert (spec["stem_out"], spec["res2_out"], spec["width_per_group"]) == (64, 256, 128)
    if arch == "resnet50w2":
        assert (spec["stem_out"], spec["res2_out"], spec["width_per_group"]) == (128, 512, 128)
    expected = {reference_d2_name(k) for k in net.state_dict()
                if not k.startswith("fc") and not k.endswith("num_batches_tracked")}
    assert set(data["model"]) == expected


def test_the_widest_resnet_is_read_from_its_shapes() -> None:
    from transfer.resnet_spec import backbone_tensors, infer_spec

    with torch.device("meta"):  # shapes only: the 1.5 GB of ResNet-50w4 are never allocated
        tensors, _ = backbone_tensors(build_resnet("resnet50w4", 128).state_dict())
    spec = infer_spec(tensors, "resnet50w4")
    assert (spec.stem_out, spec.res2_out, spec.width_per_group, spec.depth) == (256, 1024, 256, 50)


# ---------------------------------------------------------------- verification catches real errors

def test_verification_detects_a_wrong_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transfer.convert as convert_mod

    original = convert_mod.detectron2_name

    def swapped(key: str) -> str:  # a plausible bug: bn1 and bn2 exchanged in every block (same shapes)
        name = original(key)
        if name.startswith("res") and ".conv1.norm." in name:
            return name.replace(".conv1.norm.", ".conv2.norm.")
        if name.startswith("res") and ".conv2.norm." in name:
            return name.replace(".conv2.norm.", ".conv1.norm.")
        return name

    monkeypatch.setattr(convert_mod, "detectron2_name", swapped)
    src = save_moco(tmp_path / "r18.pth", randomized("resnet18"))
    with pytest.raises(ConvertError, match="verification failed"):
        convert(src, log=lambda *a: None)
    assert not (tmp_path / "r18.pkl").exists()
    assert not list(tmp_path.glob(".*tmp*")), "temp file left behind"


def test_verify_pkl_reports_unused_and_tampered_tensors(tmp_path: Path) -> None:
    net = randomized("resnet18")
    src = save_moco(tmp_path / "r18.pth", net)
    convert(src, log=lambda *a: None)
    pkl = tmp_path / "r18.pkl"
    data = load_pkl(pkl)
    source, _ = backbone_tensors(net.state_dict())
    spec = infer_spec(source, "test")

    extra = dict(data, model={**data["model"], "res9.0.conv1.weight": data["model"]["res2.0.conv1.weight"]})
    (tmp_path / "extra.pkl").write_bytes(pickle.dumps(extra))
    with pytest.raises(ConvertError, match="left unused"):
        verify_pkl(tmp_path / "extra.pkl", spec, source)

    tampered = dict(data, model=dict(data["model"]))
    tampered["model"]["res4.0.conv2.weight"] = tampered["model"]["res4.0.conv2.weight"] * 1.01
    (tmp_path / "tampered.pkl").write_bytes(pickle.dumps(tampered))
    with pytest.raises(ConvertError, match="res4 features differ"):
        verify_pkl(tmp_path / "tampered.pkl", spec, source)


def test_detectron2_features_equal_torchvision_after_loading(tmp_path: Path) -> None:
    """Independent of verify_pkl: load through the checkpointer and compare every stage."""
    from detectron2.checkpoint import DetectionCheckpointer

    net = randomized("resnet50").eval()
    prov = convert(save_moco(tmp_path / "r50.pth", net), log=lambda *a: None, verify=False)
    assert prov["verification"] is None
    spec = infer_spec(backbone_tensors(net.state_dict())[0], "test")
    d2 = build_detectron2_resnet(spec)
    DetectionCheckpointer(d2).load(str(tmp_path / "r50.pkl"))
    x = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        want, got = torchvision_stages(net, x), d2(x)
    for stage in ("res2", "res3", "res4", "res5"):
        torch.testing.assert_close(got[stage], want[stage], rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing written

class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    good = tmp / "good.pth"
    save_moco(good, randomized("resnet18"))
    blob = good.read_bytes()
    cases: dict[str, tuple[Path, str]] = {}

    def case(name: str, data: bytes | None, pattern: str) -> None:
        p = tmp / f"{name}.pth"
        if data is not None:
            p.write_bytes(data)
        cases[name] = (p, pattern)

    case("missing", None, "no such file")
    case("empty", b"", "empty")
    case("truncated", blob[: len(blob) // 2], "truncated or corrupt")
    case("text", b"this is not a checkpoint\n", "not a PyTorch checkpoint")
    torch.save([1, 2, 3], tmp / "list.pth")
    cases["list"] = (tmp / "list.pth", "top level is a list")
    torch.save({"epoch": 3, "note": "hi"}, tmp / "notensors.pth")
    cases["notensors"] = (tmp / "notensors.pth", "no tensors found")
    torch.save({"state_dict": {"module.encoder.weight": torch.zeros(3)}}, tmp / "noencoder.pth")
    cases["noencoder"] = (tmp / "noencoder.pth", "no ResNet encoder found")
    vit = {"module.base_encoder.patch_embed.proj.weight": torch.zeros(8, 3, 16, 16),
           "module.base_encoder.blocks.0.attn.qkv.weight": torch.zeros(24, 8)}
    torch.save({"state_dict": vit}, tmp / "vit.pth")
    cases["vit"] = (tmp / "vit.pth", "Vision Transformer")
    sd = randomized("resnet18").state_dict()
    sd["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
    torch.save(sd, tmp / "shape.pth")
    cases["shape"] = (tmp / "shape.pth", "wrong shape for layer2.0.conv1.weight")
    sd = randomized("resnet18").state_dict()
    del sd["layer3.1.bn2.running_var"]
    torch.save(sd, tmp / "missingtensor.pth")
    cases["missingtensor"] = (tmp / "missingtensor.pth", "missing 1 tensor")
    sd = {k: v for k, v in randomized("resnet18").state_dict().items() if not k.startswith("layer4.1")}
    sd.update({k.replace("layer4.0", "layer4.2"): v for k, v in sd.items() if k.startswith("layer4.0")})
    torch.save(sd, tmp / "gaps.pth")
    cases["gaps"] = (tmp / "gaps.pth", "gaps in its block numbering")
    torch.save({"state_dict": randomized("resnet18").state_dict(), "hook": _RunsCode(str(tmp / "PWNED"))}, tmp / "code.pth")
    cases["code"] = (tmp / "code.pth", "arbitrary code")
    return cases


def test_bad_inputs_give_one_line_and_no_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cases = _bad_inputs(tmp_path)
    for name, (path, pattern) in cases.items():
        out = tmp_path / f"{name}.pkl"
        assert main([str(path), str(out)]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, (name, err)
        assert err.startswith("convert.py: error:") and pattern in err, (name, err)
        assert not out.exists(), name
    assert not (tmp_path / "PWNED").exists(), "a checkpoint managed to run code"
    assert not list(tmp_path.glob(".*.tmp*")), "temp files left behind"


def test_cli_as_a_script_prints_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"\x80\x04garbage")
    good = save_moco(tmp_path / "moco.pth", randomized("resnet18"))
    run = lambda *a: subprocess.run([sys.executable, str(REPO / "transfer" / "convert.py"), *a],  # noqa: E731
                                    capture_output=True, text=True, cwd=tmp_path)
    res = run(str(bad))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "not a PyTorch checkpoint" in res.stderr
    res = run(str(good))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "moco.pkl").exists() and "verified in Detectron2" in res.stdout


def test_existing_output_survives_a_failed_conversion(tmp_path: Path) -> None:
    out = tmp_path / "keep.pkl"
    out.write_bytes(b"previous result")
    (tmp_path / "empty.pth").write_bytes(b"")
    assert main([str(tmp_path / "empty.pth"), str(out)]) == 2
    assert out.read_bytes() == b"previous result"
