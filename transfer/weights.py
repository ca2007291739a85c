"""What a weights argument is: where its file lives, and which input format its network expects.

**Input format rule.** Networks trained in Caffe2 (the MSRA ImageNet models Detectron2's supervised
baselines use) read BGR images in 0-255 with per-channel means only, and put the stride in the 1x1 conv:
Detectron2's default config. Every torchvision-style network (MoCo and other self-supervised methods,
torchvision's supervised models, this suite's converter) reads RGB normalized by the ImageNet mean/std
with the stride in the 3x3 conv: the ``*_rgb.yaml`` configs. The format is read from the file:

* a ``.pkl`` with ``blobs``, with ``__author__ == "Caffe2"``, or without Detectron2's ``model`` +
  ``__author__`` keys (Detectron2 reads such a file as Caffe2 and renames it) -> **BGR**;
* every other ``.pkl`` (reference MoCo converter ``__author__ "MOCO"``, ``convert-torchvision-to-d2``,
  other projects, this suite's ``convert.py``) -> **RGB**, unless its provenance says otherwise;
* pretraining checkpoints (converted on the fly): ``torch.save`` files (``.pth``, ``.pth.tar``, ``.pt``, ``.ckpt``,
  ``.bin``, ``.torch``) and ``.safetensors`` files, read by their content -> **RGB**;
* ``detectron2://ImageNetPretrained/MSRA|FAIR/...`` -> **BGR** (Caffe2 model zoo), ``.../torchvision/...``
  -> **RGB**; another URL is read from its cached copy, or needs ``--input-format``. The FAIR models (style
  ``fair``) are BGR but were trained with the ImageNet std and the stride in the 3x3 conv, as Detectron2's own
  configs for them say (``protocol.yaml``: ``input_formats.fair``); the MSRA ones with std 1, stride in the 1x1.

An explicit ``--input-format`` always wins; the decision and its reason are printed and recorded.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from transfer import safe_pickle
from transfer.plain import finite_numbers, hex_digest, plain

FORMATS = ("RGB", "BGR")
CONVERTIBLE = (".pth", ".pth.tar", ".pt", ".tar", ".ckpt", ".bin", ".torch", ".safetensors")
D2_PREFIX, D2_URL = "detectron2://", "https://dl.fbaipublicfiles.com/detectron2/"
MSRA_R50 = D2_PREFIX + "ImageNetPretrained/MSRA/R-50.pkl"  # the supervised row's default (the papers' MSRA R-50)


class WeightsFormatError(Exception):
    """The input format of a weights argument cannot be decided; one line."""


@dataclass(frozen=True)
class InputFormat:
    format: str   # "RGB" | "BGR"
    reason: str
    style: str = ""  # "fair": the FAIR ImageNet models' std and stride (BGR); "" otherwise

    def as_record(self) -> dict[str, str]:
        return {"input_format": self.format, "input_format_reason": self.reason,
                **({"input_style": self.style} if self.style else {})}


def weights_style(weights: str) -> str:
    """``"fair"`` for Detectron2's FAIR ImageNet models (their URL, or its cached copy's path), else ``""``."""
    return "fair" if "imagenetpretrained/fair/" in str(weights).lower().replace("\\", "/") else ""


def is_remote(weights: str) -> bool:
    return "://" in weights


def local_weights(weights: str) -> str:
    """A ``file://`` URL as the path it names (``file:///abs/w.pkl`` -> ``/abs/w.pkl``), anything else as it is;
    ``ValueError`` (one line) for a file URL of another host."""
    if not weights.lower().startswith("file://"):
        return weights
    url = urlparse(weights)
    if url.netloc not in ("", "localhost") or not url.path:
        raise ValueError(f"{weights}: a file URL of another host (or of no path); pass the file's local path")
    return unquote(url.path)


def resolve_local(path: str | os.PathLike) -> Path:
    """``Path(path).resolve()``; ``ValueError`` "PATH: a symbolic link loop" instead of a ``RuntimeError``."""
    p = Path(path)
    try:
        return p.resolve()
    except (RuntimeError, OSError) as e:  # 3.11: RuntimeError("Symlink loop ..."); later: OSError(ELOOP)
        if isinstance(e, RuntimeError) or getattr(e, "errno", None) == errno.ELOOP:
            raise ValueError(f"{p}: a symbolic link loop") from None
        raise ValueError(f"{p}: cannot be resolved ({getattr(e, 'strerror', None) or e})") from None


def remote_url(weights: str) -> str:
    """The http(s) URL behind a ``detectron2://`` name (other URLs as they are)."""
    return D2_URL + weights[len(D2_PREFIX):] if weights.startswith(D2_PREFIX) else weights


