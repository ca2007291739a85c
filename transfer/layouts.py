"""One registry of checkpoint layouts: where the transferable ResNet encoder lives in the files that
self-supervised libraries save, which of their networks transfers, and the save code each entry follows.

A new library is one :class:`Layout` entry in :data:`LAYOUTS` (priority order, first match wins).
``transfer/checkpoint_formats.py`` (the encoder) and ``transfer/methods.py`` (the method) both read it.

Matching a layout: walk ``where`` (a nested path of dict keys; ``None``: the first of ``state_dict``/``model``/
``model_state``/``network`` that holds tensors, else the top level); keys are compared with ``torch.compile``'s
``_orig_mod.`` segments removed; ``needs``/``any_of``/``avoid`` are key prefixes compared with a DDP ``module.``
dropped; ``needs_top`` are top-level keys; ``meta_any``: one of these keys is in the top-level ``meta`` dict
(OpenMMLab runners' metadata). The encoder is then the first of ``prefixes`` under which a ResNet
stem and ``layer1`` are found, once its ``names`` are read as torchvision names (``sequential``: lightly's
``nn.Sequential(*list(resnet.children())[:-1])``, numbered 0 = conv1, 1 = bn1, 4..7 = layer1..4;
``detectron2``: ``stem.conv1``, ``res2``..``res5``; ``transformers``: Hugging Face's ``embedder.embedder``,
``encoder.stages.S.layers.B.layer.I``; ``transformers-vit``: Hugging Face's ViT, read as timm's names).

Vision Transformers (issue 29) are entries of the same registry with ``arch="vit"``: their encoder is the first
prefix under which a timm-style ViT is found (``patch_embed.proj.weight`` and ``blocks.0.attn.qkv.weight``), names
kept as they are (timm's, which MoCo v3, DINO, MAE and DeiT all use); ``heads`` names the table of
``transfer/vit_convert.py`` that gives its attention heads. ``transfer/convert.py`` converts by ``arch``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

CONTAINERS = ("state_dict", "model", "model_state", "network")
COMPILED = "_orig_mod."


@dataclass(frozen=True)
class Layout:
    """One checkpoint layout (module doc for how it is matched)."""

    name: str                       # the format recorded in the provenance, e.g. "slotcon"
    library: str                    # who saves it, e.g. "SlotCon"
    method: str                     # a transfer.methods.METHODS name, or "" when the layout does not tell
    prefixes: tuple[str, ...]       # encoder key prefixes, first found wins
    encoder: str                    # which network transfers, as the method's own transfer script takes it
    source: str                     # repository and file whose save (and transfer) code this follows
    where: tuple[str, ...] | None = None
    needs: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()
    needs_top: tuple[str, ...] = ()
    meta_any: tuple[str, ...] = ()
    names: str = "torchvision"      # torchvision | sequential | detectron2 | transformers | transformers-vit
    arch: str = "resnet"            # resnet | vit: what the encoder is (transfer/convert.py dispatches on it)
    heads: str = ""                 # vit: the heads table of transfer/vit_convert.py (moco-v3 | dino | mae | timm)


_VIT_LAYOUTS: tuple[Layout, ...] = (
    Layout("moco-v3-vit", "MoCo v3", "MoCo v3", ("module.base_encoder.", "base_encoder."),
           "base_encoder (its head, the projector MLP, dropped; not momentum_encoder or predictor)",
           "facebookresearch/moco-v3 main_moco.py save_checkpoint (epoch, arch, state_dict, optimizer, scaler), "
           "vits.py (timm VisionTransformer, fixed sin-cos pos_embed with a zero cls entry), moco/builder.py "
           "(base_encoder.head = projector); convert_to_deit.py takes module.base_encoder. without head",
           arch="vit", heads="moco-v3"),
    Layout("dino-vit", "DINO", "DINO", ("backbone.", "module.backbone."), "teacher",
           "facebookresearch/dino main_dino.py save_dict (student, teacher: MultiCropWrapper .backbone/.head, a ViT "
           "teacher not DDP-wrapped; optimizer, epoch, args, dino_loss), vision_transformer.py; eval_linear.py "
           "--checkpoint_key teacher", where=("teacher",), needs_top=("student",), arch="vit", heads="dino"),
    Layout("dino-vit-teacher", "DINO", "DINO", ("backbone.", "module.backbone."), "teacher (saved alone)",
           "facebookresearch/dino main_dino.py save_dict['teacher'] re-saved on its own (DINOHead's weight-normed "
           "head.last_layer.weight_g)", needs=("head.last_layer.weight_g",), arch="vit", heads="dino"),
    Layout("mae", "MAE", "MAE", ("", "module."), "encoder (decoder_*, mask_token dropped)",
           "facebookresearch/mae util/misc.py save_model (model, optimizer, epoch, scaler, args), models_mae.py "
           "(fixed sin-cos pos_embed with cls; decoder_embed, mask_token, decoder_pos_embed, decoder_blocks, "
           "decoder_norm, decoder_pred)", where=("model",), any_of=("decoder_embed.", "mask_token"),
           arch="vit", heads="mae"),
    Layout("deit", "DeiT (timm ViT, supervised)", "", ("", "module."), "the network (its head dropped)",
           "facebookresearch/deit main.py save_on_master (model, optimizer, lr_scheduler, epoch, model_ema, scaler, "
           "args), timm's VisionTransformer names", where=("model",), arch="vit", heads="timm"),
    Layout("transformers-vit", "Hugging Face transformers (ViT)", "", ("vit.", ""),
           "the ViT encoder (pooler, classifier and ViTMAE's decoder dropped)",
           "huggingface/transformers src/transformers/models/vit/modeling_vit.py (ViTModel: embeddings.{cls_token, "
           "position_embeddings, patch_embeddings.projection}, encoder.layer.N.{layernorm_before, attention.attention."
           "{query,key,value}, attention.output.dense, layernorm_after, intermediate.dense, output.dense}, layernorm, "
           "pooler; ViTForImageClassification .vit + classifier), models/vit_mae/modeling_vit_mae.py "
           "(ViTMAEForPreTraining .vit + decoder); save_pretrained writes model.safetensors and config.json",
           any_of=("vit.embeddings.patch_embeddings.", "embeddings.patch_embeddings."), names="transformers-vit",
           arch="vit", heads="timm"),
    Layout("solo-learn-vit", "solo-learn (Lightning)", "", ("backbone.",), "online backbone (not momentum_backbone)",
           "vturrisi/solo-learn solo/methods/base.py (backbone, classifier, momentum_backbone), solo/backbones/vit/ "
           "(timm's ViTs; vit_mocov3.py, vit_mae.py for those methods), solo/utils/checkpointer.py (args.json "
           "beside the checkpoint: method and backbone name, hence the heads)", where=("state_dict",),
           needs=("classifier.",), arch="vit", heads="solo-learn"),
    Layout("timm-vit", "timm", "", ("", "module."), "the network (its head dropped)",
           "huggingface/pytorch-image-models timm/models/vision_transformer.py (VisionTransformer state_dict, "
           "model.safetensors on the Hub; train.py's CheckpointSaver: state_dict)", arch="vit", heads="timm"),
)

LAYOUTS: tuple[Layout, ...] = _VIT_LAYOUTS + (
    Layout("slotcon", "SlotCon", "SlotCon", ("module.encoder_k.", "encoder_k."), "teacher (momentum) encoder_k",
           "CVMI-Lab/SlotCon main_pretrain.py save_checkpoint, models/slotcon.py; "
           "transfer/detection/convert_pretrain_to_d2.py takes module.encoder_k.",
           where=("model",), needs=("encoder_q.", "grouping_k.")),
    Layout("dino", "DINO", "DINO", ("module.backbone.", "backbone."), "teacher",
           "facebookresearch/dino main_dino.py save_dict (student, teacher: MultiCropWrapper .backbone/.head, the "
           "teacher DDP-wrapped when it has BatchNorm, i.e. ResNets); eval_linear.py --checkpoint_key teacher, "
           "utils.load_pretrained_weights strips module. and backbone.", where=("teacher",), needs_top=("student",)),
    Layout("dino-teacher", "DINO", "DINO", ("module.backbone.", "backbone."), "teacher (saved alone)",
           "facebookresearch/dino main_dino.py save_dict['teacher'] re-saved on its own (DINOHead's weight-normed "
           "head.last_layer.weight_g); utils.load_pretrained_weights", needs=("head.last_layer.weight_g",)),
    Layout("moco", "MoCo", "MoCo", ("module.encoder_q.",), "query encoder encoder_q",
           "facebookresearch/moco main_moco.py save_checkpoint; detection/convert-pretrain-to-detectron2.py",
           avoid=("queue2",)),
    Layout("moco-nomodule", "MoCo", "MoCo", ("encoder_q.",), "query encoder encoder_q",
           "facebookresearch/moco moco/builder.py (saved without DDP)", avoid=("queue2",)),
    Layout("moco-v3", "MoCo v3", "MoCo v3", ("module.base_encoder.", "base_encoder."), "base_encoder",
           "facebookresearch/moco-v3 main_moco.py, moco/builder.py; convert_to_deit.py takes base_encoder"),
    Layout("soco", "SoCo", "SoCo", ("module.encoder.", "encoder."), "online encoder (not encoder_k)",
           "hologerry/SoCo contrast/util.py save_checkpoint, contrast/models/SoCo_C4.py (queue), SoCo_FPN.py "
           "(neck, head); converter_detectron2/convert_detectron2_C4.py takes module.encoder.",
           where=("model",), needs=("encoder_k.",), any_of=("queue", "neck.", "head.")),
    Layout("pixpro", "PixPro", "PixPro", ("module.encoder.", "encoder."), "online encoder (not encoder_k)",
           "zdaxie/PixPro main_pretrain.py save_checkpoint; transfer/detection/convert_pretrain_to_d2.py takes "
           "module.encoder.", where=("model",), needs=("encoder_k.", "projector_k.")),
    Layout("simsiam", "SimSiam", "SimSiam", ("module.encoder.", "encoder."), "encoder (its fc projector dropped)",
           "facebookresearch/simsiam main_simsiam.py save_checkpoint (epoch, arch, state_dict, optimizer); "
           "main_lincls.py takes module.encoder. without module.encoder.fc", where=("state_dict",), needs=("predictor.",), avoid=("encoder_k.",)),
    Layout("simclr-encoder", "SimCLR (encoder/projector)", "", ("module.encoder.", "encoder."), "encoder",
           "Spijkervet/SimCLR model.py save_model (checkpoint_N.tar: the SimCLR module's state_dict, module. kept "
           "when saved from DDP), simclr/simclr.py (encoder with fc = Identity, projector); linear_evaluation.py "
           "uses its encoder", needs=("projector.",), avoid=("encoder_k.", "predictor.")),
    Layout("byol-pytorch", "byol-pytorch", "BYOL",
           ("module.online_encoder.net.", "online_encoder.net.", "learner.online_encoder.net."), "online encoder's net",
           "lucidrains/byol-pytorch byol_pytorch/byol_pytorch.py (a BYOL module's state_dict: net, online_encoder"
           "=NetWrapper(net), target_encoder, online_predictor), examples/lightning/train.py (Lightning, learner.); "
           "README.md and trainer.py save the online net alone (resnet.state_dict(): the torchvision layout)"),
    Layout("barlowtwins", "Barlow Twins", "Barlow Twins", ("module.backbone.", "backbone."), "backbone",
           "facebookresearch/barlowtwins main.py checkpoint.pth each epoch (dict(epoch, model=DDP state_dict, "
           "optimizer)); its final resnet50.pth is model.module.backbone alone (the torchvision layout, no fc)",
           where=("model",), needs=("projector.", "bn.running_mean")),
    Layout("solo-learn", "solo-learn (Lightning)", "", ("backbone.",), "online backbone (not momentum_backbone)",
           "vturrisi/solo-learn solo/methods/base.py (backbone, classifier, momentum_backbone; no "
           "save_hyperparameters), solo/utils/checkpointer.py (trainer.save_checkpoint; cfg goes to args.json "
           "beside it); downstream/object_detection/convert_model_to_detectron2.py takes state_dict backbone.", where=("state_dict",), needs=("classifier.",)),
    Layout("openselfsup", "OpenSelfSup / DenseCL (mmcv)", "", ("backbone.",),
           "backbone (= encoder_q.0 / online_net.0, not encoder_k / target_net)",
           "WXinlong/DenseCL tools/train.py (checkpoint meta: openselfsup_version, config text), openselfsup/models/"
           "densecl.py, moco.py, byol.py (backbone = encoder_q[0] / online_net[0]); tools/extract_backbone_weights.py "
           "strips backbone. into {state_dict, author 'DenseCL'} (the torchvision layout)",
           where=("state_dict",), meta_any=("openselfsup_version",)),
    Layout("openselfsup-keys", "OpenSelfSup / DenseCL (mmcv)", "", ("backbone.",),
           "backbone (= encoder_q.0 / online_net.0, not encoder_k / target_net)",
           "WXinlong/DenseCL openselfsup/models/densecl.py, moco.py, byol.py (a state_dict without its meta)",
           any_of=("encoder_q.0.", "online_net.0.")),
    Layout("mmpretrain", "mmpretrain / mmselfsup (OpenMMLab runner)", "", ("backbone.",),
           "backbone (not the momentum encoder_k / target_net / momentum_encoder)",
           "open-mmlab/mmengine mmengine/runner/runner.py save_checkpoint (meta with cfg text, state_dict, "
           "message_hub, optimizer, param_schedulers); open-mmlab/mmpretrain tools/model_converters/publish_model.py "
           "(meta, state_dict), mmpretrain/models/selfsup/*.py, benchmark configs init_cfg prefix='backbone.'",
           where=("state_dict",), needs_top=("meta",)),
    Layout("lightning", "PyTorch Lightning", "", ("backbone.", "model.backbone."), "backbone",
           "Lightning-AI/pytorch-lightning trainer checkpoint (state_dict of the LightningModule)",
           where=("state_dict",), needs_top=("pytorch-lightning_version",)),
    Layout("lightly", "lightly (nn.Sequential ResNet)", "", ("backbone.", "module.backbone.", ""),
           "backbone (not backbone_momentum)", "lightly-ai/lightly examples/pytorch_lightning/*.py: "
           "backbone = nn.Sequential(*list(resnet.children())[:-1]) (0 conv1, 1 bn1, 4..7 layer1..4), saved by "
           "Lightning's checkpointing", names="sequential"),
    Layout("lightly-tutorial", "lightly (nn.Sequential ResNet)", "", ("",), "backbone",
           "lightly-ai/lightly docs/source/tutorials_source/package/tutorial_simclr_clothing.py "
           "(torch.save({'resnet18_parameters': model.backbone.state_dict()}))",
           where=("resnet18_parameters",), names="sequential"),
    Layout("vissl", "VISSL", "", ("_feature_blocks.",), "trunk (not the heads)",
           "facebookresearch/vissl vissl/hooks/log_hooks.py (phase_idx, iteration, loss, iteration_num, "
           "train_phase_idx, classy_state_dict), vissl/models/base_ssl_model.py get_classy_state (model: trunk, "
           "heads); extra_scripts/convert_vissl_to_torchvision.py strips _feature_blocks.",
           where=("classy_state_dict", "base_model", "model", "trunk")),
    Layout("vissl-model-state", "VISSL", "", ("_feature_blocks.",), "trunk",
           "facebookresearch/vissl extra_scripts/convert_vissl_to_torchvision.py, convert_vissl_to_detectron2.py "
           "(their model_state_dict input)", where=("model_state_dict",)),
    Layout("vissl-trunk", "VISSL", "", ("_feature_blocks.",), "trunk",
           "facebookresearch/vissl extra_scripts/convert_vissl_to_torchvision.py (a trunk state dict on its own)"),
    Layout("detectron2", "Detectron2 names", "", ("backbone.bottom_up.", "backbone.", ""),
           "backbone already in Detectron2 naming", "facebookresearch/vissl extra_scripts/"
           "convert_vissl_to_detectron2.py ({model, matching_heuristics}); lightly-ai/lightly docs/source/"
           "tutorials_source/package/tutorial_pretrain_detectron2.py (DetectionCheckpointer: backbone.bottom_up.)",
           names="detectron2"),
    Layout("transformers", "Hugging Face transformers", "", ("resnet.", ""), "the ResNet (its classifier dropped)",
           "huggingface/transformers src/transformers/models/resnet/modeling_resnet.py (ResNetModel, "
           "ResNetForImageClassification .resnet; save_pretrained writes model.safetensors or pytorch_model.bin)",
           any_of=("resnet.embedder.embedder.", "embedder.embedder."), names="transformers"),
    Layout("torchvision-ddp", "torchvision", "", ("module.",), "the network", "pytorch/vision models/resnet.py "
           "(saved from DDP)"),
    Layout("torchvision", "torchvision", "", ("",), "the network", "pytorch/vision torchvision/models/resnet.py"),
)
BY_NAME = {lay.name: lay for lay in LAYOUTS}

_SEQUENTIAL = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}


def _from_sequential(key: str) -> str | None:
    head, _, rest = key.partition(".")
    return f"{_SEQUENTIAL[head]}.{rest}" if head in _SEQUENTIAL and rest else None


def _from_detectron2(key: str) -> str | None:
    if key.startswith("stem.conv1.norm."):
        return "bn1." + key[len("stem.conv1.norm."):]
    if key.startswith("stem.conv1."):
        return key[len("stem."):]
    m = re.match(r"^res([2-5])\.(\d+)\.(.+)$", key)
    if not m:
        return None
    rest = re.sub(r"^conv(\d)\.norm\.", r"bn\1.", m.group(3))
    rest = re.sub(r"^shortcut\.norm\.", "downsample.1.", rest)
    rest = re.sub(r"^shortcut\.", "downsample.0.", rest)
    return f"layer{int(m.group(1)) - 1}.{m.group(2)}.{rest}"


def _from_transformers(key: str) -> str | None:
    """transformers' ResNet names: ``embedder.embedder.{convolution,normalization}`` is the stem,
    ``encoder.stages.S.layers.B.layer.I.{convolution,normalization}`` the block's convs (``I`` 0-based),
    ``...layers.B.shortcut.{convolution,normalization}`` its projection shortcut."""
    m = re.match(r"^embedder\.embedder\.(convolution|normalization)\.(.+)$", key)
    if m:
        return ("conv1." if m.group(1) == "convolution" else "bn1.") + m.group(2)
    m = re.match(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.(?:layer\.(\d+)|shortcut)\.(convolution|normalization)\.(.+)$",
                 key)
    if not m:
        return None
    stage, block, conv, part, rest = m.groups()
    if conv is None:
        name = "downsample.0." if part == "convolution" else "downsample.1."
    else:
        name = f"conv{int(conv) + 1}." if part == "convolution" else f"bn{int(conv) + 1}."
    return f"layer{int(stage) + 1}.{block}.{name}{rest}"


_HF_VIT_BLOCK = {"layernorm_before": "norm1", "attention.output.dense": "attn.proj", "layernorm_after": "norm2",
                 "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
_HF_VIT_TOP = {"embeddings.cls_token": "cls_token", "embeddings.position_embeddings": "pos_embed",
               "embeddings.mask_token": "mask_token", "embeddings.patch_embeddings.projection.weight":
               "patch_embed.proj.weight", "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
               "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias"}


def _from_transformers_vit(tensors: dict[str, Any]) -> dict[str, Any]:
    """transformers' ViT names as timm's: ``encoder.layer.N.attention.attention.{query,key,value}`` concatenated
    (in that order) into ``blocks.N.attn.qkv``, the rest renamed one to one (``_HF_VIT_*``), ``pooler``/``classifier``
    as ``head.*``. A name it does not know is kept as it is, so the converter refuses it by name (layer scale etc.)."""
    out: dict[str, Any] = {}
    qkv: dict[tuple[str, str], dict[str, Any]] = {}
    for key, value in tensors.items():
        m = re.match(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$", key)
        if key in _HF_VIT_TOP:
            out[_HF_VIT_TOP[key]] = value
        elif key.startswith(("pooler.", "classifier.")):
            out["head." + key] = value
        elif m and m.group(2) in _HF_VIT_BLOCK:
            out[f"blocks.{m.group(1)}.{_HF_VIT_BLOCK[m.group(2)]}.{m.group(3)}"] = value
        elif m and m.group(2) in ("attention.attention.query", "attention.attention.key", "attention.attention.value"):
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2).rsplit(".", 1)[1]] = value
        else:
            out[key] = value
    for (block, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            out.update({f"encoder.layer.{block}.attention.attention.{p}.{kind}": v for p, v in parts.items()})
            continue  # incomplete: kept by name, refused by the converter
        ordered = [parts["query"], parts["key"], parts["value"]]
        out[f"blocks.{block}.attn.qkv.{kind}"] = (torch_cat(ordered) if hasattr(ordered[0], "detach")
                                                  else numpy_cat(ordered))
    return out


def torch_cat(parts: list[Any]) -> Any:
    import torch

    return torch.cat(parts, dim=0)


def numpy_cat(parts: list[Any]) -> Any:
    import numpy as np

    return np.concatenate(parts, axis=0)


_RENAMERS = {"sequential": _from_sequential, "detectron2": _from_detectron2, "transformers": _from_transformers}
_DICT_RENAMERS = {"transformers-vit": _from_transformers_vit}  # names that need several tensors at once (qkv)
NAMING_SCHEMES = ("torchvision", *_RENAMERS, *_DICT_RENAMERS)  # every key naming a layout's ``names`` may use


def torchvision_names(tensors: dict[str, Any], names: str) -> dict[str, Any]:
    """``tensors`` keyed by the reference names of their architecture: torchvision's for a ResNet (keys the scheme
    cannot read are dropped), timm's for a ViT."""
    if names == "torchvision":
        return dict(tensors)
    if names in _DICT_RENAMERS:
        return _DICT_RENAMERS[names](tensors)
    rename = _RENAMERS[names]
    out = {}
    for k, v in tensors.items():
        new = rename(k)
        if new is not None:
            out[new] = v
    return out


