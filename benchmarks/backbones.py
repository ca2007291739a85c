"""Backbones as rows: the pretrained rows of a sweep, from ``--weights`` (repeatable) and ``--weights-list``.

    --weights PATH                     a row labelled "<method> <file stem>" (method: transfer/methods.py)
    --weights "LABEL=PATH"             a row labelled LABEL
    --weights-list backbones.yaml      the rows the file lists, where it stands on the command line
    --weights "LABEL=PATH#prefix=P"    the encoder under key prefix P ([NESTED/PATH:]P), not the layout's own

``backbones.yaml`` lists entries, each a mapping (or a ``LABEL=PATH`` / ``PATH`` string as on the command line);
relative paths are read from the file's folder::

    - path: checkpoints/moco_v2_800ep.pth.tar     # required (.pth/.pth.tar/.pt/.ckpt/.bin/.torch/.safetensors or .pkl)
      label: MoCo v2 800ep                        # optional: default "<method> <file stem>"
      input_format: RGB                           # optional: RGB | BGR (default: decided from the file)
      prefix: module.encoder_k.                   # optional: the encoder's key prefix (transfer/layouts.py)
    - DenseCL=converted/densecl_r50_200ep.pkl
    - converted/swav_800ep.pkl

(a mapping ``{backbones: [...]}`` is read the same way). Rows keep the order they were given in, across both flags;
the supervised and random-init rows run once per sweep and serve them all. Each pretrained row gets its own
input-format decision (``--weights-format`` for every row that does not set one), preflight, load report,
fingerprint and trials (its folder is its label's slug). Two rows whose default labels are equal get their
parent folder's name appended; rows that would still share a label (or a baseline row's folder) are refused in
one line (``benchmarks/sweep_checks.py``).

The list is read as bounded, plain YAML (``core/safe_yaml.py``: regular files only, no duplicate keys, no alias
bombs) and a label given is text that prints as itself (``core/names.py``: NFC, no control or invisible
characters, at most :data:`MAX_LABEL` characters; ``label: no`` or ``label: 1.10`` must be quoted); every bad
entry is one line naming the file and entry, its value shown briefly.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.files import brief
from core.names import clean_name
from transfer.weights import FORMATS, WeightsFormatError, is_remote, local_weights, resolve_local

MAX_LIST_BYTES = 1 << 20  # a backbones list is a few lines; a bigger file is not one
MAX_LABEL = 128  # a label is a table row and (as its slug) a folder name
LIST_KEYS = {"path": "path", "weights": "path", "label": "label", "input_format": "input_format",
             "format": "input_format", "prefix": "prefix"}
PREFIX_MARK = "#prefix="  # --weights PATH#prefix=P: the encoder's key prefix, overriding the layout registry


class BackboneError(WeightsFormatError):
    """A pretrained row that cannot be made as given; one line (the runners report it like a weights-format error)."""


@dataclass(frozen=True)
class BackboneSpec:
    """One pretrained row as given: its weights, its label and input format when given, and where it was given."""

    path: str
    label: str | None = None
    input_format: str | None = None
    origin: str = "--weights"
    prefix: str | None = None  # the encoder's [PATH:]PREFIX when given (PATH#prefix=P, prefix: in a list)


def clean_label(label: object) -> str:
    """A row label as text that prints as itself (:func:`core.names.clean_name`); ``ValueError`` (one line)."""
    return clean_name(label, "label", MAX_LABEL)  # type: ignore[arg-type]


def label_arg(text: str) -> str:
    """``--label``: argparse ``type=`` (a one-line usage error for a label that cannot be one)."""
    try:
        return clean_label(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _check_path(path: str) -> str:
    if "\0" in path:
        raise ValueError(f"the weights path {brief(path)} holds a NUL byte, which no file name can")
    return path


def split_label(text: str) -> tuple[str | None, str]:
    """``"LABEL=PATH"`` -> (LABEL, PATH); a plain path (also one holding ``=``, when that file exists, or a URL)
    -> (None, PATH). Raises ``ValueError`` (one line) for an empty path or a label that cannot be one."""
    text = text.strip()
    head, sep, tail = text.partition("=")
    if not sep or "://" in head or _exists(text):
        if not text:
            raise ValueError("an empty weights path")
        return None, _check_path(text)
    if not head.strip() or not tail.strip():
        raise ValueError(f"{brief(text)}: expected LABEL=PATH with a label and a path")
    return clean_label(head), _check_path(tail.strip())


def _exists(path: str) -> bool:
    try:
        return Path(path).expanduser().exists()
    except (OSError, ValueError):  # a name too long for a file, a NUL
        return False


def split_prefix(text: str) -> tuple[str, str | None]:
    """``"PATH#prefix=P"`` -> (PATH, P); a path without the mark -> (PATH, None). Raises ``ValueError`` for an
    empty prefix."""
    head, sep, prefix = text.rpartition(PREFIX_MARK)
    if not sep:
        return text, None
    if not prefix.strip():
        raise ValueError(f"{brief(text)}: an empty prefix after {PREFIX_MARK} (e.g. {PREFIX_MARK}module.encoder_k.)")
    return head, prefix.strip()


def _resolve(path: str, folder: Path | None) -> str:
    path = local_weights(path)  # file:///abs/w.pkl -> /abs/w.pkl (ValueError for another host's)
    if is_remote(path):
        return path
    p = Path(path).expanduser()
    return str(resolve_local((folder / p) if folder is not None and not p.is_absolute() else p))  # loop: ValueError


def read_weights_list(path: str | Path) -> list[BackboneSpec]:
    """The rows ``path`` lists (module doc); raises ``ValueError`` with one line naming the file and entry."""
    from core import safe_yaml

    f = Path(path).expanduser()
    doc = safe_yaml.load(f, "list of weights files", MAX_LIST_BYTES)  # YamlError (a ValueError): one line
    if isinstance(doc, dict) and set(doc) == {"backbones"}:
        doc = doc["backbones"]
    if not isinstance(doc, list) or not doc:
        raise ValueError(f"{f}: expected a list of entries (path, optional label and input_format)")
    specs = []
    for i, entry in enumerate(doc, 1):
        where = f"{f.name} entry {i}"
        specs.append(_entry(entry, where, f.resolve().parent))
    return specs


def _entry(entry: Any, where: str, folder: Path) -> BackboneSpec:
    if isinstance(entry, str):
        try:
            text, prefix = split_prefix(entry)  # before the label: PATH#prefix=P holds a '=' of its own
            label, path = split_label(text)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        return BackboneSpec(_resolve(path, folder), label, None, where, prefix)
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping (path, label, input_format) or 'LABEL=PATH', "
                         f"not a {type(entry).__name__}")
    unknown = [str(k) for k in entry if k not in LIST_KEYS]
    if unknown:
        raise ValueError(f"{where}: unknown key {brief(unknown[0])} (expected path, label, input_format, prefix)")
    got = {LIST_KEYS[k]: v for k, v in entry.items()}
    path, label, fmt = got.get("path"), got.get("label"), got.get("input_format")
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"{where}: no path")
    try:
        _check_path(path)
        label = clean_label(label) if label is not None else None
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if fmt is not None and (not isinstance(fmt, str) or fmt not in FORMATS):
        raise ValueError(f"{where}: input_format must be RGB or BGR, not {brief(fmt)}")
    prefix = got.get("prefix")
    if prefix is not None and (not isinstance(prefix, str) or not prefix.strip()):
        raise ValueError(f"{where}: prefix must be a non-empty string such as module.encoder_k.")
    return BackboneSpec(_resolve(path.strip(), folder), label, fmt, where, prefix.strip() if prefix is not None else None)


class BackboneArgs(argparse.Action):
    """``--weights`` / ``--weights-list``: the raw values in ``dest`` (as ``append`` would), and every row as a
    :class:`BackboneSpec` in ``backbones``, in command-line order across both flags. A list that cannot be read
    is a usage error naming it."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), values])
        given = list(getattr(namespace, "backbones", None) or [])
        try:
            if option_string == "--weights-list":
                given += read_weights_list(values)
            else:
                text, prefix = split_prefix(values)  # before the label: PATH#prefix=P holds a '=' of its own
                label, path = split_label(text)
                n = sum(1 for s in given if s.origin.startswith("--weights ")) + 1
                given.append(BackboneSpec(_resolve(path, None), label, None, f"--weights {n}", prefix))
        except ValueError as e:
            parser.error(f"{option_string}: {e}")
        namespace.backbones = given