def cache_path(weights: str) -> Path:
    """Where Detectron2 (iopath) caches a remote weights file: ``$FVCORE_CACHE`` or ``~/.torch/iopath_cache``."""
    url = urlparse(remote_url(weights))
    root = Path(os.path.expanduser(os.getenv("FVCORE_CACHE", "~/.torch/iopath_cache")))
    return root / os.path.dirname(url.path.lstrip("/")) / url.path.split("/")[-1]


def local_file(weights: str) -> Path | None:
    """The file that holds ``weights`` on this machine: the path itself, or a remote file's cached copy."""
    if not weights:
        return None
    path = cache_path(weights) if is_remote(weights) else Path(weights)
    return path if path.is_file() else None


def _is_array(x: Any) -> bool:
    return hasattr(x, "dtype") and hasattr(x, "shape")


def layout_of(data: Any) -> tuple[str, str]:
    """(kind, why) of an unpickled ``.pkl``: ``d2`` (``model`` + ``__author__``), ``caffe2`` (``blobs``, or
    arrays at the top level), ``checkpoint`` (a pretraining checkpoint's tensors one level down, e.g.
    ``{"state_dict": {...}}``: convert it first) or ``foreign`` (anything else)."""
    if not isinstance(data, dict):
        return "foreign", f"its top level is a {type(data).__name__}, not a dict of weights"
    if "model" in data and "__author__" in data:
        if not isinstance(data["model"], dict):
            return "foreign", f"its 'model' is a {type(data['model']).__name__}, not a dict of arrays"
        return "d2", ""
    if "blobs" in data:
        if not isinstance(data["blobs"], dict):
            return "foreign", f"its 'blobs' is a {type(data['blobs']).__name__}, not a dict of arrays"
        return "caffe2", ""
    if any(_is_array(v) for v in data.values()):
        return "caffe2", ""
    nested = [k for k, v in data.items() if isinstance(v, dict) and any(_is_array(x) for x in v.values())]
    if nested:
        return "checkpoint", f"its arrays are under {str(nested[0])[:40]!r}"
    return "foreign", f"it holds no arrays (keys: {', '.join(str(k)[:30] for k in list(data)[:4])})"


def not_weights_line(path: str | os.PathLike, kind: str, why: str) -> str:
    """The one line for a ``.pkl`` that Detectron2 cannot use as weights."""
    if kind == "checkpoint":
        return (f"{path}: a pretraining checkpoint saved as .pkl ({why}), not Detectron2 weights; convert it first: "
                f"python transfer/convert.py {path} (then pass the .pkl it writes)")
    return f"{path}: not a weights file ({why})"


@lru_cache(maxsize=16)
def _pkl_summary(path: str, mtime: float, size: int) -> dict[str, Any]:
    data = safe_pickle.load(path)
    kind, why = layout_of(data)
    if kind in ("foreign", "checkpoint"):
        return {"kind": kind, "why": why, "author": "", "blobs": False, "provenance": None}
    prov = plain(data["provenance"]) if isinstance(data.get("provenance"), dict) else None
    if prov is not None:  # fields the suite acts on: only in the form convert.py writes them
        prov["sha256"] = hex_digest(prov.get("sha256"))
        prov["pixel_mean"] = finite_numbers(prov.get("pixel_mean"), 3)
        prov["pixel_std"] = finite_numbers(prov.get("pixel_std"), 3)
        if prov.get("input_format") not in FORMATS:
            prov["input_format"] = None
        if not isinstance(prov.get("pretrain_precision"), (dict, type(None))):
            prov["pretrain_precision"] = None
    author = data.get("__author__", "")
    return {"kind": kind, "why": "", "author": author[:200] if isinstance(author, str) else type(author).__name__,
            "blobs": "blobs" in data, "provenance": prov}


def pkl_summary(path: str | os.PathLike) -> dict[str, Any]:
    """Layout facts of a ``.pkl`` (read safely once per file version): kind, ``__author__``, provenance (plain
    and bounded, ``transfer/plain.py``)."""
    st = os.stat(path)
    return _pkl_summary(str(path), st.st_mtime, st.st_size)


def weights_provenance(path: str) -> dict[str, Any] | None:
    """The provenance block that ``transfer/convert.py`` stores in a ``.pkl``, if any."""
    if not str(path).endswith(".pkl") or not Path(path).is_file():
        return None
    return pkl_summary(path)["provenance"]


def weights_sha256(path: str | os.PathLike) -> str:
    """The weights' identity: the source checkpoint's SHA-256 for a ``.pkl`` that ``convert.py`` wrote (the same
    file converted twice is the same weights), else the file's own."""
    from transfer.checkpoint_io import sha256_of

    prov = weights_provenance(str(path)) if str(path).endswith(".pkl") else None
    return (prov or {}).get("sha256") or sha256_of(path)