def is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def has_arrays(d: Any) -> bool:
    return isinstance(d, dict) and any(is_array(v) for v in d.values())


def default_state(obj: dict) -> dict | None:
    """The tensors a checkpoint keeps: the first container holding tensors, else the top level."""
    for key in CONTAINERS:
        if has_arrays(obj.get(key)):
            return obj[key]
    return obj if has_arrays(obj) else None


def walk(obj: Any, path: tuple[str, ...]) -> dict | None:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj if isinstance(obj, dict) else None


def decompiled(sd: dict) -> dict[str, Any]:
    """String keys with ``torch.compile``'s ``_orig_mod.`` segments removed."""
    return {k.replace(COMPILED, ""): v for k, v in sd.items() if isinstance(k, str)}


def is_resnet(sub: dict[str, Any]) -> bool:
    return "conv1.weight" in sub and "layer1.0.conv1.weight" in sub


def is_vit(sub: dict[str, Any]) -> bool:
    """A timm-style ViT: a patch embedding and a first attention block."""
    return "patch_embed.proj.weight" in sub and "blocks.0.attn.qkv.weight" in sub


def is_encoder(sub: dict[str, Any], arch: str) -> bool:
    return is_vit(sub) if arch == "vit" else is_resnet(sub)


def under(sd: dict[str, Any], prefix: str, names: str = "torchvision") -> dict[str, Any]:
    """The entries of ``sd`` under ``prefix``, prefix stripped, read as torchvision names."""
    return torchvision_names({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}, names)