def add_weights_args(p: argparse.ArgumentParser) -> None:
    """``--weights`` (repeatable, ``[LABEL=]PATH``), ``--weights-list``, ``--label``, ``--weights-format``."""
    p.set_defaults(backbones=[])
    p.add_argument("--weights", action=BackboneArgs, metavar="[LABEL=]PATH[#prefix=P]",
                   help="a pretrained backbone, one row each (repeatable): a checkpoint (.pth, .pth.tar, .pt, .ckpt, .bin, "
                        ".torch, .safetensors) or a Detectron2 .pkl; "
                        "LABEL= names its row (default: '<method> <file stem>', the method read from the file); "
                        "#prefix=P takes the encoder under key prefix P ([NESTED/PATH:]P) instead of the layout's")
    p.add_argument("--weights-list", action=BackboneArgs, metavar="FILE",
                   help="a YAML list of backbones, one row each: path, optional label and input_format (RGB|BGR); "
                        "rows keep the order given")
    p.add_argument("--label", type=label_arg, help="row label of a single --weights PATH (same as --weights LABEL=PATH)")
    p.add_argument("--weights-format", choices=FORMATS,
                   help="input format of every pretrained row that does not set its own (default: decided from each "
                        "file; see docs/trust.md)")


def specs_of(args: argparse.Namespace) -> list[BackboneSpec]:
    """The pretrained rows the command line gives, ``--label`` applied to a single unlabelled ``--weights``."""
    specs = list(getattr(args, "backbones", None) or [])
    label = getattr(args, "label", None)
    if label:
        unlabelled = [i for i, s in enumerate(specs) if s.origin.startswith("--weights ") and s.label is None]
        if len(specs) != 1 or len(unlabelled) != 1:
            raise BackboneError("--label names the row of a single --weights PATH; with several backbones give each "
                                "its label as --weights LABEL=PATH (or label: in --weights-list)")
        s = specs[0]
        specs = [BackboneSpec(s.path, label, s.input_format, s.origin, s.prefix)]
    return specs


def default_label(method: str, weights: str) -> str:
    """``"<method> <file stem>"`` (the stem alone when the method is unknown)."""
    from transfer.methods import UNKNOWN

    import unicodedata

    stem = Path(weights).name.split(".")[0] or Path(weights).name
    stem = unicodedata.normalize("NFC", stem)  # a file named on macOS (NFD) gets the label typed elsewhere (NFC)
    return stem if method == UNKNOWN else f"{method} {stem}"


def distinct_defaults(labels: list[str], given: list[bool], weights: list[str]) -> list[str]:
    """Default labels shared by several rows get their weights' parent folder (``"MoCo v2 ckpt (runA)"``) when that
    tells them apart; labels given explicitly are kept as they are (a clash left over, e.g. one file given twice, is
    refused by ``sweep_checks.label_problems``)."""
    out = list(labels)
    for label in set(labels):
        group = [i for i, other in enumerate(labels) if other == label and not given[i]]
        if len(group) < 2 or any(is_remote(weights[i]) for i in group):
            continue
        parents = [Path(weights[i]).parent.name for i in group]
        if all(parents) and len(set(parents)) == len(parents):
            for i, parent in zip(group, parents):
                out[i] = f"{label} ({parent})"
    return out
