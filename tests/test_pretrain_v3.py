"""MoCo v3 pretraining (``--preset v3`` / ``v3-vit``, ``-a vit_*``): loss, momentum and schedules, the ViT's frozen
patch projection and sin-cos position embedding, the predictor's place, LARS, and tiny CPU runs through the CLI
(checkpoint keys as facebookresearch/moco-v3 names them, provenance, exact resume, the ResNet path)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from pretrain import main_moco
from pretrain.moco_v3 import MoCoV3, build_mlp, build_moco_v3, symmetric_logits, v3_loss, v3_topk
from pretrain.optim import LARS
from pretrain.schedule import cosine_momentum, warmup_cosine_lr
from pretrain.synthetic import write_image_folder
from pretrain.vits import build_vit

TINY_VIT = ["-a", "vit_tiny", "-b", "8", "--crop-size", "32", "--moco-mlp-dim", "64", "--epochs", "2",
            "--warmup-epochs", "1", "--workers", "0", "-p", "100", "--no-tensorboard", "--seed", "5"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("v3data")
    write_image_folder(root / "train", classes=3, per_class=8, size=36)  # 24 images: 3 batches of 8 per epoch
    return root


def losses(folder: Path) -> list[float]:
    with open(folder / "metrics.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# --- loss ---------------------------------------------------------------------------------------------
def test_loss_equals_hand_computed_symmetric_infonce_scaled_by_2t():
    g = torch.Generator().manual_seed(0)
    q1, q2, k1, k2 = (torch.randn(3, 4, generator=g) for _ in range(4))
    T = 0.2
    logits = symmetric_logits(q1, q2, k1, k2, T)
    assert logits.shape == (6, 3)

    def infonce(q: torch.Tensor, k: torch.Tensor) -> float:
        total = 0.0
        for i in range(3):
            sims = [float(F.normalize(q[i], dim=0) @ F.normalize(k[j], dim=0)) / T for j in range(3)]
            total += -sims[i] + math.log(sum(math.exp(s) for s in sims))
        return total / 3

    expected = (infonce(q1, k2) + infonce(q2, k1)) * 2 * T
    assert float(v3_loss(logits, T)) == pytest.approx(expected, rel=1e-5)
    swapped = v3_loss(symmetric_logits(q2, q1, k2, k1, T), T)  # the two views exchanged
    assert float(swapped) == pytest.approx(expected, rel=1e-5)
    one_sided = infonce(q1, k2) * 2 * 2 * T
    assert abs(one_sided - expected) > 1e-3  # the second term matters
    # top-1 counts a row when its diagonal key wins: identical q and k make every row right
    same = symmetric_logits(q1, q1, q1, q1, T)
    assert float(v3_topk(same)[0]) == 100.0


# --- momentum and schedules ---------------------------------------------------------------------------
def tiny_v3(m: float = 0.9) -> MoCoV3:
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(12, 6))
    return MoCoV3(enc, build_mlp(2, 6, 8, 6), m=m, T=1.0)


def test_momentum_update_and_cosine_ramp():
    model = tiny_v3(m=0.9)
    base, mom = model.base_encoder[1].weight, model.momentum_encoder[1].weight
    assert torch.equal(base, mom) and not mom.requires_grad
    with torch.no_grad():
        base.add_(1.0)
    before = mom.detach().clone()
    model.momentum_update()
    assert torch.allclose(mom, 0.9 * before + 0.1 * base.detach())
    assert cosine_momentum(0.99, 0, 100) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 50, 100) == pytest.approx(0.995)
    assert cosine_momentum(0.99, 100, 100) == pytest.approx(1.0)
    assert warmup_cosine_lr(1.0, 0, 300, 40) == 0.0
    assert warmup_cosine_lr(1.0, 20, 300, 40) == pytest.approx(0.5)
    assert warmup_cosine_lr(1.0, 40, 300, 40) == pytest.approx(1.0)
    assert warmup_cosine_lr(1.0, 170, 300, 40) == pytest.approx(0.5)
    assert warmup_cosine_lr(1.0, 300, 300, 40) == pytest.approx(0.0, abs=1e-12)


def test_predictor_only_on_the_query_branch():
    model = tiny_v3(m=1.0)  # m = 1: the momentum encoder stays equal to the base encoder
    model.train()
    x1, x2 = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    logits, _ = model(x1, x2)
    with torch.no_grad():
        q1 = F.normalize(model.predictor(model.base_encoder(x1)), dim=1)
        k2 = F.normalize(model.momentum_encoder(x2), dim=1)
        k2_through_predictor = F.normalize(model.predictor(model.momentum_encoder(x2)), dim=1)
    assert torch.allclose(logits[:4], q1 @ k2.T, atol=1e-5)
    assert not torch.allclose(logits[:4], q1 @ k2_through_predictor.T, atol=1e-3)
    model.loss(logits).backward()
    assert all(p.grad is not None for p in model.predictor.parameters())
    assert all(p.grad is None for p in model.momentum_encoder.parameters())
    assert not any(k.startswith("momentum_encoder") and "predictor" in k for k in model.state_dict())


def test_mlp_heads_follow_moco_v3():
    vit, resnet = build_moco_v3("vit_tiny", dim=16, mlp_dim=32, img_size=32), build_moco_v3("resnet18", dim=16, mlp_dim=32)
    kinds = lambda seq: [type(m).__name__ for m in seq]  # noqa: E731
    assert kinds(vit.base_encoder.head) == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear", "BatchNorm1d"]
    assert kinds(resnet.base_encoder.fc) == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert kinds(vit.predictor) == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert kinds(resnet.predictor) == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert not vit.base_encoder.head[-1].affine and vit.base_encoder.head[1].affine
    assert all(m.bias is None for m in vit.predictor if isinstance(m, nn.Linear))
    assert vit.base_encoder.head[0].in_features == 96 and resnet.base_encoder.fc[0].in_features == 512
    # zero_init_residual, as moco-v3 builds its ResNets
    assert float(resnet.base_encoder.layer1[0].bn2.weight.detach().abs().sum()) == 0.0


# --- the ViT ------------------------------------------------------------------------------------------
def test_patch_projection_frozen_and_position_embedding_fixed_sincos():
    torch.manual_seed(0)
    model = build_moco_v3("vit_tiny", dim=16, mlp_dim=32, img_size=64, stop_grad_conv1=True)
    enc = model.base_encoder
    proj, pos = enc.patch_embed.proj.weight, enc.pos_embed
    assert not proj.requires_grad and not pos.requires_grad
    # fixed 2-D sin-cos: patch n at row n // 4, column n % 4 of the 4 x 4 grid; class token 0
    d, quarter = 96, 24
    omega = [1.0 / 10000 ** (j / quarter) for j in range(quarter)]
    assert torch.equal(pos[0, 0], torch.zeros(d))
    n = 1 * 4 + 2  # row 1, column 2
    token = pos[0, 1 + n]
    assert torch.allclose(token[:quarter], torch.tensor([math.sin(1 * w) for w in omega]), atol=1e-6)
    assert torch.allclose(token[quarter:2 * quarter], torch.tensor([math.cos(1 * w) for w in omega]), atol=1e-6)
    assert torch.allclose(token[2 * quarter:3 * quarter], torch.tensor([math.sin(2 * w) for w in omega]), atol=1e-6)
    assert torch.allclose(token[3 * quarter:], torch.tensor([math.cos(2 * w) for w in omega]), atol=1e-6)
    proj0, pos0 = proj.detach().clone(), pos.detach().clone()
    qkv0 = enc.blocks[0].attn.qkv.weight.detach().clone()
    params = model.trainable_parameters()
    assert all(p is not proj and p is not pos for p in params)
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    x1, x2 = torch.randn(4, 3, 64, 64), torch.randn(4, 3, 64, 64)
    model.loss(model(x1, x2)[0]).backward()
    assert proj.grad is None and pos.grad is None
    opt.step()
    assert torch.equal(proj, proj0) and torch.equal(pos, pos0)
    assert not torch.equal(enc.blocks[0].attn.qkv.weight, qkv0)


def test_vit_keys_and_init_follow_timm_and_moco_v3():
    vit = build_vit("vit_small", img_size=224, num_classes=10)
    keys = set(vit.state_dict())
    expected = {"patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed", "norm.weight",
                "norm.bias", "head.weight", "head.bias"}
    for i in (0, 11):
        expected |= {f"blocks.{i}.{name}" for name in ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
                                                       "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
                                                       "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias")}
    assert expected <= keys and "blocks.12.norm1.weight" not in keys
    assert vit.pos_embed.shape == (1, 197, 384) and vit.state_dict()["blocks.0.mlp.fc1.weight"].shape == (1536, 384)
    qkv_bound = math.sqrt(6 / (384 + 384))  # q, k, v treated as separate 384 x 384 matrices
    assert float(vit.blocks[0].attn.qkv.weight.detach().abs().max()) <= qkv_bound
    assert float(vit.blocks[0].attn.qkv.weight.detach().abs().max()) > math.sqrt(6 / (3 * 384 + 384))
    assert float(vit.blocks[0].attn.qkv.bias.detach().abs().sum()) == 0.0
    assert vit(torch.randn(2, 3, 224, 224)).shape == (2, 10)


def test_lars_step_matches_its_definition():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # norm 5
    b = nn.Parameter(torch.tensor([1.0]))
    opt = LARS([w, b], lr=0.1, weight_decay=0.5, momentum=0.9)
    w.grad, b.grad = torch.tensor([[0.5, 0.0]]), torch.tensor([2.0])
    g = torch.tensor([[0.5, 0.0]]) + 0.5 * torch.tensor([[3.0, 4.0]])
    expected_w = torch.tensor([[3.0, 4.0]]) - 0.1 * (0.001 * 5.0 / float(g.norm())) * g
    opt.step()
    assert torch.allclose(w, expected_w) and torch.allclose(b, torch.tensor([1.0 - 0.1 * 2.0]))  # 1-D: no decay, no scaling


# --- through the command line ---------------------------------------------------------------------------
def test_presets_and_vit_arch_select_the_published_recipes():
    r50 = main_moco.parse_args(["--preset", "v3", "DATA"])
    assert (r50.arch, r50.mechanism, r50.optimizer, r50.base_lr, r50.weight_decay, r50.moco_t, r50.moco_m,
            r50.moco_m_cos, r50.epochs, r50.warmup_epochs, r50.crop_min, r50.batch_size, r50.moco_dim,
            r50.moco_mlp_dim) == ("resnet50", "moco-v3", "lars", 0.6, 1e-6, 1.0, 0.99, True, 100, 10, 0.2, 4096, 256, 4096)
    vit = main_moco.parse_args(["-a", "vit_base", "DATA"])
    assert vit.preset == "v3-vit" and vit.arch == "vit_base"
    assert (vit.optimizer, vit.base_lr, vit.weight_decay, vit.moco_t, vit.epochs, vit.warmup_epochs,
            vit.stop_grad_conv1, vit.moco_m_cos) == ("adamw", 1.5e-4, 0.1, 0.2, 300, 40, True, True)
    assert main_moco.parse_args(["--preset", "v3", "-a", "vit_small", "DATA"]).preset == "v3-vit"
    assert main_moco.parse_args(["--preset", "v3-vit", "--moco-t", "0.1", "DATA"]).moco_t == 0.1  # flags win


def test_vit_with_a_v2_preset_is_refused(data, tmp_path):
    with pytest.raises(SystemExit, match="MoCo v3 only"):
        main_moco.main(["--preset", "v2", "-a", "vit_tiny", "--output-dir", str(tmp_path), str(data)])


def test_tiny_vit_cli_writes_moco_v3_checkpoint_and_resumes_exactly(data, tmp_path):
    full = tmp_path / "full"
    last = main_moco.main([*TINY_VIT, "--max-iters", "3", "--output-dir", str(full), str(data)])
    ck = load(last)
    assert {"epoch", "arch", "state_dict", "optimizer", "scaler", "suite"} <= set(ck)
    assert ck["arch"] == "vit_tiny" and ck["epoch"] == 1 and ck["global_step"] == 3
    sd = ck["state_dict"]
    assert all(k.startswith(("module.base_encoder.", "module.momentum_encoder.", "module.predictor.")) for k in sd)
    for prefix in ("module.base_encoder.", "module.momentum_encoder."):
        for name in ("patch_embed.proj.weight", "cls_token", "pos_embed", "blocks.3.norm1.weight", "blocks.3.attn.qkv.bias",
                     "blocks.3.attn.proj.weight", "blocks.3.norm2.bias", "blocks.3.mlp.fc1.weight", "blocks.3.mlp.fc2.bias",
                     "norm.weight", "head.0.weight", "head.6.weight", "head.7.running_var"):
            assert prefix + name in sd, prefix + name
    assert sd["module.base_encoder.pos_embed"].shape == (1, 5, 96)  # 2 x 2 patches of 16 at 32 px + class token
    assert sd["module.base_encoder.patch_embed.proj.weight"].shape == (96, 3, 16, 16)
    assert sd["module.predictor.0.weight"].shape == (64, 256) and "module.predictor.4.running_mean" in sd
    assert not any("queue" in k or "encoder_q" in k for k in sd)
    suite = ck["suite"]
    assert suite["name"] == "moco-transfer-bench" and suite["moco_version"] == "v3"
    assert suite["args"]["mechanism"] == "moco-v3" and suite["args"]["preset"] == "v3-vit"
    assert suite["vit"] == {"embed_dim": 96, "depth": 4, "num_heads": 3, "patch_size": 16, "mlp_ratio": 4.0, "img_size": 32}
    frozen = sd["module.base_encoder.patch_embed.proj.weight"]  # momentum-averaged with itself: equal up to rounding
    assert torch.allclose(frozen, sd["module.momentum_encoder.patch_embed.proj.weight"], atol=1e-7)

    part = tmp_path / "part"
    main_moco.main([*TINY_VIT, "--max-iters", "2", "--output-dir", str(part), str(data)])
    resumed = main_moco.main([*TINY_VIT, "--max-iters", "3", "--output-dir", str(part), "--resume", "auto", str(data)])
    assert losses(part) == pytest.approx(losses(full), abs=0, rel=0) and len(losses(part)) == 3
    sd_resumed = load(resumed)["state_dict"]
    assert all(torch.equal(sd[k], sd_resumed[k]) for k in sd)


def test_resnet_v3_runs_a_step_with_lars(data, tmp_path):
    last = main_moco.main(["--preset", "v3", "-a", "resnet18", "-b", "8", "--crop-size", "32", "--moco-mlp-dim", "64",
                           "--epochs", "2", "--warmup-epochs", "1", "--max-iters", "1", "--workers", "0", "-p", "100",
                           "--no-tensorboard", "--seed", "2", "--output-dir", str(tmp_path), str(data)])
    ck = load(last)
    sd = ck["state_dict"]
    assert ck["arch"] == "resnet18" and ck["suite"]["moco_version"] == "v3" and ck["suite"]["args"]["optimizer"] == "lars"
    assert sd["module.base_encoder.conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["module.base_encoder.fc.0.weight"].shape == (64, 512) and sd["module.momentum_encoder.fc.3.weight"].shape == (256, 64)
    assert "module.base_encoder.fc.4.running_mean" in sd and "module.base_encoder.fc.4.weight" not in sd  # non-affine
    assert "module.predictor.3.weight" in sd and not any(k.startswith("module.predictor.4") for k in sd)
    assert all("mu" in s for s in ck["optimizer"]["state"].values()) and ck["optimizer"]["state"]
    assert math.isfinite(losses(tmp_path)[0])