def _pkl_format(path: Path) -> InputFormat:
    if not path.is_file():
        raise WeightsFormatError(f"weights not found: {path}")
    try:
        info = pkl_summary(path)
    except safe_pickle.UnsafePickleError as e:
        raise WeightsFormatError(str(e)) from None
    if info["kind"] in ("foreign", "checkpoint"):
        raise WeightsFormatError(not_weights_line(path, info["kind"], info["why"]))
    author = info.get("author", "")
    if info["kind"] == "caffe2" or info.get("blobs") or author == "Caffe2":
        why = "has 'blobs'" if info.get("blobs") else ("__author__ 'Caffe2'" if author == "Caffe2"
                                                       else "raw Caffe2 blob names (no model/__author__)")
        return InputFormat("BGR", f"{path.name}: Caffe2/MSRA weights ({why})")
    prov = info.get("provenance") or {}
    if prov.get("input_format") in FORMATS:
        return InputFormat(prov["input_format"], f"{path.name}: converted by transfer/convert.py "
                                                 f"(format {prov.get('format', '?')})")
    return InputFormat("RGB", f"{path.name}: torchvision-style Detectron2 pickle (__author__ {author!r})")


def decide_input_format(weights: str, override: str | None = None) -> InputFormat:
    """The input format ``weights`` needs, with the reason (module doc for the rule)."""
    if override:
        if override not in FORMATS:
            raise WeightsFormatError(f"--input-format must be RGB or BGR, not {override!r}")
        return InputFormat(override, "set by --input-format", weights_style(weights) if override == "BGR" else "")
    if not weights:
        return InputFormat("RGB", "random init: normalized like the self-supervised rows")
    if is_remote(weights):
        low = weights.lower()
        if weights.startswith(D2_PREFIX) and "/msra/" in low:
            return InputFormat("BGR", f"{weights}: Detectron2 model-zoo Caffe2 ImageNet weights (MSRA)")
        if weights.startswith(D2_PREFIX) and "/fair/" in low:
            return InputFormat("BGR", f"{weights}: Detectron2 model-zoo Caffe2 ImageNet weights (FAIR: ImageNet std, "
                                      "stride in the 3x3 conv)", "fair")
        if weights.startswith(D2_PREFIX) and "/torchvision/" in low:
            return InputFormat("RGB", f"{weights}: Detectron2 model-zoo torchvision ImageNet weights")
        cached = local_file(weights)
        if cached is not None and cached.suffix == ".pkl":
            return _pkl_format(cached)
        raise WeightsFormatError(f"cannot tell the input format of {weights} without its file; "
                                 "pass --input-format RGB (torchvision-style) or BGR (Caffe2/MSRA)")
    path = Path(weights)
    if path.suffix == ".pkl":
        return _pkl_format(path)
    if weights.endswith(CONVERTIBLE):
        what = "safetensors file" if content_kind(path) == "safetensors" else "PyTorch checkpoint"
        return InputFormat("RGB", f"{path.name}: {what}, converted by transfer/convert.py (torchvision-style)")
    raise WeightsFormatError(unknown_type_line(weights))


def content_kind(path: str | os.PathLike) -> str:
    """What a local file is by its first bytes (``transfer/safetensors_io.py: file_kind``); ``"unknown"`` when it
    cannot be read."""
    from transfer.safetensors_io import file_kind

    try:
        return file_kind(path)
    except OSError:
        return "unknown"


def unknown_type_line(weights: str) -> str:
    """The one line for a weights file whose name the suite does not read: what its content is, what is accepted."""
    from transfer.safetensors_io import ACCEPTED

    kind = content_kind(weights)
    if kind in ("zip", "pickle", "safetensors"):
        what = "a safetensors file" if kind == "safetensors" else f"a PyTorch checkpoint ({kind} format)"
        ext = ".safetensors" if kind == "safetensors" else ".pth"
        return (f"{weights}: {what} by its content, but the suite reads weights by name: rename it to end in {ext} "
                f"(accepted: {ACCEPTED})")
    return f"{weights}: unknown weights file type; the suite reads {ACCEPTED}"


def remote_problem(weights: str, timeout: float = 5.0) -> str | None:
    """``None`` if a remote ``weights`` is cached or its server answers; else the one-line fix.

    Detectron2 downloads a remote file when a trial first loads it; offline, that fails once per trial
    with a raw ``URLError``. This asks before the first trial (a HEAD request, ``timeout`` seconds).
    """
    if not is_remote(weights) or local_file(weights) is not None:
        return None
    import urllib.error
    import urllib.request

    url = remote_url(weights)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as r:
            if r.status < 400:
                return None
            why = f"HTTP {r.status}"
    except urllib.error.HTTPError as e:
        why = f"HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        why = str(getattr(e, "reason", e))[:80]
    return (f"{weights} is not cached and cannot be downloaded ({why}): put the file at {cache_path(weights)} "
            "(Detectron2's download cache; $FVCORE_CACHE moves it), or pass a local path with "
            "--supervised-weights / MODEL.WEIGHTS")
