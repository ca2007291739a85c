"""Which pretraining method made a weights file, read from its layout: key names and metadata only.

A weights file is read with the suite's safe loaders (``.pth`` through ``transfer/checkpoint_io.py``, ``.pkl``
through ``transfer/safe_pickle.py``); nothing in it runs, and only the names of its tensors, a few shapes and
plain metadata strings are looked at. The method names a row in the plan and in the tables, and starts its default
label; it never changes how a row is trained (the input format does: ``transfer/weights.py``). A layout that no
rule below matches is ``"unknown"`` (give the row a label: ``--weights LABEL=PATH``).

Rules, first match wins; after the metadata rules, a layout of the registry ``transfer/layouts.py`` that names its
method (SlotCon, SoCo, SimSiam, DINO, PixPro, ...) decides, and the rules below read the rest. Key names are
compared after a DDP ``module.`` prefix is dropped; the tensors are those at the top level and under ``state_dict``/``model``/``teacher``/``student`` (how the projects save them):

==========================  ==========================================================  ===========================
method                      what the file holds                                         source of the layout
==========================  ==========================================================  ===========================
(this suite's own)          ``suite`` marker: ``moco_version`` and ``args.mechanism``   ``pretrain/checkpoint.py``
MoCo (by this converter)    ``provenance.method`` (or ``format``) of ``convert.py``     ``transfer/convert.py``
OpenMMLab config            ``meta['cfg']`` (mmengine) or ``meta['config']``            open-mmlab/mmengine ``runner
(mmpretrain, mmselfsup,     (OpenSelfSup): ``model = dict(type=...)``; MoCo's neck:     /runner.py``; WXinlong/
OpenSelfSup)                ``LinearNeck`` v1, ``MoCoV2Neck``/``NonLinearNeckV1`` v2    DenseCL ``tools/train.py``
SwAV (VISSL)                VISSL heads with ``projection_head`` and ``prototypes0``    facebookresearch/vissl ``heads/
                            (its swav_head; VISSL stores no config)                     swav_prototypes_head.py``
MoCo v1 / v2 (.pkl)         ``__author__ "MOCO"``; ``stem.fc.0.weight`` (the v2 MLP      facebookresearch/moco
                            head) -> v2, ``stem.fc.weight`` -> v1                       ``detection/convert-pretrain-
                                                                                        to-detectron2.py``
SoCo (.pkl)                 ``__author__ "PixPro"`` in a file named ``*detectron2_C4*``,   hologerry/SoCo ``converter_
                            or ``__author__ "Yue"`` with ``fpn_lateral*``               detectron2/``, ``contrast/util.py``
PixPro (.pkl)               ``__author__ "PixPro"``                                     zdaxie/PixPro ``transfer/
                                                                                        detection/convert_pretrain_
                                                                                        to_d2.py``
torchvision supervised      ``__author__ "torchvision"`` with a 1000-class              facebookresearch/detectron2
(.pkl)                      ``stem.fc.weight``                                          ``tools/convert-torchvision-
                                                                                        to-d2.py``
DenseCL                     ``author "DenseCL"`` (extracted backbone), or ``queue2`` +  WXinlong/DenseCL ``tools/
                            ``encoder_q.*`` (the dense-feature queue)                   extract_backbone_weights.py``,
                                                                                        ``openselfsup/models/
                                                                                        densecl.py``
DINO                        ``teacher`` + ``student`` at the top level, or              facebookresearch/dino
                            ``head.last_layer.weight_g`` (DINOHead's weight norm)       ``main_dino.py``
MoCo v3                     ``base_encoder.*`` (+ ``momentum_encoder.*``)               facebookresearch/moco-v3
                                                                                        ``moco/builder.py``
MoCo v1 / v2                ``encoder_q.*``: ``encoder_q.fc.0/2.weight`` (``--mlp``)     facebookresearch/moco
                            -> v2, ``encoder_q.fc.weight`` -> v1                        ``moco/builder.py``
PixPro                      ``encoder.*`` + ``encoder_k.*`` + ``projector_k.*``         zdaxie/PixPro ``contrast/
                                                                                        models/PixPro.py``
SwAV                        ``prototypes.weight`` + ``projection_head.*``               facebookresearch/swav
                                                                                        ``src/resnet50.py``
BYOL                        ``online_net.*`` + ``target_net.*`` (OpenSelfSup), or       WXinlong/DenseCL ``openself
                            ``online_encoder.*`` + ``online_predictor.*``               sup/models/byol.py``; lucid
                                                                                        rains/byol-pytorch
Barlow Twins                ``backbone.*`` + ``projector.*`` + ``bn.running_mean``      facebookresearch/barlowtwins
                            without ``bn.weight`` (the affine-free BatchNorm1d)         ``main.py``
SimCLR                      ``backbone.*`` + ``neck.fc0.weight`` (OpenSelfSup's         WXinlong/DenseCL ``openself
                            NonLinearNeckSimCLR), or ``encoder.*`` + ``projector.0/2``  sup/models/necks.py``;
                            (no BatchNorm, no momentum encoder)                         Spijkervet/SimCLR
                                                                                        ``simclr/simclr.py``
torchvision supervised      a plain torchvision ResNet state dict whose only head is a  pytorch/vision ``torchvision/
                            1000-class ``fc``                                           models/resnet.py``
MAE                         a ViT under ``model`` with ``decoder_*``/``mask_token``     facebookresearch/mae
                            (the ViT layouts of the registry); transformers' ``vit.*``  ``models_mae.py``; hugging
                            with ``decoder.decoder_pred`` (ViTMAEForPreTraining)        face/transformers vit_mae
timm supervised             a plain timm-style ViT (``patch_embed.proj``, ``blocks.N.   huggingface/pytorch-image-
                            attn.qkv``) whose head is a 1000-class ``head``             models ``vision_transformer.py``
==========================  ==========================================================  ===========================

What no rule can tell: a backbone saved alone (the released SwAV/DINO/Barlow Twins ``resnet50.pth`` files, DenseCL's
``.pkl`` from its converter, ``__author__ "OpenSelfSup"``) holds torchvision keys and nothing of its method:
``"unknown"``. A torchvision ResNet with an untouched 1000-class ``fc`` is recorded as ``torchvision supervised`` and
shown as "supervised, or re-saved with its fc" (:func:`shown`): a self-supervised network saved with its fc
(byol-pytorch's README ``resnet.state_dict()``, torch.hub SwAV/Barlow Twins models, SimCLR's TF-to-PyTorch
conversions with a linear probe) looks the same: give such a row its label. DINO's full ``checkpoint.pth`` also pickles
its ``argparse.Namespace``, which the safe loader refuses (one line, like any object in a weights file).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from transfer import layouts

UNKNOWN = "unknown"
SUPERVISED = "torchvision supervised"  # the method key (records, tables group by it); shown as SHOWN[SUPERVISED]
VIT_SUPERVISED = "timm supervised"     # a timm/DeiT ViT with its 1000-class head
SHOWN = {SUPERVISED: "supervised, or re-saved with its fc", VIT_SUPERVISED: "supervised ViT, or re-saved with its head"}
METHODS = ("MoCo v1", "MoCo v2", "MoCo v3", "MoCo", "DenseCL", "PixPro", "SoCo", "SlotCon", "SimSiam", "SwAV", "DINO",
           "BYOL", "Barlow Twins", "SimCLR", "torchvision supervised", "end-to-end", "memory bank", "MAE",
           VIT_SUPERVISED)
_CONTAINERS = ("state_dict", "model", "teacher", "student", "model_state", "network")
_RESNET_ROOTS = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.", "fc.")
SUITE_NAME = "moco-transfer-bench"  # the "suite" marker of this suite's checkpoints (pretrain/checkpoint.py)
SUITE_AUTHOR = f"{SUITE_NAME} transfer/convert.py"  # the __author__ transfer/convert.py writes


@dataclass(frozen=True)
class Method:
    name: str    # one of METHODS, or "unknown"
    reason: str  # what in the file said so (or why nothing could)

    @property
    def known(self) -> bool:
        return self.name != UNKNOWN


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _rows(x: Any) -> int | None:
    shape = getattr(x, "shape", None)
    try:
        return int(shape[0]) if shape is not None and len(shape) >= 1 else None
    except (TypeError, ValueError):
        return None


def _tensors(obj: dict) -> dict[str, Any]:
    """Tensor-like entries of ``obj`` and of its containers, keys without a DDP ``module.`` prefix."""
    out: dict[str, Any] = {}
    for where in (obj, *(obj.get(k) for k in _CONTAINERS)):
        if isinstance(where, dict):
            for k, v in where.items():
                if isinstance(k, str) and _is_array(v):
                    out.setdefault(k[len("module."):] if k.startswith("module.") else k, v)
    return out


def _has(keys: dict[str, Any], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def _mlp_version(sd: dict[str, Any], fc: str, where: str) -> Method | None:
    """MoCo v2 (an MLP head: ``fc.0``/``fc.2``) or v1 (a linear ``fc``) from the query encoder's head."""
    if f"{fc}.0.weight" in sd and f"{fc}.2.weight" in sd:
        return Method("MoCo v2", f"{where} with the MLP head {fc}.0/{fc}.2 (MoCo v2's --mlp)")
    if f"{fc}.weight" in sd:
        return Method("MoCo v1", f"{where} with a linear head {fc} (MoCo v1)")
    return None


