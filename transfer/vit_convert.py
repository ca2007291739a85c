"""Vision Transformer checkpoints -> Detectron2's ViT backbone as ViTDet builds it (issue 29).

ViTDet wraps ``detectron2.modeling.backbone.vit.ViT`` in ``SimpleFeaturePyramid`` (``model.backbone.net``), so the
``.pkl`` holds ``backbone.net.<ViT parameter>`` with ``matching_heuristics`` False (exact names):
``patch_embed.proj.{weight,bias}``, ``pos_embed`` (the pre-training grid with its cls entry: Detectron2's
``get_abs_pos`` drops the cls entry and interpolates bicubically to the input) and per block ``norm1``,
``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``. Not written: ``attn.rel_pos_h/w`` (their shape
depends on the fine-tuning input and window size; ViTDet zero-initialises them: Detectron2's default
``rel_pos_zero_init=True`` fills them, and its checkpointer reports them as not found in the file). Dropped, with
the reason recorded: the cls token (Detectron2's ViT has none: the detector uses patch tokens only, as ViTDet),
the final norm, the head (classifier or MoCo v3's projector), MAE's decoder.

The size comes from the tensors (embed dim, depth, patch size, pre-training grid, MLP ratio, qkv bias); the number of
attention heads cannot, so it is read from the checkpoint's own arch name (MoCo v3 ``arch``, DINO ``args.arch``,
MAE/DeiT ``args.model``) through the source repository's table, else from that table by embed dim, else
``--vit-heads``. It is written to the provenance as ``arch`` (``{"type": "vit", ...}``) for ``MODEL.VIT.*``.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from transfer.checkpoint_io import ConvertError

PREFIX = "backbone.net."
NORM_EPS = 1e-6  # LayerNorm eps of every source below and of ViTDet's config (partial(nn.LayerNorm, eps=1e-6))
SIZES = {"tiny": 192, "small": 384, "base": 768, "large": 1024, "huge": 1280}  # the embed dim each name means
# heads per size name, as each source repository builds it (heads are not in any tensor's shape)
HEADS: dict[str, tuple[str, dict[str, int]]] = {
    "moco-v3": ("facebookresearch/moco-v3 vits.py", {"small": 12, "base": 12}),
    "dino": ("facebookresearch/dino vision_transformer.py", {"tiny": 3, "small": 6, "base": 12}),
    "mae": ("facebookresearch/mae models_mae.py", {"base": 12, "large": 16, "huge": 16}),
    "timm": ("huggingface/pytorch-image-models timm/models/vision_transformer.py, deit.py",
             {"tiny": 3, "small": 6, "base": 12, "large": 16, "huge": 16}),
    # ViT-T/S heads depend on the method (transfer/sidecars.py reads them from args.json): B and L only here
    "solo-learn": ("vturrisi/solo-learn solo/backbones/vit/", {"base": 12, "large": 16}),
}
HEADS_HINT = {"solo-learn": "solo-learn builds ViT-T/S with 3/6 heads, or 12 for mocov3 and mae: the args.json its "
                            "checkpointer writes beside the checkpoint says which"}
_BLOCK_PARTS = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
_KEEP = re.compile(r"^(patch_embed\.proj\.(weight|bias)|pos_embed|blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|"
                   r"mlp\.fc1|mlp\.fc2)\.(weight|bias))$")
_DROP = ((re.compile(r"^cls_token$"), "cls token: Detectron2's ViT has none (patch tokens only, as ViTDet)"),
         (re.compile(r"^(norm|fc_norm)\."), "final norm: Detectron2's ViT has none (ViTDet drops it)"),
         (re.compile(r"^(head|head_dist|pre_logits)\."), "head (classifier or projector)"),
         (re.compile(r"^decoder_"), "MAE decoder"),
         (re.compile(r"^mask_token$"), "mask token (pre-training only)"))


@dataclass(frozen=True)
class ViTSpec:
    """The ViT's size, as Detectron2's ``ViT`` takes it."""

    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    pretrain_img_size: int
    pretrain_use_cls_token: bool
    mlp_ratio: float
    qkv_bias: bool
    heads_source: str
    norm_eps: float = NORM_EPS

    def as_dict(self) -> dict[str, Any]:
        return {"type": "vit", **asdict(self)}

    @property
    def name(self) -> str:
        return f"ViT (embed {self.embed_dim}, depth {self.depth}, {self.num_heads} heads, patch {self.patch_size})"


def arch_name(obj: Any) -> str | None:
    """The model name a checkpoint records: MoCo v3's top-level ``arch``, DINO's ``args.arch``, MAE/DeiT's
    ``args.model`` (``args`` an ``argparse.Namespace`` read as inert data, or a dict)."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("arch"), str):
        return obj["arch"][:80]
    args = obj.get("args")
    args = args.as_dict() if hasattr(args, "as_dict") else args
    if isinstance(args, dict):
        for key in ("arch", "model"):
            if isinstance(args.get(key), str):
                return args[key][:80]
    return None


