"""ViT checkpoints -> Detectron2's ViT (issue 29): tiny checkpoints saved as MoCo v3, DINO, MAE, DeiT and timm save
them, converted, loaded into a freshly built Detectron2 ``ViT`` and compared with a reference forward."""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from transfer.checkpoint_io import ConvertError
from transfer.convert import convert, main
from transfer.methods import method_of
from transfer.vit_convert import PREFIX, build_d2_vit, infer_spec

Tensors = dict[str, torch.Tensor]


def vit_tensors(dim: int, depth: int, patch: int, img: int, seed: int, head: int | None = None) -> Tensors:
    """A timm-style ViT state dict (cls token, pos_embed with its cls entry, blocks, final norm, optional head)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, std=1.0: torch.randn(*s, generator=g) * std  # noqa: E731
    t = {"cls_token": r(1, 1, dim), "pos_embed": r(1, (img // patch) ** 2 + 1, dim, std=0.5),
         "patch_embed.proj.weight": r(dim, 3, patch, patch, std=(3 * patch * patch) ** -0.5),
         "patch_embed.proj.bias": r(dim, std=0.1), "norm.weight": 1 + r(dim, std=0.1), "norm.bias": r(dim, std=0.1)}
    for i in range(depth):
        b = f"blocks.{i}."
        for n in ("norm1", "norm2"):
            t[f"{b}{n}.weight"], t[f"{b}{n}.bias"] = 1 + r(dim, std=0.1), r(dim, std=0.1)
        for n, (o, i_) in {"attn.qkv": (3 * dim, dim), "attn.proj": (dim, dim), "mlp.fc1": (4 * dim, dim),
                           "mlp.fc2": (dim, 4 * dim)}.items():
            t[f"{b}{n}.weight"], t[f"{b}{n}.bias"] = r(o, i_, std=i_ ** -0.5), r(o, std=0.1)
    if head:
        t["head.weight"], t["head.bias"] = r(head, dim, std=0.02), torch.zeros(head)
    return t


def pre(prefix: str, t: Tensors) -> Tensors:
    return {prefix + k: v for k, v in t.items()}


def moco_v3(tmp: Path) -> tuple[Path, Tensors, dict]:
    """moco-v3 main_moco.py save_checkpoint: base/momentum encoders (head = projector MLP), predictor (DDP)."""
    enc = vit_tensors(48, 2, 16, 64, seed=1)
    proj = {"head.0.weight": torch.randn(64, 48), "head.1.running_mean": torch.zeros(64), "head.3.weight": torch.randn(16, 64)}
    sd = {**pre("module.base_encoder.", {**enc, **proj}),
          **pre("module.momentum_encoder.", {**vit_tensors(48, 2, 16, 64, seed=2), **proj}),
          "module.predictor.0.weight": torch.randn(64, 16)}
    path = tmp / "checkpoint_0299.pth.tar"
    torch.save({"epoch": 300, "arch": "vit_small", "state_dict": sd, "optimizer": {"state": {}, "param_groups": []},
                "scaler": {"scale": 65536.0}}, path)
    return path, enc, {"format": "moco-v3-vit", "method": "MoCo v3", "heads": 12, "patch": 16, "img": 64,
                       "dropped": 3 + len(proj)}


def dino(tmp: Path) -> tuple[Path, Tensors, dict]:
    """dino main_dino.py save_dict: student (DDP) and teacher MultiCropWrapper (backbone, DINOHead), args."""
    teacher, student = vit_tensors(48, 3, 8, 32, seed=3), vit_tensors(48, 3, 8, 32, seed=4)
    head = {"head.mlp.0.weight": torch.randn(32, 48), "head.last_layer.weight_g": torch.ones(64, 1),
            "head.last_layer.weight_v": torch.randn(64, 32)}
    args = argparse.Namespace(arch="vit_small", patch_size=8, out_dim=64, norm_last_layer=True, lr=5e-4)
    path = tmp / "checkpoint.pth"
    torch.save({"student": {**pre("module.backbone.", student), **pre("module.", head)},
                "teacher": {**pre("backbone.", teacher), **head}, "optimizer": {"state": {}, "param_groups": []},
                "epoch": 100, "args": args, "dino_loss": {"center": torch.zeros(1, 64)}}, path)
    return path, teacher, {"format": "dino-vit", "method": "DINO", "heads": 6, "patch": 8, "img": 32, "dropped": 3}


def mae(tmp: Path) -> tuple[Path, Tensors, dict]:
    """mae util/misc.py save_model: model (encoder + decoder_*, mask_token), optimizer, epoch, scaler, args."""
    enc = vit_tensors(48, 2, 16, 64, seed=5)
    dec = {"mask_token": torch.zeros(1, 1, 32), "decoder_embed.weight": torch.randn(32, 48),
           "decoder_pos_embed": torch.zeros(1, 17, 32), "decoder_blocks.0.attn.qkv.weight": torch.randn(96, 32),
           "decoder_norm.weight": torch.ones(32), "decoder_pred.weight": torch.randn(768, 32)}
    path = tmp / "checkpoint-399.pth"
    torch.save({"model": {**enc, **dec}, "optimizer": {"state": {}, "param_groups": []}, "epoch": 399,
                "scaler": {"scale": 1024.0}, "args": argparse.Namespace(model="mae_vit_base_patch16", mask_ratio=0.75)},
               path)
    return path, enc, {"format": "mae", "method": "MAE", "heads": 12, "patch": 16, "img": 64, "dropped": 3 + len(dec)}


def deit(tmp: Path) -> tuple[Path, Tensors, dict]:
    """deit main.py save_on_master: model (timm names, 1000-class head), optimizer, lr_scheduler, ..., args."""
    enc = vit_tensors(48, 2, 16, 32, seed=6, head=1000)
    path = tmp / "deit_checkpoint.pth"
    torch.save({"model": enc, "optimizer": {}, "lr_scheduler": {}, "epoch": 299, "model_ema": None, "scaler": {},
                "args": argparse.Namespace(model="deit_small_patch16_224")}, path)
    return path, enc, {"format": "deit", "method": "timm supervised", "heads": 6, "patch": 16, "img": 32,
                       "dropped": 5}


def timm_safetensors(tmp: Path) -> tuple[Path, Tensors, dict]:
    """A timm ViT-Tiny ``model.safetensors`` (plain names; no arch in the file: heads by embed dim 192)."""
    from safetensors.torch import save_file

    enc = vit_tensors(192, 2, 16, 32, seed=7, head=1000)
    path = tmp / "model.safetensors"
    save_file(enc, str(path))
    return path, enc, {"format": "timm-vit", "method": "timm supervised", "heads": 3, "patch": 16, "img": 32,
                       "dropped": 5}


def as_transformers(t: Tensors, prefix: str = "") -> Tensors:
    """A timm-named ViT as transformers' ``ViTModel`` names it (modeling_vit.py): separate query/key/value, the
    block's layernorm_before/after, intermediate/output dense layers, ``embeddings.*``, final ``layernorm``."""
    out = {"embeddings.cls_token": t["cls_token"], "embeddings.position_embeddings": t["pos_embed"],
           "embeddings.patch_embeddings.projection.weight": t["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.projection.bias": t["patch_embed.proj.bias"],
           "layernorm.weight": t["norm.weight"], "layernorm.bias": t["norm.bias"]}
    depth = len({k.split(".")[1] for k in t if k.startswith("blocks.")})
    for i in range(depth):
        b, h = f"blocks.{i}.", f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            q, k, v = t[f"{b}attn.qkv.{kind}"].chunk(3)
            out.update({f"{h}attention.attention.query.{kind}": q.clone(), f"{h}attention.attention.key.{kind}": k.clone(),
                        f"{h}attention.attention.value.{kind}": v.clone(),
                        f"{h}attention.output.dense.{kind}": t[f"{b}attn.proj.{kind}"],
                        f"{h}layernorm_before.{kind}": t[f"{b}norm1.{kind}"],
                        f"{h}layernorm_after.{kind}": t[f"{b}norm2.{kind}"],
                        f"{h}intermediate.dense.{kind}": t[f"{b}mlp.fc1.{kind}"],
                        f"{h}output.dense.{kind}": t[f"{b}mlp.fc2.{kind}"]})
    return {prefix + k: v for k, v in out.items()}


def hf_vit(tmp: Path) -> tuple[Path, Tensors, dict]:
    """transformers ``ViTModel.save_pretrained``: ``model.safetensors`` (with the pooler) and ``config.json``,
    whose num_attention_heads (4: in no table for embed dim 48) is the only place the heads are said."""
    import json

    from safetensors.torch import save_file

    enc = vit_tensors(48, 2, 16, 32, seed=8)
    d = tmp / "dino-vits16-hf"
    d.mkdir()
    sd = {**as_transformers(enc), "pooler.dense.weight": torch.randn(48, 48), "pooler.dense.bias": torch.zeros(48)}
    save_file(sd, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps({"model_type": "vit", "architectures": ["ViTModel"], "hidden_size": 48,
                                               "num_attention_heads": 4, "num_hidden_layers": 2, "patch_size": 16,
                                               "image_size": 32, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
                                               "qkv_bias": True}))
    return d / "model.safetensors", enc, {"format": "transformers-vit", "method": "unknown", "heads": 4, "patch": 16,
                                          "img": 32, "dropped": 5}


def hf_mae(tmp: Path) -> tuple[Path, Tensors, dict]:
    """transformers ``ViTMAEForPreTraining`` (``vit.*`` and ``decoder.*``), saved as ``pytorch_model.bin``; no
    config.json: heads by embed dim (192: timm's ViT-Tiny, 3)."""
    enc = vit_tensors(192, 2, 16, 32, seed=9)
    dec = {"decoder.decoder_embed.weight": torch.randn(32, 192), "decoder.mask_token": torch.zeros(1, 1, 32),
           "decoder.decoder_pred.weight": torch.randn(768, 32), "decoder.decoder_norm.weight": torch.ones(32)}
    path = tmp / "pytorch_model.bin"
    torch.save({**as_transformers(enc, "vit."), **dec}, path)
    return path, enc, {"format": "transformers-vit", "method": "MAE", "heads": 3, "patch": 16, "img": 32,
                       "dropped": 3}


CASES: dict[str, Callable[[Path], tuple[Path, Tensors, dict]]] = {
    "moco-v3": moco_v3, "dino": dino, "mae": mae, "deit": deit, "timm": timm_safetensors,
    "transformers-vit": hf_vit, "transformers-mae": hf_mae}


def load_pkl(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return pickle.load(f)


@pytest.mark.parametrize("name", list(CASES))
def test_each_vit_checkpoint_converts_to_detectron2_vit_and_matches(name: str, tmp_path: Path) -> None:
    src, enc, want = CASES[name](tmp_path)
    out = tmp_path / "out.pkl"
    prov = convert(src, out, log=lambda line: None)
    assert prov["format"] == want["format"] and prov["method"] == want["method"], prov["layout"]
    arch = prov["arch"]
    assert arch["type"] == "vit" and arch["num_heads"] == want["heads"], arch
    assert (arch["patch_size"], arch["pretrain_img_size"], arch["pretrain_use_cls_token"]) == \
        (want["patch"], want["img"], True)
    assert arch["embed_dim"] == enc["patch_embed.proj.weight"].shape[0]
    assert arch["depth"] == len({k.split(".")[1] for k in enc if k.startswith("blocks.")})
    # every encoder tensor is mapped or dropped with a reason; dropped are cls token, final norm, head/decoder only
    report = prov["load_report"]
    assert report["mapped"] + len(report["dropped"]) == report["encoder_tensors"]
    assert len(report["dropped"]) == want["dropped"], report["dropped"]
    assert "cls_token" in report["dropped"] and "norm.weight" in report["dropped"]
    # the .pkl: exact names, every Detectron2 ViT parameter but the zero-initialised rel_pos, same shapes and values
    data = load_pkl(out)
    assert data["matching_heuristics"] is False and data["provenance"]["arch"] == arch
    spec = infer_spec({k: torch.as_tensor(v) for k, v in ((k[len(PREFIX):], v) for k, v in data["model"].items())},
                      "pkl", heads=arch["num_heads"])
    d2 = {PREFIX + k: v for k, v in build_d2_vit(spec).state_dict().items() if not k.endswith(("rel_pos_h", "rel_pos_w"))}
    assert set(data["model"]) == set(d2)
    assert all(tuple(data["model"][k].shape) == tuple(v.shape) for k, v in d2.items())
    for k, v in data["model"].items():
        assert torch.equal(torch.from_numpy(v), enc[k[len(PREFIX):]].float()), k  # the teacher, for DINO
    assert report["mapped"] == len(d2)
    # features: Detectron2's ViT vs the reference forward without cls token; the cls token does change them
    ver = prov["verification"]
    assert ver["max_relative_error"]["last_block_patch_tokens"] < 1e-5, ver
    assert ver["with_cls_token_relative_difference"] > 1e-3, ver
    assert method_of(data, out.name).name == want["method"]


def test_heads_not_derivable_are_refused_in_one_line_then_taken_from_the_flag(tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture) -> None:
    from safetensors.torch import save_file

    src = tmp_path / "vit.safetensors"
    save_file(vit_tensors(48, 2, 16, 32, seed=8), str(src))
    out = tmp_path / "vit.pkl"
    assert main([str(src), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--vit-heads" in err and not out.exists(), err
    assert main([str(src), str(out), "--vit-heads", "4"]) == 0
    assert load_pkl(out)["provenance"]["arch"]["num_heads"] == 4
    assert load_pkl(out)["provenance"]["arch"]["heads_source"] == "--vit-heads"


def test_wrong_heads_fail_nothing_silently(tmp_path: Path) -> None:
    """The number of heads changes the features: the reference forward is not tautological."""
    from transfer.verify_vit import reference_tokens
    import dataclasses

    t = vit_tensors(48, 2, 8, 32, seed=9)
    spec = infer_spec(t, "x", heads=6)
    x = torch.randn(1, 3, 32, 32)
    a, b = reference_tokens(t, spec, x), reference_tokens(t, dataclasses.replace(spec, num_heads=12), x)
    assert (a - b).abs().max() > 1e-2


def test_unsupported_vit_tensors_are_refused_in_one_line(tmp_path: Path) -> None:
    t = vit_tensors(48, 2, 16, 32, seed=10)
    t["blocks.0.ls1.gamma"] = torch.ones(48)  # timm layer scale: no place in Detectron2's ViT
    path = tmp_path / "ls.pth"
    torch.save(t, path)
    with pytest.raises(ConvertError, match="blocks.0.ls1.gamma") as e:
        convert(path, tmp_path / "ls.pkl", vit_heads=4, log=lambda line: None)
    assert "\n" not in str(e.value) and not (tmp_path / "ls.pkl").exists()


def test_the_dino_student_is_not_taken_and_a_prefix_override_still_converts(tmp_path: Path) -> None:
    src, teacher, _ = dino(tmp_path)
    prov = convert(src, tmp_path / "student.pkl", prefix="student:module.backbone.", log=lambda line: None)
    model = load_pkl(tmp_path / "student.pkl")["model"]
    assert prov["arch"]["num_heads"] == 6  # DINO's table even under an override (args.arch vit_small)
    assert not torch.equal(torch.from_numpy(model[PREFIX + "blocks.0.attn.qkv.weight"]), teacher["blocks.0.attn.qkv.weight"])


def test_transformers_vits_it_cannot_rebuild_are_refused_in_one_line(tmp_path: Path) -> None:
    """A DINOv2-style transformers ViT (layer scale, register tokens) and a ViT whose config.json names another
    activation: one line each, nothing written."""
    import json

    from safetensors.torch import save_file

    enc = as_transformers(vit_tensors(48, 2, 16, 32, seed=10))
    d = tmp_path / "v2"
    d.mkdir()
    save_file({**enc, "encoder.layer.0.layer_scale1.lambda1": torch.ones(48),
               "embeddings.register_tokens": torch.zeros(1, 4, 48)}, str(d / "model.safetensors"))
    with pytest.raises(ConvertError, match=r"(layer_scale1|register_tokens).*has no place in Detectron2's ViT"):
        convert(d / "model.safetensors", tmp_path / "a.pkl", log=lambda line: None)
    e = tmp_path / "relu"
    e.mkdir()
    save_file(enc, str(e / "model.safetensors"))
    (e / "config.json").write_text(json.dumps({"model_type": "vit", "num_attention_heads": 4, "hidden_act": "relu"}))
    with pytest.raises(ConvertError, match="hidden_act 'relu': Detectron2's ViT uses GELU"):
        convert(e / "model.safetensors", tmp_path / "b.pkl", log=lambda line: None)
    assert not (tmp_path / "a.pkl").exists() and not (tmp_path / "b.pkl").exists()
    # a block missing its key projection is refused by name, never half-built
    part = {k: v for k, v in enc.items() if k != "encoder.layer.1.attention.attention.key.weight"}
    save_file(part, str(e / "model.safetensors"))
    (e / "config.json").write_text(json.dumps({"model_type": "vit", "num_attention_heads": 4}))
    with pytest.raises(ConvertError, match=r"encoder.layer.1.attention.attention.* without the rest of its query/key"):
        convert(e / "model.safetensors", tmp_path / "c.pkl", log=lambda line: None)


def _solo_vit(tmp: Path, dim: int, args: dict | None) -> Path:
    """solo-learn (Lightning) with a ViT backbone: ``state_dict`` with ``backbone.`` (timm names), the momentum copy,
    a projector and the online ``classifier``; ``args``: the args.json its checkpointer writes beside it."""
    import json

    enc = vit_tensors(dim, 2, 16, 32, seed=11)
    sd = {**pre("backbone.", enc), **pre("momentum_backbone.", vit_tensors(dim, 2, 16, 32, seed=12)),
          "projector.0.weight": torch.randn(64, dim), "classifier.weight": torch.zeros(10, dim),
          "classifier.bias": torch.zeros(10)}
    path = tmp / "mocov3-vit-ep=99.ckpt"
    torch.save({"epoch": 99, "global_step": 1000, "pytorch-lightning_version": "2.0.0", "state_dict": sd,
                "optimizer_states": [], "lr_schedulers": []}, path)
    if args is not None:
        (tmp / "args.json").write_text(json.dumps(args))
    return path


@pytest.mark.parametrize("method,heads", [("mocov3", 12), ("dino", 6)])
def test_a_solo_learn_vit_takes_method_and_heads_from_its_args_json(tmp_path: Path, method: str, heads: int) -> None:
    """solo-learn's ViT-S has 12 heads for mocov3 (vit_mocov3.py) and timm's 6 otherwise: args.json says which."""
    src = _solo_vit(tmp_path, 384, {"method": method, "backbone": {"name": "vit_small"}})
    prov = convert(src, tmp_path / "out.pkl", log=lambda line: None)
    assert prov["format"] == "solo-learn-vit" and prov["arch"]["num_heads"] == heads
    assert "args.json" in prov["arch"]["heads_source"] and method in prov["arch"]["heads_source"]
    assert prov["method"] == {"mocov3": "MoCo v3", "dino": "DINO"}[method]
    assert prov["verification"]["max_relative_error"]["last_block_patch_tokens"] < 1e-5


def test_a_solo_learn_vit_s_without_args_json_is_refused_then_b_needs_none(tmp_path: Path) -> None:
    src = _solo_vit(tmp_path, 384, None)
    with pytest.raises(ConvertError, match="12 for mocov3 and mae: the args.json .* says which; give it with --vit-heads"):
        convert(src, tmp_path / "out.pkl", log=lambda line: None)
    assert convert(src, tmp_path / "out.pkl", log=lambda line: None, vit_heads=12)["arch"]["num_heads"] == 12
    (tmp_path / "b").mkdir()
    prov = convert(_solo_vit(tmp_path / "b", 768, None), tmp_path / "b.pkl", log=lambda line: None)
    assert prov["arch"]["num_heads"] == 12 and prov["method"] == "unknown"
