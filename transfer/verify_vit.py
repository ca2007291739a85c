"""Check a converted ViT inside Detectron2: it loads cleanly and computes the source network's patch features.

Builds Detectron2's ``ViT`` (``transfer.vit_convert.build_d2_vit``: ViTDet's relative positions, zero-initialised;
global attention in every block; the pre-training input size, so ``pos_embed`` is not interpolated) inside
``SimpleFeaturePyramid`` as ``backbone.net``, loads the ``.pkl`` through ``DetectionCheckpointer`` (the path training
uses), and compares its last-block output with a reference timm-style forward on the source tensors (patch
embedding, ``pos_embed``, the blocks, no final norm) run *without* the cls token: Detectron2's ViT has none, and
the detector uses patch tokens only, as ViTDet. How much the absent cls token changes those features (the
reference run with it) is recorded beside, for information. Any unfilled, unused or mis-shaped tensor
(``rel_pos_h/w`` excepted: left to Detectron2's zero init) or a feature mismatch is a :class:`ConvertError`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from transfer.checkpoint_io import ConvertError
from transfer.verify import load_every_tensor
from transfer.vit_convert import PREFIX, ViTSpec, build_d2_vit


def reference_tokens(t: dict[str, torch.Tensor], spec: ViTSpec, x: torch.Tensor, with_cls: bool = False) -> torch.Tensor:
    """Patch tokens (B, N, D) after the last block of a timm-style ViT on the tensors ``t`` (no final norm);
    ``with_cls``: the pre-training forward, the cls token (and its position) prepended, then dropped at the end."""
    dim, heads = spec.embed_dim, spec.num_heads
    x = F.conv2d(x, t["patch_embed.proj.weight"], t.get("patch_embed.proj.bias"), stride=spec.patch_size)
    x = x.flatten(2).transpose(1, 2)
    pos = t["pos_embed"]
    x = x + (pos[:, 1:] if spec.pretrain_use_cls_token else pos)
    if with_cls:
        cls = t["cls_token"] + (pos[:, :1] if spec.pretrain_use_cls_token else 0)
        x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
    b, n, _ = x.shape
    for i in range(spec.depth):
        p = lambda name: t.get(f"blocks.{i}.{name}")  # noqa: E731
        h = F.layer_norm(x, (dim,), p("norm1.weight"), p("norm1.bias"), spec.norm_eps)
        q, k, v = F.linear(h, p("attn.qkv.weight"), p("attn.qkv.bias")).reshape(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5).softmax(dim=-1)
        x = x + F.linear((attn @ v).transpose(1, 2).reshape(b, n, dim), p("attn.proj.weight"), p("attn.proj.bias"))
        h = F.layer_norm(x, (dim,), p("norm2.weight"), p("norm2.bias"), spec.norm_eps)
        x = x + F.linear(F.gelu(F.linear(h, p("mlp.fc1.weight"), p("mlp.fc1.bias"))), p("mlp.fc2.weight"),
                         p("mlp.fc2.bias"))
    return x[:, 1:] if with_cls else x


class _Detector(nn.Module):
    """Only the backbone of a ViTDet model: ``backbone`` is a ``SimpleFeaturePyramid`` whose ``net`` is the ViT."""

    def __init__(self, spec: ViTSpec) -> None:
        super().__init__()
        from detectron2.modeling.backbone.vit import SimpleFeaturePyramid

        self.backbone = SimpleFeaturePyramid(build_d2_vit(spec), "last_feat", out_channels=8, scale_factors=(1.0,))


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return (got - want).abs().max().item() / (want.abs().max().item() + 1e-6)


def verify_vit_pkl(pkl: Path, spec: ViTSpec, source: dict[str, torch.Tensor], rtol: float = 1e-4) -> dict:
    """Load ``pkl`` into Detectron2's ViT and compare patch features with the source tensors; return a summary."""
    model = _Detector(spec).eval()
    # the ViT's parameters (not the pyramid's, which the detector learns); relative positions stay zero, as ViTDet's
    load_every_tensor(model, pkl, within=PREFIX, may_stay_empty=("rel_pos_h", "rel_pos_w"))
    size = spec.pretrain_img_size
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    src = {k: v.detach().float() for k, v in source.items()}
    with torch.no_grad():
        got = model.backbone.net(x)["last_feat"].flatten(2).transpose(1, 2)
        want = reference_tokens(src, spec, x)
        with_cls = _rel(got, reference_tokens(src, spec, x, with_cls=True)) if "cls_token" in src else None
    err = _rel(got, want) if got.shape == want.shape else float("inf")
    if not err <= rtol:
        raise ConvertError(f"{pkl.name}: verification failed: Detectron2 ViT patch features differ from the source "
                           f"network (relative max error {err:.2e} > {rtol:.0e}); the key mapping or size is wrong")
    return {"max_relative_error": {"last_block_patch_tokens": err}, "input": [2, 3, size, size],
            "compared": "patch tokens after the last block (no final norm), reference run without the cls token",
            "with_cls_token_relative_difference": with_cls,
            "rel_pos": "not in the file: Detectron2's zero init (rel_pos_zero_init=True, as ViTDet)"}