def recorded_heads(obj: Any) -> int | None:
    """The head count this suite's own pretraining records (``suite.vit.num_heads``, pretrain/main_moco.py)."""
    suite = obj.get("suite") if isinstance(obj, dict) else None
    vit = suite.get("vit") if isinstance(suite, dict) else None
    heads = vit.get("num_heads") if isinstance(vit, dict) else None
    return heads if isinstance(heads, int) and not isinstance(heads, bool) and heads > 0 else None


def _heads(table: str, name: str | None, dim: int, override: int | None, where: str,
           recorded: int | None = None, told: tuple[int, str] | None = None) -> tuple[int, str]:
    if override is not None:
        return override, "--vit-heads"
    if recorded is not None:
        return recorded, "the checkpoint's own record (suite.vit.num_heads, this suite's pretraining)"
    if told is not None:
        return told
    source, by_size = HEADS.get(table, HEADS["timm"])
    size = re.search(r"(?:^|_)(tiny|small|base|large|huge)(?:_|$)", name or "")
    if size and size.group(1) in by_size:
        return by_size[size.group(1)], f"the checkpoint's arch {name!r} in {source}"
    for size_name, heads in by_size.items():
        if SIZES[size_name] == dim:
            return heads, f"embed dim {dim} ({size_name}) in {source}"
    why = (HEADS_HINT[table] if table in HEADS_HINT
           else f"the checkpoint names no known arch ({name!r}) and {source} has no {dim}-dim model")
    raise ConvertError(f"{where}: Vision Transformer with embed dim {dim}: its number of attention heads is not in "
                       f"its shapes, and {why}; give it with --vit-heads N")


