"""What a trial is: the weights' content, the resolved config with its overrides, the seed and the data
spec. Not its label, not its folder, not the path of its weights.

The runner decides from this whether a trial folder already holds *this* trial (finished: skip it; interrupted:
resume it) or another one (other weights, overrides, seed or data: refuse in one line naming what changed,
instead of showing another run's numbers). ``train_net.py`` computes the same identity, writes it to
``<trial>/trial_identity.json`` before its first iteration, puts it in the record, and refuses to resume a
checkpoint made with another identity.

* ``weights``: SHA-256 of the weights (for a ``.pkl`` that ``transfer/convert.py`` wrote, of the checkpoint it
  was converted from: the same checkpoint converted twice is the same weights); a remote name as it is; None
  for random init.
* ``config_sha256``: the config after its file, ``_BASE_`` chain and overrides are merged, without the values
  that only place a trial (``MODEL.WEIGHTS``, ``OUTPUT_DIR``, ``SEED``, ``MODEL.DEVICE``); ``overrides`` and
  ``config_file`` are kept to say what changed.
* ``seed``, and ``data_sha256``: the sweep's dataset spec (its datasets, splits and data fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

IDENTITY_NAME = "trial_identity.json"
PLACEMENT = ("MODEL.WEIGHTS", "OUTPUT_DIR", "SEED", "MODEL.DEVICE")
KEYS = ("weights", "config_sha256", "seed", "data_sha256")  # what must match


def overrides(opts: list[str]) -> list[str]:
    """``opts`` without the placement keys (pairs ``KEY VALUE``)."""
    out = []
    for key, value in zip(opts[::2], opts[1::2]):
        if key not in PLACEMENT:
            out += [str(key), str(value)]
    return out


@lru_cache(maxsize=64)
def _config_sha256(config_file: str, opts: tuple[str, ...]) -> str:
    from transfer.config import load_cfg

    cfg = load_cfg(config_file, list(opts), read_only=True)
    cfg.defrost()
    cfg.MODEL.WEIGHTS, cfg.OUTPUT_DIR, cfg.SEED, cfg.MODEL.DEVICE = "", "", 0, ""
    return hashlib.sha256(cfg.dump().encode()).hexdigest()


def spec_sha256(path: str | None) -> str | None:
    """The data a dataset spec stands for: its datasets' names and types, splits and fingerprint."""
    if not path or not Path(path).is_file():  # a dry run plans a spec it does not write
        return None
    from transfer.custom_data import read_spec

    spec = read_spec(str(path))
    kept = {"train": spec.get("train"), "test": spec.get("test"), "fingerprint": spec.get("fingerprint"),
            "datasets": [{k: v for k, v in d.items() if k not in ("dirname", "json_file", "image_root")}
                         for d in spec["datasets"] if isinstance(d, dict)]}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


@lru_cache(maxsize=32)
def _weights_id(weights: str, mtime: float, size: int) -> str:
    from transfer.weights import weights_sha256

    return weights_sha256(weights)


def weights_id(weights: str) -> str | None:
    """The weights' part of the identity (module doc)."""
    from transfer.weights import is_remote

    if not weights:
        return None
    if is_remote(weights) or not Path(weights).is_file():
        return weights
    st = os.stat(weights)
    return _weights_id(str(Path(weights).resolve()), st.st_mtime, st.st_size)


def trial_identity(config_file: str | os.PathLike, opts: list[str], weights: str | None, seed: int | None,
                   datasets_spec: str | None = None) -> dict[str, Any]:
    """The identity of the trial these arguments define (module doc); ``weights`` as ``weights_id`` gives it."""
    kept = overrides(list(opts))
    return {"weights": weights, "config_file": Path(config_file).name, "overrides": kept,
            "config_sha256": _config_sha256(str(config_file), tuple(kept)),
            "seed": None if seed is None else int(seed),
            "data_sha256": spec_sha256(datasets_spec)}


def read(trial_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The identity an (interrupted or finished) trial recorded when it started, if any."""
    try:
        doc = json.loads((Path(trial_dir) / IDENTITY_NAME).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def write(trial_dir: str | os.PathLike, identity: dict[str, Any]) -> None:
    from core.atomic import write_atomic

    write_atomic(Path(trial_dir) / IDENTITY_NAME, lambda tmp: tmp.write_text(json.dumps(identity, indent=1)))


def _pairs(opts: Any) -> dict[str, str]:
    """``KEY VALUE`` overrides as a dict (the last value of a key wins, as in Detectron2)."""
    opts = [str(x)[:200] for x in opts] if isinstance(opts, list) else []
    return dict(zip(opts[::2], opts[1::2]))


def _short(value: Any) -> str:
    if value is None:
        return "none"
    text = str(value)
    return text[:12] + "…" if len(text) == 64 else text[:120]


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two identities, in words (empty: the same trial). Keys the old one lacks (a
    record from before identities) are not compared."""
    out = []
    if "weights" in old and old.get("weights") != new.get("weights"):
        out.append(f"other weights ({_short(old.get('weights'))} then, {_short(new.get('weights'))} now)")
    if "config_sha256" in old and old.get("config_sha256") != new.get("config_sha256"):
        before, now = _pairs(old.get("overrides")), _pairs(new.get("overrides"))
        keys = [k for k in {**before, **now} if before.get(k) != now.get(k)]
        if keys:
            shown = "; ".join(f"{k}: {before.get(k, 'not set')} then, {now.get(k, 'not set')} now" for k in keys[:4])
            out.append(f"other Detectron2 overrides ({shown}{f'; +{len(keys) - 4} more' if len(keys) > 4 else ''})")
        elif old.get("config_file") != new.get("config_file"):
            out.append(f"another config ({old.get('config_file')} then, {new.get('config_file')} now)")
        else:
            out.append(f"another resolved config ({new.get('config_file')} or its _BASE_ changed since)")
    if "seed" in old and old.get("seed") != new.get("seed"):
        out.append(f"another seed ({old.get('seed')} then, {new.get('seed')} now)")
    if "data_sha256" in old and old.get("data_sha256") != new.get("data_sha256"):
        out.append("other data (the dataset spec differs)")
    return out
