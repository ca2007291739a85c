"""What a weights file is by its first bytes, and ``.safetensors`` files read without pickle.

A safetensors file (timm, Hugging Face transformers, ``safetensors.torch.save_file``) is an 8-byte little-endian
header length ``N``, ``N`` bytes of JSON (``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
{str: str}}``, offsets relative to the byte buffer after the header), then the tensors' bytes. The header is read
and checked here first, bounded (``N`` at most :data:`MAX_HEADER_BYTES` and within the file; offsets inside the
buffer, not overlapping, sized as dtype x shape; numeric dtypes only); only then does the ``safetensors`` package
read the tensors, on the CPU. Every problem is a :class:`SafetensorsError` with one line.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import torch


class SafetensorsError(ValueError):
    """A file refused by this reader; the message is one line (``transfer/checkpoint_io.py`` re-raises it as its
    ``ConvertError``)."""


MAX_HEADER_BYTES = 100_000_000  # the safetensors package's own bound on the JSON header
MAX_DIMS = 8
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "U16": 2,
            "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
ACCEPTED = ("a torch.save file (.pth, .pth.tar, .pt, .ckpt, .bin, .torch), a .safetensors file or a Detectron2 .pkl")


class SafetensorsWeights(dict):
    """The tensors of a ``.safetensors`` file (name -> tensor) with its ``__metadata__`` (str -> str)."""

    def __init__(self, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
        super().__init__(tensors)
        self.metadata = metadata


def file_kind(path: str | os.PathLike) -> str:
    """``"zip"`` (torch's zip format, TorchScript, ``torch.export``), ``"safetensors"``, ``"pickle"`` (torch's legacy
    format, a Detectron2 ``.pkl``), ``"empty"`` or ``"unknown"``, read from the first bytes of a regular file (other
    files, e.g. a FIFO, are ``"unknown"`` without being opened)."""
    p = Path(path)
    if not p.is_file():
        return "unknown"
    with open(p, "rb") as f:
        head = f.read(9)
    if not head:
        return "empty"
    if head[:4] in ZIP_MAGIC:
        return "zip"
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    return "pickle" if head[:1] == b"\x80" else "unknown"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"the key {k[:60]!r} twice")
        out[k] = v
    return out


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read_header(path: str | os.PathLike) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """(tensor entries, metadata) of a safetensors file, checked (module doc); raises :class:`SafetensorsError`."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as f:
        first = f.read(8)
        if len(first) < 8:
            raise SafetensorsError(f"{p}: truncated safetensors file ({len(first)} bytes, no header length)")
        (n,) = struct.unpack("<Q", first)
        if n > MAX_HEADER_BYTES:
            raise SafetensorsError(f"{p}: refused to load: its safetensors header claims {n:,} bytes (at most "
                               f"{MAX_HEADER_BYTES:,}); it is crafted or corrupt")
        if n > size - 8:
            raise SafetensorsError(f"{p}: truncated or corrupt safetensors file (its header claims {n:,} bytes, the "
                               f"file holds {size - 8:,} after the length); fetch or save it again")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as e:
        raise SafetensorsError(f"{p}: corrupt safetensors file (its header is not UTF-8 at byte {e.start + 9})") from None
    except RecursionError:
        raise SafetensorsError(f"{p}: refused to load: its safetensors header nests too deep; it is crafted") from None
    except ValueError as e:  # json.JSONDecodeError and duplicate keys
        raise SafetensorsError(f"{p}: corrupt safetensors file (its header is not valid JSON: {str(e)[:100]})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{p}: corrupt safetensors file (its header is a JSON {type(header).__name__}, not an object)")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SafetensorsError(f"{p}: corrupt safetensors file (its __metadata__ is not a mapping of text to text)")
    buffer = size - 8 - n
    spans = []
    for name, entry in header.items():
        where = f"{p}: corrupt safetensors file (tensor {name[:60]!r}"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"{where} is not an entry of dtype, shape and data_offsets)")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in ITEMSIZE:
            raise SafetensorsError(f"{p}: refused to load: tensor {name[:60]!r} has dtype {str(dtype)[:20]!r}, not a "
                               f"numeric one ({', '.join(ITEMSIZE)})")
        if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_int(d) and d >= 0 for d in shape):
            raise SafetensorsError(f"{where} has shape {str(shape)[:40]}, not a list of at most {MAX_DIMS} sizes)")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise SafetensorsError(f"{where} has data_offsets {str(offsets)[:40]}, not [begin, end])")
        begin, end = offsets
        if end > buffer:
            raise SafetensorsError(f"{where} ends at byte {end:,} of a {buffer:,}-byte buffer: outside the file); it is "
                               "truncated or crafted")
        if end - begin != math.prod(shape) * ITEMSIZE[dtype]:
            raise SafetensorsError(f"{where} holds {end - begin:,} bytes, its {dtype} shape {shape} needs "
                               f"{math.prod(shape) * ITEMSIZE[dtype]:,})")
        spans.append((begin, end, name))
    spans.sort()
    for (_, end, a), (begin, _, b) in zip(spans, spans[1:]):
        if begin < end:
            raise SafetensorsError(f"{p}: refused to load: tensors {a[:40]!r} and {b[:40]!r} overlap in the file; it is "
                               "crafted or corrupt")
    return header, metadata


def load(path: str | os.PathLike) -> SafetensorsWeights:
    """The tensors of a checked safetensors file (CPU) with its metadata; raises :class:`SafetensorsError`."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    header, metadata = read_header(p)
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            if set(f.keys()) != set(header):
                raise SafetensorsError(f"{p}: the file changed while it was read; read it again")
            tensors = {k: f.get_tensor(k) for k in header}
    except SafetensorError as e:
        raise SafetensorsError(f"{p}: corrupt safetensors file ({str(e).splitlines()[0][:160]})") from None
    except OSError as e:
        raise SafetensorsError(f"{p}: cannot read the safetensors file ({e.strerror or type(e).__name__})") from None
    for k, t in tensors.items():
        if list(t.shape) != header[k]["shape"]:
            raise SafetensorsError(f"{p}: the file changed while it was read; read it again")
    return SafetensorsWeights(tensors, dict(metadata))