def _from_d2_pickle(data: dict, name: str = "") -> Method:
    author = data.get("__author__")
    author = author if isinstance(author, str) else ""
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    if author == SUITE_AUTHOR:
        prov = data.get("provenance") if isinstance(data.get("provenance"), dict) else {}
        method, fmt = prov.get("method"), str(prov.get("format") or "")
        if isinstance(method, str) and method in METHODS:
            return Method(method, f"converted by transfer/convert.py from a {method} checkpoint")
        if fmt == "moco-v3":
            return Method("MoCo v3", "converted by transfer/convert.py from a MoCo v3 checkpoint")
        if fmt.startswith("moco"):
            return Method("MoCo", f"converted by transfer/convert.py from a MoCo checkpoint (format {fmt})")
        return Method(UNKNOWN, f"converted by transfer/convert.py from a {fmt or 'plain'} state dict, which does "
                               "not say its method")
    if author == "MOCO":
        return _mlp_version(model, "stem.fc", "__author__ 'MOCO' (reference MoCo converter)") or \
            Method("MoCo", "__author__ 'MOCO' (reference MoCo converter), without its head")
    if author == "PixPro" and "detectron2_c4" in name.lower():
        return Method("SoCo", f"__author__ 'PixPro' in {name[:60]!r}, the name SoCo's main_pretrain.py gives its C4 "
                              "conversion (SoCo's converter writes PixPro's author)")
    if author == "PixPro":
        return Method("PixPro", "__author__ 'PixPro' (PixPro's converter)")
    if author == "Yue" and any(str(k).startswith("fpn_lateral") for k in model):
        return Method("SoCo", "__author__ 'Yue' with FPN and box-head weights (SoCo's convert_detectron2_Head.py)")
    if author == "torchvision":
        if _rows(model.get("stem.fc.weight")) == 1000:
            return Method(SUPERVISED, "__author__ 'torchvision' (Detectron2's convert-torchvision-to-d2) with a "
                                      "1000-class fc: supervised, or a network re-saved with its fc")
        return Method(UNKNOWN, "__author__ 'torchvision' (Detectron2's convert-torchvision-to-d2) without a 1000-class "
                               "fc: any torchvision-layout network")
    shown = f"__author__ {author[:40]!r}" if author else "no __author__"
    return Method(UNKNOWN, f"a Detectron2 pickle with {shown}, which does not say its method")


