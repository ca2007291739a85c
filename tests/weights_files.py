"""Weights files as users bring them, made from a seeded torchvision ResNet for the tests.

* ``caffe2_pkl``: MSRA/Detectron1 ImageNet layout: raw Caffe2 blob names (``conv1_w``, ``res2_0_branch2a_w``,
  ``res_conv1_bn_s``, BN folded into scale and bias), no ``model``/``__author__``;
* ``d2_pkl(author="MOCO")``: what the reference MoCo converter (``convert-pretrain-to-detectron2.py``) writes,
  ``author="torchvision"``: Detectron2's ``convert-torchvision-to-d2.py``: Detectron2 names, numpy arrays,
  ``{"model", "__author__", "matching_heuristics": True}``;
* ``evil_pkl``: a pickle whose loading calls ``os.system``;
* hostile files (issue 22): a structured-dtype ``BUILD`` that corrupts memory, deep tuple keys, shared-reference
  blow-ups, an object array claiming 2 GB, a torch zip with any ``data.pkl``.

The key-renaming rules are those the two converters document (torchvision ``layerN`` -> ``res{N+1}``,
``bnK`` -> ``convK.norm``, ``downsample.0/1`` -> ``shortcut``/``shortcut.norm``, stem keys under ``stem.``).
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import torch
import torchvision


def resnet_state(arch: str = "resnet18", seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = getattr(torchvision.models, arch)()
    with torch.no_grad():  # non-trivial BN statistics, so a lost buffer changes features
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def d2_name(key: str) -> str:
    if not key.startswith("layer"):
        key = "stem." + key
    for i in range(1, 5):
        key = key.replace(f"layer{i}", f"res{i + 1}")
    for i in range(1, 4):
        key = key.replace(f"bn{i}", f"conv{i}.norm")
    return key.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")


def d2_pkl(path: Path, state: dict[str, torch.Tensor], author: str, prefix: str = "", head: bool = False) -> Path:
    """``head``: keep the classifier/projection head as the converters do (``fc.*`` -> ``stem.fc.*``)."""
    model = {prefix + d2_name(k): v.numpy() for k, v in state.items() if head or not k.startswith("fc.")}
    with open(path, "wb") as f:
        pickle.dump({"model": model, "__author__": author, "matching_heuristics": True}, f)
    return path


def with_mlp_head(state: dict[str, torch.Tensor], hidden: int = 32, out: int = 16) -> dict[str, torch.Tensor]:
    """MoCo v2's ``--mlp``: ``fc`` becomes ``Sequential(Linear(d, d'), ReLU, Linear(d', out))`` (``fc.0``, ``fc.2``)."""
    d = state["fc.weight"].shape[1]
    rest = {k: v for k, v in state.items() if not k.startswith("fc.")}
    return {**rest, "fc.0.weight": torch.randn(hidden, d), "fc.0.bias": torch.zeros(hidden),
            "fc.2.weight": torch.randn(out, hidden), "fc.2.bias": torch.zeros(out)}


def reference_moco_checkpoint(state: dict[str, torch.Tensor], mlp: bool = True) -> dict:
    """What the reference MoCo ``main_moco.py`` saves: ``module.encoder_q/encoder_k`` (DDP), the queue, epoch, arch."""
    enc = with_mlp_head(state) if mlp else dict(state)
    sd = {**{f"module.encoder_q.{k}": v for k, v in enc.items()}, **{f"module.encoder_k.{k}": v for k, v in enc.items()},
          "module.queue": torch.randn(16, 64), "module.queue_ptr": torch.zeros(1, dtype=torch.long)}
    return {"epoch": 200, "arch": "resnet18", "state_dict": sd, "optimizer": {}}


def reference_moco_pkl(path: Path, state: dict[str, torch.Tensor], mlp: bool = True) -> Path:
    """What the reference converter (``detection/convert-pretrain-to-detectron2.py``) writes from that checkpoint:
    the query encoder with its head under ``stem.fc``, ``__author__ "MOCO"``."""
    return d2_pkl(path, with_mlp_head(state) if mlp else state, "MOCO", head=True)


def torchvision_d2_pkl(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """What Detectron2's ``tools/convert-torchvision-to-d2.py`` writes from a torchvision ImageNet model (its fc kept)."""
    return d2_pkl(path, state, "torchvision", head=True)


def _caffe2_name(key: str) -> str | None:
    parts = key.split(".")
    if key.startswith("fc."):
        return f"fc1000_{'w' if parts[-1] == 'weight' else 'b'}"
    if parts[0] == "conv1":
        return "conv1_w"
    if parts[0] == "bn1":
        return {"weight": "res_conv1_bn_s", "bias": "res_conv1_bn_b"}.get(parts[-1])
    stage, block, layer, what = int(parts[0][5:]) + 1, parts[1], parts[2], parts[-1]
    branch = {"conv1": "branch2a", "bn1": "branch2a", "conv2": "branch2b", "bn2": "branch2b",
              "conv3": "branch2c", "bn3": "branch2c", "downsample": "branch1"}[layer]
    is_bn = layer.startswith("bn") or (layer == "downsample" and parts[3] == "1")
    if is_bn:
        suffix = {"weight": "bn_s", "bias": "bn_b"}.get(what)
        return None if suffix is None else f"res{stage}_{block}_{branch}_{suffix}"
    return f"res{stage}_{block}_{branch}_w"


def caffe2_pkl(path: Path, state: dict[str, torch.Tensor]) -> Path:
    blobs = {}
    for k, v in state.items():
        name = _caffe2_name(k)
        if name is not None:  # running statistics are folded into scale and bias in these files
            blobs[name] = v.numpy()
    with open(path, "wb") as f:
        pickle.dump(blobs, f, protocol=2)
    return path


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def evil_pkl(path: Path, marker: Path) -> Path:
    with open(path, "wb") as f:
        pickle.dump({"model": {"stem.conv1.weight": _RunsCode(marker)}, "__author__": "x"}, f)
    return path


def evil_pth(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "hook": _RunsCode(marker)}, path)
    return path


# ----------------------------------------------------------------------------- hostile files (issue 22)
# Small files written opcode by opcode: what a stranger could hand the suite. None runs code; each used to
# crash (segfault), hang, exhaust memory or give a wrong number.

def _unicode(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _numpy_dtype(code: str) -> bytes:
    """``numpy.dtype(code, False, True)`` on the stack (its state not yet applied)."""
    return b"cnumpy\ndtype\n" + _unicode(code) + b"\x89\x88\x87R"


def _dtype_state(field_code: str, flags: int) -> bytes:
    """The state tuple of a structured dtype with one 8-byte field ``f`` of type ``field_code``."""
    order = "|" if field_code == "O" else "<"
    field = _numpy_dtype(field_code) + b"(K\x03" + _unicode(order) + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK" + \
        bytes([63 if field_code == "O" else 0]) + b"tb"
    return (b"(K\x03" + _unicode("|") + b"N" + _unicode("f") + b"\x85" + b"}" + _unicode("f") + field + b"K\x00\x86s"
            + b"K\x08K\x01K" + bytes([flags]) + b"t")


def structured_dtype_pkl(path: Path) -> Path:
    """Only allow-listed globals: a structured dtype, an array filled with raw bytes, then BUILD applied to the
    same dtype again turns its field into an object field; freeing the array then dereferences 0x4141...."""
    data = b"\x80\x02" + _numpy_dtype("V8") + b"q\x01" + b"h\x01" + _dtype_state("i8", 16) + b"b0"
    data += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
    data += b"(K\x01K\x01\x85h\x01\x89C\x08" + b"\x41" * 8 + b"tb"
    data += b"h\x01" + _dtype_state("O", 27) + b"b0."
    path.write_bytes(data)
    return path


def deep_tuple_key_pickle(depth: int = 1_000_000) -> bytes:
    """``{((((None,),),)...): None}``: hashing the key recurses ``depth`` levels in C."""
    return b"\x80\x04}N" + b"\x85" * depth + b"Ns."


def doubling_dicts_pickle(levels: int = 64, top: bytes = b"") -> bytes:
    """``{"state_dict": d64}`` where each ``d(k+1) = {"a": d(k), "b": d(k)}``: 2 KB, 2**64 entries written out."""
    data = b"\x80\x04}" + _unicode("state_dict") + b"}\x940"
    for k in range(levels):
        data += b"}(" + _unicode("a") + b"h" + bytes([k]) + _unicode("b") + b"h" + bytes([k]) + b"u\x940"
    return data + b"h" + bytes([levels]) + b"s" + top + b"."


def object_array_pkl(path: Path) -> Path:
    """70 bytes that ask numpy for an object array of 2**28 elements (2 GB of pointers) and give none."""
    data = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
            b"(K\x01J\x00\x00\x00\x10\x85" + _numpy_dtype("O") + b"\x89]tb.")
    path.write_bytes(data)
    return path


def pth_with_pickle(path: Path, pickled: bytes) -> Path:
    """A torch zip checkpoint whose ``data.pkl`` is ``pickled`` (the rest as ``torch.save`` writes it)."""
    import zipfile

    tmp = path.with_suffix(".tmp")
    torch.save({"a": torch.zeros(2)}, tmp)
    with zipfile.ZipFile(tmp) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = pickled if info.filename.endswith("/data.pkl") else src.read(info)
            dst.writestr(info.filename, data)
    tmp.unlink()
    return path


def doubling_graph(levels: int = 64) -> dict:
    """The same shared-reference graph as a Python object (pickle writes it in a few KB)."""
    d: dict = {}
    for _ in range(levels):
        d = {"a": d, "b": d}
    return d


# ----------------------------------------------------------------------------- hostile torch zips (issue 27)

def _saved_members(state: dict) -> list[tuple[str, bytes]]:
    """The members of ``torch.save(state)`` in archive order (name, bytes)."""
    import io
    import zipfile

    buf = io.BytesIO()
    torch.save(state, buf)
    with zipfile.ZipFile(buf) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def shadowed_pickle_pth(path: Path, shadow: str = "DATA.PKL", pickled: bytes | None = None,
                        before: bool = False) -> Path:
    """A checkpoint plus a member ``archive/<shadow>`` (a 10**6-deep tuple key by default) written just after (or
    ``before``) its harmless ``data.pkl``. torch's reader looks names up ignoring case, by a binary search over
    the sorted names: which of the two it reads depends on their order (here: the one after)."""
    import warnings
    import zipfile

    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        warnings.simplefilter("ignore")  # zipfile warns about a duplicate name
        for name, data in _saved_members({"state_dict": {"conv1.weight": torch.ones(2)}}):
            extra = (name.rsplit("/", 1)[0] + "/" + shadow, pickled or deep_tuple_key_pickle())
            if name.endswith("/data.pkl") and before:
                dst.writestr(*extra)
            dst.writestr(name, data)
            if name.endswith("/data.pkl") and not before:
                dst.writestr(*extra)
    return path


def deflate_bomb_pth(path: Path, declared: int = 2 << 30) -> Path:
    """A checkpoint whose one float storage declares ``declared`` bytes and whose member holds them deflated
    (zeros): a few MB on disk, ``declared`` bytes in memory once torch reads it."""
    import zipfile

    numel = declared // 4
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for name, data in _saved_members({"state_dict": {"conv1.weight": torch.zeros(4)}}):
            if name.endswith("/data.pkl"):
                dst.writestr(name, data.replace(b"K\x04t", b"J" + struct.pack("<i", numel) + b"t", 1))
            elif name.endswith("/data/0"):
                info = zipfile.ZipInfo(name)
                info.compress_type = zipfile.ZIP_DEFLATED
                chunk = bytes(64 << 20)
                with dst.open(info, "w", force_zip64=True) as f:
                    for _ in range(declared // len(chunk)):
                        f.write(chunk)
                    f.write(bytes(declared % len(chunk)))
            else:
                dst.writestr(name, data)
    return path