@dataclass(frozen=True)
class Match:
    layout: Layout
    prefix: str                    # the prefix found (in keys without _orig_mod.)
    tensors: dict[str, Any]        # the encoder's entries, torchvision names
    compiled: bool                 # the keys carried torch.compile's _orig_mod.

    def describe(self) -> str:
        """E.g. ``SlotCon layout (slotcon), teacher (momentum) encoder_k: module.encoder_k.*``."""
        where = "/".join(self.layout.where) + "/" if self.layout.where else ""
        return (f"{self.layout.library} layout ({self.layout.name}), {self.layout.encoder}: {where}{self.prefix}*"
                + (" (torch.compile _orig_mod. dropped)" if self.compiled else ""))


def _strip_module(keys: list[str]) -> list[str]:
    return [k[len("module."):] if k.startswith("module.") else k for k in keys]


def _fits(lay: Layout, obj: dict, keys: list[str]) -> bool:
    bare = _strip_module(keys)

    def has(p: str) -> bool:
        return any(k.startswith(p) for k in bare)

    meta = obj.get("meta")
    if lay.meta_any and not (isinstance(meta, dict) and any(k in meta for k in lay.meta_any)):
        return False
    return (all(k in obj for k in lay.needs_top) and all(has(p) for p in lay.needs)
            and (not lay.any_of or any(has(p) for p in lay.any_of)) and not any(has(p) for p in lay.avoid))