def shown(name: str) -> str:
    """How a method key is displayed: an untouched 1000-class ``fc`` does not tell a supervised network from a
    self-supervised one re-saved with its fc (byol-pytorch's README, torch.hub SwAV / Barlow Twins models)."""
    return SHOWN.get(name, name)


# model types of OpenMMLab configs (mmpretrain/mmselfsup ``MODELS``; OpenSelfSup's registry) -> METHODS
_MM_TYPES = {"MOCO": "MoCo", "MoCo": "MoCo", "MoCoV3": "MoCo v3", "DenseCL": "DenseCL", "BYOL": "BYOL",
             "SimCLR": "SimCLR", "SimSiam": "SimSiam", "SwAV": "SwAV", "BarlowTwins": "Barlow Twins"}
_MOCO_NECKS = {"LinearNeck": "MoCo v1", "NonLinearNeckV1": "MoCo v2", "MoCoV2Neck": "MoCo v2"}


def _dict_body(text: str, start: int) -> str:
    """The text of the ``dict(`` call whose body starts at ``start``, up to its closing parenthesis."""
    depth = 1
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return text[start:]


def _blank_nested(body: str) -> str:
    """``body`` with the insides of its nested calls blanked (same length, so offsets still index ``body``)."""
    out, depth = [], 0
    for ch in body:
        out.append(ch if depth == 0 else " ")
        depth += ch == "("
        depth -= ch == ")" and depth > 0
    return "".join(out)


def _type_of(body: str) -> str | None:
    m = re.search(r"(?:^|[,(\s])type\s*=\s*['\"](\w+)['\"]", _blank_nested(body))
    return m.group(1) if m else None


