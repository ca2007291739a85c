"""Read a Detectron2 YAML config and its ``_BASE_`` chain as untrusted input.

Detectron2's ``CfgNode.merge_from_file`` lets fvcore fall back to ``yaml.unsafe_load`` (a Python tag anywhere in
the chain runs code), opens ``_BASE_`` through a path manager (``http(s)://`` downloads) and reads any file (a
FIFO hangs, ``/dev/zero`` fills memory). Here each file is read with :func:`core.safe_yaml.load` (plain data,
regular local files of a bounded size), ``_BASE_`` is resolved as fvcore resolves it (relative to the including
file, ``~`` expanded, a list merged in order, the child's keys over the base's, recursively) but refuses any
``scheme:`` path, cycles and chains deeper than :data:`MAX_DEPTH`, and the merged values enter the config the
way ``merge_from_file`` does after loading (its ``VERSION`` check and upgrade). Every problem is a
:class:`ConfigFileError` with one line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from core.files import brief
from core.safe_yaml import YamlError, load

BASE_KEY = "_BASE_"
MAX_DEPTH = 16  # files in one _BASE_ chain (the suite's deepest is 3)
MAX_FILES = 64  # files read for one config, all its _BASE_ lists together (bases listed in bases multiply)
MAX_CONFIG_BYTES = 1 << 20
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")  # http://, a://, detectron2://, file:, s3:


class ConfigFileError(ValueError):
    """A config file (or a ``_BASE_`` of it) that is refused; the message is one line."""


def _base_path(base: Any, including: Path) -> Path:
    """The file a ``_BASE_`` entry of ``including`` names (fvcore's rule), or :class:`ConfigFileError`."""
    if not isinstance(base, str) or not base.strip():
        raise ConfigFileError(f"{including}: _BASE_ must be a file name or a list of them, not {brief(base)}")
    if _SCHEME.match(base):
        raise ConfigFileError(f"{including}: _BASE_ {base!r} is not a local file; configs are read from local "
                              "files only (copy the base config next to it and name it by a relative path)")
    path = Path(os.path.expanduser(base))
    return path if path.is_absolute() else Path(os.path.dirname(including)) / path


def _merge(child: dict, base: dict, where: Path) -> None:
    """Merge ``child`` into ``base`` in place: the child's values win, mappings merge recursively."""
    for key, value in child.items():
        if isinstance(value, dict) and key in base:
            if not isinstance(base[key], dict):
                raise ConfigFileError(f"{where}: {key!r} is a mapping here but {brief(base[key])} in its _BASE_; "
                                      "a key cannot change from a value to a mapping")
            _merge(value, base[key], where)
        else:
            base[key] = value


def _load(path: Path, seen: tuple[str, ...], reads: list[int]) -> dict[str, Any]:
    """The merged values of ``path`` (``seen``: the real paths of the files that include it, top first;
    ``reads``: how many files this config has read so far, a one-item counter)."""
    reads[0] += 1
    if reads[0] > MAX_FILES:
        raise ConfigFileError(f"{path}: the _BASE_ lists of {seen[0]} read more than {MAX_FILES} files")
    if len(seen) >= MAX_DEPTH:
        raise ConfigFileError(f"{path}: the _BASE_ chain of {seen[0]} has more than {MAX_DEPTH} files")
    real = os.path.realpath(path)
    if real in seen:
        raise ConfigFileError(f"{path}: _BASE_ makes a cycle (this file is its own base through the chain of "
                              f"{seen[0]}); remove the _BASE_ that leads back to it")
    try:
        doc = load(path, "YAML config file", MAX_CONFIG_BYTES)
    except YamlError as e:
        if "tag:yaml.org,2002:python/" in str(e):
            raise ConfigFileError(f"{path}: a Python tag (!!python/...) would run code when loaded; a config is "
                                  f"plain data, refused ({str(e).split(': ', 1)[-1][:120]})") from None
        raise ConfigFileError(str(e)) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigFileError(f"{path}: a config must be a mapping of keys to values, not {type(doc).__name__}")
    if BASE_KEY not in doc:
        return doc
    bases = doc.pop(BASE_KEY)
    merged: dict[str, Any] = {}
    for base in bases if isinstance(bases, list) else [bases]:
        _merge(_load(_base_path(base, path), (*seen, real), reads), merged, path)
    _merge(doc, merged, path)
    return merged


def load_config_dict(path: str | os.PathLike) -> dict[str, Any]:
    """The values of the config ``path`` with its ``_BASE_`` chain merged in (module doc)."""
    return _load(Path(path), (), [0])


def merge_config_dict(cfg: Any, values: dict[str, Any], path: str | os.PathLike) -> None:
    """Merge the loaded ``values`` of ``path`` into the Detectron2 ``cfg`` as ``CfgNode.merge_from_file`` does
    after loading (an older ``VERSION`` upgraded); :class:`ConfigFileError` with one line otherwise."""
    from detectron2.config import CfgNode
    from detectron2.config.compat import downgrade_config, guess_version, upgrade_config

    try:
        loaded = CfgNode(values)
        version = loaded.get("VERSION", None)
        if version is None:
            version = guess_version(loaded, str(path))
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= cfg.VERSION:
            raise ConfigFileError(f"{path}: VERSION {brief(version)} is not a config version this Detectron2 "
                                  f"reads (v1 to v{cfg.VERSION})")
        if version == cfg.VERSION:
            cfg.merge_from_other_cfg(loaded)
            return
        old = downgrade_config(cfg, to_version=version)
        old.merge_from_other_cfg(loaded)
        new = upgrade_config(old)
    except ConfigFileError:
        raise
    except (KeyError, ValueError, AssertionError, TypeError, AttributeError) as e:
        raise ConfigFileError(f"{path}: {one_line_reason(e)}") from None
    cfg.clear()
    cfg.update(new)


def overrides_shape_problem(opts: list[str]) -> str | None:
    """One line when the overrides ``opts`` are not KEY VALUE pairs or set ``_BASE_``; None when they may merge."""
    if len(opts) % 2:
        return (f"config overrides must be KEY VALUE pairs; {str(opts[-1])[:60]!r} (the last of {len(opts)}) "
                "has no value")
    if BASE_KEY in opts[::2]:
        return "_BASE_ cannot be overridden: it is set only inside a config file (pick another --config-file)"
    return None


def merge_config_file(cfg: Any, path: str | os.PathLike) -> None:
    """``cfg.merge_from_file(path)`` without Detectron2's unsafe loader (module doc)."""
    merge_config_dict(cfg, load_config_dict(path), path)


def one_line_reason(e: BaseException) -> str:
    """One line for yacs' errors (``KeyError('Non-existent config key: X')`` and its type mismatches)."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return (text.strip().splitlines() or [type(e).__name__])[0][:300]
