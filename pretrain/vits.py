"""Vision Transformers for MoCo v3 (Chen, Xie, He, ICCV 2021), with timm's parameter names.

The architecture and initialisation are those of facebookresearch/moco-v3 ``vits.py`` (a timm
``VisionTransformer`` subclass); timm is not a dependency, so the network is written here with the same
state-dict keys, which lets ``transfer/convert.py`` read this suite's checkpoints and the official ones alike::

    patch_embed.proj.{weight,bias}   cls_token   pos_embed
    blocks.{i}.norm1.*  blocks.{i}.attn.qkv.*  blocks.{i}.attn.proj.*  blocks.{i}.norm2.*
    blocks.{i}.mlp.fc1.*  blocks.{i}.mlp.fc2.*   norm.*   head.*

Choices and sources (moco-v3 ``vits.py``; paper Sec. 4.2 and 5):

* pre-norm blocks, LayerNorm eps 1e-6, MLP ratio 4, GELU, qkv with bias, class token read by ``head``;
* position embedding: fixed 2-D sin-cos (paper Sec. 5), a zero vector for the class token, not learned;
* init: Xavier-uniform for every Linear, the qkv weight treated as three ``dim x dim`` matrices, biases 0,
  class token N(0, 1e-6), patch projection Xavier-uniform over its ``3 * p * p`` fan-in;
* ``stop_grad_conv1``: the patch projection stays at its random initialisation (paper Sec. 4.2,
  "random patch projection"; ``--stop-grad-conv1`` in the repository).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class ViTSize:
    """The shape of a ViT; ``img_size`` is set at build time (the training crop)."""

    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 16
    mlp_ratio: float = 4.0


# vit_small / vit_base: moco-v3 vits.py (ViT-S 12 heads, not DeiT's 6: paper Table 2 footnote); vit_tiny:
# this suite's CPU-sized smoke-test network (not a published model).
VIT_SIZES: dict[str, ViTSize] = {
    "vit_tiny": ViTSize(embed_dim=96, depth=4, num_heads=3, patch_size=16),
    "vit_small": ViTSize(embed_dim=384, depth=12, num_heads=12, patch_size=16),
    "vit_base": ViTSize(embed_dim=768, depth=12, num_heads=12, patch_size=16),
}
VIT_ARCHS = tuple(VIT_SIZES)


def is_vit(arch: str) -> bool:
    return arch.startswith("vit")


def sincos_position_embedding(grid: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """``(1, 1 + grid**2, dim)``: zeros for the class token, then per patch ``[sin(a w), cos(a w), sin(b w),
    cos(b w)]`` with ``w_j = temperature^(-j / (dim/4))``. Patch ``n`` has ``a = n // grid`` (row) and
    ``b = n % grid`` (column), the order moco-v3's ``build_2d_sincos_position_embedding`` produces."""
    if dim % 4:
        raise ValueError(f"embed dim {dim} must be divisible by 4 for the 2-D sin-cos position embedding")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    n = torch.arange(grid * grid, dtype=torch.float32)
    a, b = torch.div(n, grid, rounding_mode="floor"), n % grid
    wa, wb = a[:, None] * omega[None], b[:, None] * omega[None]
    table = torch.cat([wa.sin(), wa.cos(), wb.sin(), wb.cos()], dim=1)
    return torch.cat([torch.zeros(1, dim), table])[None]


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` patches projected to ``dim`` by a strided convolution."""

    def __init__(self, img_size: int, patch_size: int, dim: int) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"image size {img_size} is not a multiple of the patch size {patch_size}")
        self.img_size, self.patch_size = img_size, patch_size
        self.grid = img_size // patch_size
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"input of {tuple(x.shape[-2:])} pixels, model built for {self.img_size}")
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT whose ``head`` maps the final class token to ``num_classes`` (MoCo v3 replaces it by the projector)."""

    def __init__(self, size: ViTSize, img_size: int = 224, num_classes: int = 1000, stop_grad_conv1: bool = False) -> None:
        super().__init__()
        d = size.embed_dim
        self.size, self.img_size, self.embed_dim = size, img_size, d
        self.patch_embed = PatchEmbed(img_size, size.patch_size, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(sincos_position_embedding(self.patch_embed.grid, d), requires_grad=False)
        self.blocks = nn.Sequential(*(Block(d, size.num_heads, size.mlp_ratio) for _ in range(size.depth)))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, num_classes)
        self._init_weights(stop_grad_conv1)

    def _init_weights(self, stop_grad_conv1: bool) -> None:
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                fan_out = m.weight.shape[0] // 3 if name.endswith("qkv") else m.weight.shape[0]
                bound = math.sqrt(6.0 / (fan_out + m.weight.shape[1]))
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.cls_token, std=1e-6)
        proj = self.patch_embed.proj
        bound = math.sqrt(6.0 / (3 * self.size.patch_size ** 2 + self.embed_dim))
        nn.init.uniform_(proj.weight, -bound, bound)
        nn.init.zeros_(proj.bias)
        if stop_grad_conv1:
            proj.weight.requires_grad_(False)
            proj.bias.requires_grad_(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised class token (the input of ``head``)."""
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.blocks(x))[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def record(self) -> dict[str, int | float]:
        """The architecture as plain data (stored in checkpoints for the converter)."""
        return {**asdict(self.size), "img_size": self.img_size}


def build_vit(arch: str, img_size: int = 224, num_classes: int = 1000, stop_grad_conv1: bool = False) -> VisionTransformer:
    """``vit_tiny`` / ``vit_small`` / ``vit_base`` for ``img_size`` inputs."""
    if arch not in VIT_SIZES:
        raise ValueError(f"unknown ViT {arch!r}; choose one of {', '.join(VIT_ARCHS)}")
    return VisionTransformer(VIT_SIZES[arch], img_size, num_classes, stop_grad_conv1)
