"""Any checkpoint in (issue 28): ``.safetensors`` read without pickle and its header checked first, files judged by
their content (``.bin``, ``.torch``), Hugging Face transformers' ResNet names, and programs (TorchScript, a whole
pickled model) refused in one line with the way to their weights."""

from __future__ import annotations

import json
import pickle
import struct
import tracemalloc
import warnings
from pathlib import Path

import pytest
import torch
from checkpoint_layouts import backbone
from safetensors.torch import save_file
from tiny_runs import tiny_output
from weights_files import d2_name, resnet_state

from transfer import convert, safetensors_io
from transfer.checkpoint_io import ConvertError, load_untrusted
from transfer.weights import WeightsFormatError, decide_input_format


def _one_line(e: BaseException) -> str:
    text = str(e)
    assert text and "\n" not in text, text
    return text


def _crafted(path: Path, header: bytes, body: bytes = b"", n: int | None = None) -> Path:
    path.write_bytes(struct.pack("<Q", len(header) if n is None else n) + header + body)
    return path


def test_a_safetensors_file_loads_its_tensors_and_metadata(tmp_path: Path) -> None:
    tensors = {"conv1.weight": torch.randn(4, 3, 7, 7), "bn1.running_mean": torch.randn(4),
               "steps": torch.tensor([3], dtype=torch.int64)}
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    got = load_untrusted(tmp_path / "model.safetensors")
    assert sorted(got) == sorted(tensors)
    assert all(torch.equal(got[k], tensors[k]) and got[k].dtype == tensors[k].dtype for k in tensors)
    assert got.metadata == {"format": "pt"}
    # the content decides: the same bytes under a torch name are still read as safetensors
    (tmp_path / "model.pth").write_bytes((tmp_path / "model.safetensors").read_bytes())
    assert torch.equal(load_untrusted(tmp_path / "model.pth")["conv1.weight"], tensors["conv1.weight"])


