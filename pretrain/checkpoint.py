"""Checkpoints: the reference MoCo layout plus what exact resumption needs, safe to load anywhere.

Every file loads with ``torch.load(path, map_location="cpu", weights_only=True)``: only tensors and
plain containers/scalars are stored (RNG states as tensors, arguments as a plain dict). Files are written
to a temporary name and renamed, so a kill never leaves a half-written checkpoint.

Names (``epoch`` is 0-based, as in the reference ``checkpoint_0199.pth.tar`` after 200 epochs)::

    checkpoint_0004.pth.tar              end of epoch 4       -> {"epoch": 5, "iteration": 0}
    checkpoint_0004_iter000120.pth.tar   inside epoch 4       -> {"epoch": 4, "iteration": 120}
"""

from __future__ import annotations

import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.atomic import torch_save_atomic

SUITE_NAME = "moco-transfer-bench"
SUITE_FORMAT = 1
_NAME_RE = re.compile(r"^checkpoint_(\d+)(?:_iter(\d+))?\.pth\.tar$")


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one actionable line."""


def checkpoint_name(epoch_index: int, iteration: int = 0) -> str:
    """File name for the end of 0-based epoch ``epoch_index`` or, with ``iteration``, a point inside it."""
    return f"checkpoint_{epoch_index:04d}_iter{iteration:06d}.pth.tar" if iteration else f"checkpoint_{epoch_index:04d}.pth.tar"


def _progress_of(name: str) -> tuple[int, int] | None:
    """(completed epochs, iterations into the next) encoded in a checkpoint file name."""
    m = _NAME_RE.match(name)
    if not m:
        return None
    return (int(m.group(1)), int(m.group(2))) if m.group(2) else (int(m.group(1)) + 1, 0)


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """This suite's checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(p, _progress_of(p.name)) for p in folder.iterdir()]
    return [p for p, k in sorted(((p, k) for p, k in found if k is not None), key=lambda pk: pk[1])]


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    ckpts = list_checkpoints(folder)
    return ckpts[-1] if ckpts else None


def save_atomic(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place (user's umask)."""
    return torch_save_atomic(obj, path)


def prune(folder: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` most recent checkpoints in ``folder`` (``keep <= 0``: keep all)."""
    if keep > 0:
        for p in list_checkpoints(folder)[:-keep]:
            p.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load with ``weights_only=True`` on the CPU; any failure is a one-line :class:`CheckpointError`."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist" if not p.exists() else f"{p} is not a file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p} is empty (0 bytes): the save was interrupted; use an earlier checkpoint")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if not found:
            detail = re.search(r"WeightsUnpickler error: \s*(.+)", str(e))
            raise CheckpointError(f"{p} is not a readable PyTorch checkpoint ({detail.group(1) if detail else _line(e)})") from None
        raise CheckpointError(f"{p} cannot be loaded safely (weights_only=True): it stores a Python object "
                              f"({found.group(1)}); re-save it with tensors and plain containers only") from None
    except Exception as e:  # zip errors, random bytes, truncated files
        raise CheckpointError(f"{p} is not a readable PyTorch checkpoint ({type(e).__name__}: {_line(e)})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p} is not a checkpoint (top level is a {type(obj).__name__}, expected a dict)")
    return obj


def load_error_detail(e: BaseException) -> str:
    """The informative line of a ``load_state_dict`` error (size mismatch / missing / unexpected keys)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith(("size mismatch", "Missing key", "Unexpected key")):
            return ln[:300]
    return lines[-1][:300] if lines else type(e).__name__


def _line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


def plain(obj: Any) -> Any:
    """A copy of ``obj`` made of str/int/float/bool/None/list/dict only (for argparse namespaces)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


# --- RNG states as tensors ---------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA) generator states, made of tensors and scalars."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state` (missing parts are left alone)."""
    if "python" in state:
        py = state["python"]
        random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)


# --- MoCo checkpoints -------------------------------------------------------------------------------
def with_module_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys as the reference's DDP-wrapped model writes them (``module.encoder_q.conv1.weight`` ...)."""
    return {k if k.startswith("module.") else f"module.{k}": v for k, v in state_dict.items()}


def strip_module_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}


def check_moco_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike, arch: str | None = None) -> None:
    """Raise :class:`CheckpointError` unless ``ckpt`` is a MoCo checkpoint (of ``arch`` when given)."""
    sd = ckpt.get("state_dict")
    if not isinstance(sd, dict) or not any(isinstance(k, str) and ("encoder_q." in k or "base_encoder." in k) for k in sd):
        keys = ", ".join(list(map(str, sd if isinstance(sd, dict) else ckpt))[:4])
        raise CheckpointError(f"{path} is not a MoCo checkpoint (no state_dict with encoder_q.* or base_encoder.* keys; "
                              f"keys: {keys})")
    ck_arch = ckpt.get("arch")
    if arch is not None and isinstance(ck_arch, str) and ck_arch != arch:
        raise CheckpointError(f"{path} was made with arch {ck_arch}, not {arch}: pass -a {ck_arch} or another checkpoint")


def is_v3(ck: dict[str, Any]) -> bool:
    """Whether a checkpoint is MoCo v3's (``base_encoder.*`` keys: this suite's or facebookresearch/moco-v3's)."""
    sd = ck.get("state_dict")
    return isinstance(sd, dict) and any(isinstance(k, str) and k.startswith(("module.base_encoder.", "base_encoder."))
                                        for k in sd)


def moco_version(args: dict[str, Any]) -> str:
    """'v3' for the moco-v3 mechanism (presets v3*), 'v2' for the v2 recipe (preset v2*, or the MLP head /
    aug+ / cosine flags), else 'v1'."""
    preset = args.get("preset")
    if args.get("mechanism") == "moco-v3" or str(preset or "").startswith("v3"):
        return "v3"
    if preset:
        return "v2" if str(preset).startswith("v2") else "v1"
    return "v2" if args.get("mlp") or args.get("aug_plus") or args.get("cos") else "v1"


def suite_marker(args: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The ``"suite"`` entry that lets ``transfer/convert.py`` recognise this suite's checkpoints.

    ``extra`` adds resolved facts, e.g. ``precision`` (``speed.Speed.record()``) and ``data_backend``.
    """
    args = plain(args)
    return {"name": SUITE_NAME, "format": SUITE_FORMAT, "moco_version": moco_version(args), "args": args, **plain(extra)}


def encoder_weights(ck: dict[str, Any], path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The backbone+fc tensors of a MoCo checkpoint (``[module.]encoder_q.*``) or a plain/DDP torchvision
    ResNet state dict (``[module.]conv1.weight`` ...), keys as in torchvision."""
    sd = ck.get("state_dict", ck)
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: 'state_dict' is a {type(sd).__name__}, expected a dict")
    for prefix in ("module.encoder_q.", "encoder_q.", "module.", ""):
        sub = {k[len(prefix):]: v for k, v in sd.items() if isinstance(k, str) and k.startswith(prefix)}
        if "conv1.weight" in sub and isinstance(sub["conv1.weight"], torch.Tensor):
            return {k: v for k, v in sub.items() if isinstance(v, torch.Tensor)}
    keys = ", ".join(map(str, list(sd)[:4]))
    raise CheckpointError(f"{path}: no ResNet encoder found (expected module.encoder_q.* or conv1.weight; keys: {keys})")