def match(obj: Any) -> Match | None:
    """The first layout of :data:`LAYOUTS` that ``obj`` (a loaded checkpoint) fits, or None; never raises."""
    if not isinstance(obj, dict):
        return None
    default = default_state(obj)
    for lay in LAYOUTS:
        raw = walk(obj, lay.where) if lay.where is not None else default
        if raw is None:
            continue
        sd = decompiled(raw)
        if not _fits(lay, obj, list(sd)):
            continue
        for prefix in lay.prefixes:
            sub = under(sd, prefix, lay.names)
            if is_encoder(sub, lay.arch):
                return Match(lay, prefix, sub, any(isinstance(k, str) and COMPILED in k for k in raw))
    return None


def candidates(obj: Any) -> list[str]:
    """Where ResNet encoders are in ``obj`` (``"path:prefix"``, path empty for the top level), for a refusal."""
    found: list[str] = []
    if not isinstance(obj, dict):
        return found
    places: list[tuple[str, Any]] = [("", obj)] + [(k, v) for k, v in obj.items() if isinstance(v, dict)]
    for path, d in places:
        if not has_arrays(d):
            continue
        sd = decompiled(d)
        for key in sd:
            for tail, names in (("conv1.weight", "torchvision"), ("stem.conv1.weight", "detectron2"),
                                ("0.weight", "sequential")):
                if key.endswith(tail) and (key == tail or key[-len(tail) - 1] == "."):
                    prefix = key[: -len(tail)]
                    if is_resnet(under(sd, prefix, names)):
                        found.append(f"{path}:{prefix}" if path else prefix or "(top level)")
    return sorted(set(found))[:6]