def _from_mm_config(meta: dict) -> Method | None:
    """The method an OpenMMLab checkpoint's config text names: ``meta['cfg']`` (mmengine's runner) or
    ``meta['config']`` (OpenSelfSup's tools/train.py), its ``model = dict(type=...)`` (MoCo: v1/v2 by its neck)."""
    text = meta.get("cfg") if isinstance(meta.get("cfg"), str) else meta.get("config")
    if not isinstance(text, str):
        return None
    m = re.search(r"^model\s*=\s*dict\(", text, re.M)
    body = _dict_body(text, m.end()) if m else ""
    kind = _type_of(body)
    if kind not in _MM_TYPES:
        return None
    name, where = _MM_TYPES[kind], "meta['cfg']" if isinstance(meta.get("cfg"), str) else "meta['config']"
    if name == "MoCo":
        n = re.search(r"(?:^|[,(\s])neck\s*=\s*dict\(", _blank_nested(body))
        neck = _type_of(_dict_body(body, n.end())) if n else None
        name = _MOCO_NECKS.get(neck or "", "MoCo")
        return Method(name, f"its config ({where}) says model type {kind!r}" + (f" with neck {neck!r}" if neck else ""))
    return Method(name, f"its config ({where}) says model type {kind!r}")


def _vissl_heads(obj: dict) -> Method | None:
    """SwAV from a VISSL checkpoint's heads: its swav_head holds ``projection_head`` and ``prototypes0``
    (facebookresearch/vissl vissl/models/heads/swav_prototypes_head.py); VISSL does not store its config."""
    heads = layouts.walk(obj, ("classy_state_dict", "base_model", "model", "heads")) or {}
    keys = [str(k) for k in heads]
    if any(".prototypes0." in k for k in keys) and any(".projection_head." in k for k in keys):
        return Method("SwAV", "VISSL heads with projection_head and prototypes0 (VISSL's swav_head)")
    return None


def _from_suite(suite: dict) -> Method:
    args = suite.get("args") if isinstance(suite.get("args"), dict) else {}
    mechanism = args.get("mechanism") or "moco"
    if mechanism != "moco":
        name = {"end-to-end": "end-to-end", "memory-bank": "memory bank", "moco-v3": "MoCo v3"}.get(str(mechanism),
                                                                                                UNKNOWN)
        return Method(name, f"this suite's checkpoint (mechanism {str(mechanism)[:40]})")
    version = suite.get("moco_version")
    name = f"MoCo {version}" if version in ("v1", "v2", "v3") else "MoCo"
    return Method(name, f"this suite's checkpoint (MoCo {version or 'version not recorded'})")