F32x4 = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
HOSTILE = {
    "huge header": (b"{}", b"", 1 << 62, "header claims"),
    "header past the end": (b'{"a": 1}', b"", 1000, "truncated or corrupt safetensors"),
    "offsets outside the file": (json.dumps({"a": F32x4}).encode(), b"\0" * 8, None, "outside the file"),
    "overlapping tensors": (json.dumps({"a": F32x4, "b": {**F32x4, "data_offsets": [8, 24]}}).encode(), b"\0" * 24,
                            None, "overlap"),
    "non-numeric dtype": (json.dumps({"a": {**F32x4, "dtype": "STR"}}).encode(), b"\0" * 16, None, "not a numeric"),
    "nesting bomb": (b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", b"", None, "nests too deep"),
    "not UTF-8": (b'{"a\xff": 1}', b"", None, "not UTF-8"),
    "size not dtype x shape": (json.dumps({"a": {**F32x4, "data_offsets": [0, 12]}}).encode(), b"\0" * 16, None,
                               "needs 16"),
    "duplicate names": (b'{"a": 1, "a": 2}', b"", None, "twice"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_crafted_header_is_refused_in_one_line_before_any_tensor_is_read(case: str, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    header, body, n, expect = HOSTILE[case]
    path = _crafted(tmp_path / "w.safetensors", header, body, n)

    def never(*a, **k):
        raise AssertionError("the safetensors package was asked to read a refused file")

    monkeypatch.setattr("safetensors.safe_open", never)
    tracemalloc.start()
    try:
        with pytest.raises(ConvertError) as e:
            load_untrusted(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert expect in _one_line(e.value) and str(path) in str(e.value)
    assert peak < 64 * len(header) + (8 << 20)  # nothing allocated beyond the header (and its parse)


def test_unknown_content_names_the_formats_accepted(tmp_path: Path) -> None:
    junk = tmp_path / "weights.pth"
    junk.write_bytes(b"GIF89a not weights at all")
    with pytest.raises(ConvertError) as e:
        load_untrusted(junk)
    assert "not a PyTorch checkpoint" in _one_line(e.value) and ".safetensors" in str(e.value)
    other = tmp_path / "weights.xyz"
    other.write_bytes(junk.read_bytes())
    with pytest.raises(WeightsFormatError) as e:
        decide_input_format(str(other))
    assert ".safetensors" in _one_line(e.value) and ".bin" in str(e.value)
    torch.save({"a": torch.ones(1)}, tmp_path / "weights.data")  # a real checkpoint under a name not read
    with pytest.raises(WeightsFormatError) as e:
        decide_input_format(str(tmp_path / "weights.data"))
    assert "a PyTorch checkpoint (zip format) by its content" in _one_line(e.value) and "rename" in str(e.value)


# ------------------------------------------------------------------ .bin and .torch: the runner and the converter

def _bin_and_torch(d: Path) -> tuple[Path, Path]:
    """transformers' torch pytorch_model.bin (here torchvision names) and a VISSL .torch (trunk _feature_blocks.)."""
    enc = backbone(0)
    torch.save({**enc, "fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}, d / "pytorch_model.bin")
    trunk = {f"_feature_blocks.{k}": v for k, v in backbone(1).items()}
    torch.save({"classy_state_dict": {"base_model": {"model": {"trunk": trunk, "heads": {}}}}, "phase_idx": 3},
               d / "model_final_checkpoint_phase199.torch")
    return d / "pytorch_model.bin", d / "model_final_checkpoint_phase199.torch"


def test_bin_and_torch_files_plan_in_the_runner(tmp_path: Path, tiny_root: Path, capsys: pytest.CaptureFixture) -> None:
    from benchmarks import run

    bin_file, torch_file = _bin_and_torch(tmp_path)
    out = tiny_output(tmp_path / "out", tiny_root)
    rc = run.main(["voc", "--tiny", "--dry-run", "--rows", "pretrained", "--output", str(out),
                   "--weights", f"bin={bin_file}", "--weights", f"vissl={torch_file}"])
    text = capsys.readouterr()
    assert rc == 0, text.out[-3000:] + text.err[-2000:]
    assert "input    RGB: pytorch_model.bin: PyTorch checkpoint" in text.out
    assert "encoder  VISSL layout (vissl)" in text.out
    assert len(__import__("re").findall(r"loading  backbone (\d+)/\1 tensors loaded, 0 missing", text.out)) == 2


def test_bin_and_torch_files_convert(tmp_path: Path) -> None:
    for src in _bin_and_torch(tmp_path):
        assert convert.main([str(src), "--no-verify"]) == 0
        assert convert.default_output(src).is_file() and convert.default_output(src).suffix == ".pkl"
    assert convert.default_output(tmp_path / "pytorch_model.bin").name == "pytorch_model.pkl"


# ------------------------------------------------------------------ transformers' ResNet names

def _transformers_name(key: str) -> str:
    """torchvision -> transformers ResNet names (modeling_resnet.py: ResNetForImageClassification)."""
    if key.startswith("fc."):
        return "classifier.1." + key[3:]
    head, _, rest = key.partition(".")
    if head in ("conv1", "bn1"):
        return f"resnet.embedder.embedder.{'convolution' if head == 'conv1' else 'normalization'}.{rest}"
    stage = int(head[len("layer"):]) - 1
    block, sub, tail = rest.split(".", 2)
    if sub == "downsample":
        index, tail = tail.split(".", 1)
        part = "convolution" if index == "0" else "normalization"
        return f"resnet.encoder.stages.{stage}.layers.{block}.shortcut.{part}.{tail}"
    part = "convolution" if sub.startswith("conv") else "normalization"
    return f"resnet.encoder.stages.{stage}.layers.{block}.layer.{int(sub[-1]) - 1}.{part}.{tail}"


def test_transformers_resnet_names_convert_every_backbone_tensor(tmp_path: Path) -> None:
    state = resnet_state("resnet18", 4)
    hf = {_transformers_name(k): v.contiguous() for k, v in state.items()}
    assert "resnet.encoder.stages.1.layers.0.shortcut.convolution.weight" in hf
    assert "resnet.encoder.stages.3.layers.1.layer.1.normalization.running_var" in hf
    folder = tmp_path / "hf"
    folder.mkdir()
    save_file(hf, folder / "model.safetensors", metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({"model_type": "resnet", "layer_type": "basic",
                                                    "architectures": ["ResNetForImageClassification"]}))
    prov = convert.convert(folder / "model.safetensors", tmp_path / "hf.pkl", verify=False, log=lambda line: None)
    assert prov["format"] == "transformers" and prov["arch"] == "resnet18"
    with open(tmp_path / "hf.pkl", "rb") as f:
        model = pickle.load(f)["model"]
    want = {d2_name(k): v for k, v in state.items() if not k.startswith("fc.")}
    assert len(model) == len(want) == 100, (len(model), len(want))  # 5 stem + 8 x 10 blocks + 3 x 5 shortcuts
    assert all(torch.equal(torch.from_numpy(model[k]), v) for k, v in want.items())
    # a config that says the network strides elsewhere is not torchvision's network
    (folder / "config.json").write_text(json.dumps({"model_type": "resnet", "downsample_in_first_stage": True}))
    with pytest.raises(ConvertError) as e:
        convert.convert(folder / "model.safetensors", tmp_path / "bad.pkl", verify=False, log=lambda line: None)
    assert "downsample_in_first_stage" in _one_line(e.value) and not (tmp_path / "bad.pkl").exists()


# ------------------------------------------------------------------ programs are not weights

class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_torchscript_and_whole_models_are_refused_with_the_way_to_their_weights(tmp_path: Path,
                                                                                capsys: pytest.CaptureFixture) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1))), tmp_path / "scripted.pt")
    torch.save(_Tiny(), tmp_path / "whole.pth")
    cases = {"scripted.pt": ("TorchScript program", "torch.jit.load(path).state_dict()"),
             "whole.pth": ("whole pickled model (test_safetensors_weights._Tiny", "model.state_dict()")}
    for name, (what, how) in cases.items():
        with pytest.raises(ConvertError) as e:
            load_untrusted(tmp_path / name)
        assert what in _one_line(e.value) and how in str(e.value), str(e.value)
        assert convert.main([str(tmp_path / name), "--no-verify"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and what in err, err
    assert not list(tmp_path.glob("*.pkl"))