def infer_spec(t: dict[str, torch.Tensor], where: str, *, table: str = "timm", name: str | None = None,
               heads: int | None = None, recorded: int | None = None, told: tuple[int, str] | None = None) -> ViTSpec:
    """The ViT's size from its tensors (heads as the module doc says); one-line :class:`ConvertError` otherwise."""
    w = t.get("patch_embed.proj.weight")
    if w is None or w.dim() != 4 or w.shape[1] != 3 or w.shape[2] != w.shape[3]:
        shape = None if w is None else tuple(w.shape)
        raise ConvertError(f"{where}: Vision Transformer patch_embed.proj.weight has shape {shape}, expected "
                           "(dim, 3, p, p): a conv stem or non-square patches cannot go into Detectron2's ViT")
    dim, patch = int(w.shape[0]), int(w.shape[2])
    pos = t.get("pos_embed")
    if pos is None or pos.dim() != 3 or pos.shape[0] != 1 or pos.shape[2] != dim:
        raise ConvertError(f"{where}: Vision Transformer without a (1, N, {dim}) pos_embed "
                           f"({'absent' if pos is None else tuple(pos.shape)}); Detectron2's ViT needs one")
    n = int(pos.shape[1])
    grid, cls = 0, False
    for cls in (True, False):
        grid = math.isqrt(max(n - cls, 0))
        if grid > 0 and grid * grid == n - cls:
            break
    else:
        raise ConvertError(f"{where}: Vision Transformer pos_embed has {n} positions, neither a square grid nor one "
                           "plus a cls entry (extra tokens such as DeiT's distillation token are not supported)")
    depth = len({int(k.split(".")[1]) for k in t if k.startswith("blocks.")})
    if depth == 0 or any(f"blocks.{i}.attn.qkv.weight" not in t for i in range(depth)):
        raise ConvertError(f"{where}: Vision Transformer blocks are not numbered 0..{depth - 1} with an attn.qkv each")
    hidden = t.get("blocks.0.mlp.fc1.weight")
    if hidden is None:
        raise ConvertError(f"{where}: Vision Transformer block 0 has no mlp.fc1.weight")
    qkv_bias = "blocks.0.attn.qkv.bias" in t
    want = {"norm1.weight": (dim,), "norm1.bias": (dim,), "attn.qkv.weight": (3 * dim, dim),
            "attn.proj.weight": (dim, dim), "attn.proj.bias": (dim,), "norm2.weight": (dim,), "norm2.bias": (dim,),
            "mlp.fc1.weight": (hidden.shape[0], dim), "mlp.fc1.bias": (hidden.shape[0],),
            "mlp.fc2.weight": (dim, hidden.shape[0]), "mlp.fc2.bias": (dim,),
            **({"attn.qkv.bias": (3 * dim,)} if qkv_bias else {})}
    for i in range(depth):
        for part, shape in want.items():
            got = t.get(f"blocks.{i}.{part}")
            if got is None or tuple(got.shape) != shape:
                raise ConvertError(f"{where}: Vision Transformer blocks.{i}.{part} is "
                                   f"{'missing' if got is None else tuple(got.shape)}, expected {shape}")
    ratio = hidden.shape[0] / dim
    if int(dim * ratio) != hidden.shape[0]:
        raise ConvertError(f"{where}: Vision Transformer MLP width {hidden.shape[0]} is not a ratio of embed dim {dim} "
                           "that Detectron2's ViT can rebuild")
    n_heads, source = _heads(table, name, dim, heads, where, recorded, told)
    if n_heads <= 0 or dim % n_heads:
        raise ConvertError(f"{where}: {n_heads} attention heads (from {source}) do not divide embed dim {dim}")
    return ViTSpec(dim, depth, n_heads, patch, grid * patch, cls, ratio, qkv_bias, source)


def split(t: dict[str, torch.Tensor], where: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(the tensors Detectron2's ViT takes, {dropped name: why}); any other tensor is refused in one line."""
    kept, dropped = {}, {}
    for k, v in t.items():
        if _KEEP.match(k):
            kept[k] = v
            continue
        why = next((reason for rx, reason in _DROP if rx.search(k)), None)
        if why is None and ".attention.attention." in k:  # transformers-vit renamer: an incomplete q/k/v set
            raise ConvertError(f"{where}: transformers ViT tensor {k!r} without the rest of its query/key/value set "
                               "(a truncated or edited file?)")
        if why is None:
            raise ConvertError(f"{where}: Vision Transformer tensor {k!r} has no place in Detectron2's ViT "
                               "(layer scale, register tokens, qk-norm and the like are not supported)")
        dropped[k] = why
    return kept, dropped


def import_timm_layers() -> None:
    """Import ``timm.models.layers`` once, quietly: Detectron2's ViT blocks import ``Mlp`` and ``DropPath`` from it,
    and timm warns that this path is deprecated (the warning is timm's to Detectron2, not the user's)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import timm.models.layers  # noqa: F401


def build_d2_vit(spec: ViTSpec, img_size: int | None = None) -> nn.Module:
    """Detectron2's ``ViT`` for ``spec`` with ViTDet's options (rel. positions, zero-initialised), global attention
    in every block, ``img_size`` (default: the pre-training size, so positions are not interpolated); eval mode."""
    from functools import partial

    from detectron2.modeling.backbone.vit import ViT

    import_timm_layers()
    size = img_size or spec.pretrain_img_size
    return ViT(img_size=size, patch_size=spec.patch_size, embed_dim=spec.embed_dim, depth=spec.depth,
               num_heads=spec.num_heads, mlp_ratio=spec.mlp_ratio, qkv_bias=spec.qkv_bias,
               norm_layer=partial(nn.LayerNorm, eps=spec.norm_eps), use_rel_pos=True, rel_pos_zero_init=True,
               window_size=0, pretrain_img_size=spec.pretrain_img_size,
               pretrain_use_cls_token=spec.pretrain_use_cls_token).eval()