def method_of(obj: Any, name: str = "") -> Method:
    """The method of a loaded checkpoint or weights pickle (module doc for the rules); ``name``: its file name."""
    if not isinstance(obj, dict):
        return Method(UNKNOWN, f"its top level is a {type(obj).__name__}, not a dict")
    if "model" in obj and "__author__" in obj:
        return _from_d2_pickle(obj, name)
    suite = obj.get("suite")
    if isinstance(suite, dict) and suite.get("name") == SUITE_NAME:
        return _from_suite(suite)
    if obj.get("author") == "DenseCL":
        return Method("DenseCL", "author 'DenseCL' (DenseCL's extract_backbone_weights.py)")
    meta = obj.get("meta")
    told = (_from_mm_config(meta) if isinstance(meta, dict) else None) or _vissl_heads(obj)
    if told is not None:
        return told
    found = layouts.match(obj)  # the registry's layouts that tell their method (MoCo's version: its head, below)
    if found is not None and found.layout.method and found.layout.method != "MoCo":
        return Method(found.layout.method, found.describe())
    sd = _tensors(obj)
    if isinstance(obj.get("teacher"), dict) and isinstance(obj.get("student"), dict):
        return Method("DINO", "teacher and student networks at the top level (DINO's checkpoint)")
    if _has(sd, "head.last_layer.weight_g") or _has(sd, "backbone.head.last_layer.weight_g"):
        return Method("DINO", "head.last_layer.weight_g (DINO's weight-normalised head)")
    if _has(sd, "base_encoder."):
        return Method("MoCo v3", "base_encoder.*" + (" and momentum_encoder.*" if _has(sd, "momentum_encoder.") else "")
                      + " (MoCo v3)")
    if "queue2" in sd and _has(sd, "encoder_q."):
        return Method("DenseCL", "encoder_q.* with the dense-feature queue queue2 (DenseCL)")
    if _has(sd, "encoder_q."):
        return _mlp_version(sd, "encoder_q.fc", "encoder_q.*") or \
            Method("MoCo", "encoder_q.* without its head (MoCo, version not told)")
    if _has(sd, "encoder.") and _has(sd, "encoder_k.") and _has(sd, "projector_k."):
        return Method("PixPro", "encoder.*, encoder_k.* and projector_k.* (PixPro)")
    if "prototypes.weight" in sd and _has(sd, "projection_head."):
        return Method("SwAV", "prototypes.weight and projection_head.* (SwAV)")
    if _has(sd, "online_net.") and _has(sd, "target_net."):
        return Method("BYOL", "online_net.* and target_net.* (OpenSelfSup's BYOL)")
    if _has(sd, "online_encoder.") and _has(sd, "online_predictor."):
        return Method("BYOL", "online_encoder.* and online_predictor.* (byol-pytorch)")
    if _has(sd, "backbone.") and _has(sd, "projector.") and "bn.running_mean" in sd and "bn.weight" not in sd:
        return Method("Barlow Twins", "backbone.*, projector.* and an affine-free bn (Barlow Twins)")
    if _has(sd, "backbone.") and "neck.fc0.weight" in sd:
        return Method("SimCLR", "backbone.* with the SimCLR neck neck.fc0 (OpenSelfSup's SimCLR)")
    if (_has(sd, "encoder.") and "projector.0.weight" in sd and "projector.2.weight" in sd
            and not _has(sd, "projector.1.") and not _has(sd, "encoder_k.")):
        return Method("SimCLR", "encoder.* with the two-layer projector projector.0/2 (SimCLR)")
    if _has(sd, "vit.embeddings.patch_embeddings.") and _has(sd, "decoder.decoder_pred."):
        return Method("MAE", "vit.* with decoder.decoder_pred (transformers' ViTMAEForPreTraining)")
    if layouts.is_vit(sd):  # a plain timm-style ViT (timm, DeiT, MoCo v3's convert_to_deit.py output)
        if _rows(sd.get("head.weight")) == 1000:
            return Method(VIT_SUPERVISED, "a timm-style ViT with a 1000-class head: supervised (timm, DeiT), or a "
                                          "network re-saved with its head")
        return Method(UNKNOWN, "a timm-style ViT without a 1000-class head: the network alone does not say its method")
    if "conv1.weight" in sd and "layer1.0.conv1.weight" in sd and all(k.startswith(_RESNET_ROOTS) for k in sd):
        if _rows(sd.get("fc.weight")) == 1000:
            return Method(SUPERVISED, "a torchvision ResNet with its untouched 1000-class fc: supervised, or a "
                                      "network re-saved with its fc (byol-pytorch's README, torch.hub SwAV/Barlow "
                                      "Twins models)")
        return Method(UNKNOWN, "a torchvision ResNet without a 1000-class fc: the backbone alone does not say its "
                               "method")
    if found is not None and not found.layout.method:
        return Method(UNKNOWN, f"the {found.layout.library} layout does not say which method made it "
                               f"(encoder {found.describe().split(': ', 1)[-1]})")
    sample = ", ".join(list(sd)[:3]) or ", ".join(map(str, list(obj)[:3]))
    return Method(UNKNOWN, f"no rule matches its layout (keys like {sample[:120]})")


def method_of_path(obj: Any, path: str | os.PathLike) -> Method:
    """:func:`method_of` for the file at ``path``, and where its layout does not tell, what the library wrote beside it
    (solo-learn's ``args.json``: ``transfer/sidecars.py``)."""
    found = method_of(obj, Path(path).name)
    if found.known:
        return found
    match = layouts.match(obj)
    if match is not None and match.layout.name.startswith("solo-learn"):
        from transfer.sidecars import solo_learn_method

        told = solo_learn_method(Path(path))
        if told is not None:
            return Method(*told)
    return found


def load_for_method(path: str | os.PathLike) -> Any:
    """A weights file loaded without running code (raises the loaders' one-line errors)."""
    from transfer import safe_pickle
    from transfer.checkpoint_io import load_untrusted

    return safe_pickle.load(path) if str(path).endswith(".pkl") else load_untrusted(path)


@lru_cache(maxsize=32)
def _detect(path: str, mtime: float, size: int) -> Method:
    from transfer import safe_pickle
    from transfer.checkpoint_io import ConvertError

    try:
        obj = load_for_method(path)
    except (safe_pickle.UnsafePickleError, ConvertError, OSError) as e:
        return Method(UNKNOWN, f"not readable ({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})")
    return method_of_path(obj, path)


def detect_method(weights: str) -> Method:
    """The method of ``weights`` (a local file, or a remote name read from its cached copy); never raises."""
    from transfer.weights import is_remote, local_file

    if not weights:
        return Method(UNKNOWN, "no weights (random init)")
    path = local_file(weights)
    if path is None:
        return Method(UNKNOWN, "remote weights, not cached" if is_remote(weights) else f"{weights}: no such file")
    st = os.stat(path)
    return _detect(str(Path(path).resolve()), st.st_mtime, st.st_size)
