"""Find and read every trial record under the run roots.

Unusable records (corrupt, partial, unknown schema version, non-numeric metrics) are *skipped* and
reported with their path and a one-line reason; the rest still make it into the tables. When two
records claim the same trial of the same configuration (e.g. a failed trial re-run into another
directory), the finished one wins, then the newest; the other is reported as superseded.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from core.ablation_records import RECORD_NAME as ABLATION_RECORD
from core.ablation_records import AblationRecordError, read_ablation_record
from core.records import KINDS as RECORD_KINDS
from core.records import LEGACY_KINDS, RECORD_NAME, RecordError, pretrain_of, read_record

# Keys that decide which trials are averaged together (see results.tables).
RUN_KEYS = ("task", "arch", "schedule", "tiny", "label", "sha256")
KINDS = (*RECORD_KINDS, *LEGACY_KINDS)  # "moco": written by older versions, read as "pretrained" (core/records.py)
METRIC_RANGE = (0.0, 100.0)  # every metric is a percentage
MAX_DEPTH = 64  # folders below a run root that are searched for records


@dataclass
class Collection:
    """Usable records (each with ``_path``, the record file) and ``(path, reason)`` for skipped ones."""

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def find_records(roots: Iterable[str | os.PathLike], skipped: list[tuple[str, str]] | None = None,
                 name: str = RECORD_NAME) -> list[Path]:
    """Every regular file ``name`` under ``roots`` (a root may itself be a record file), sorted. The walk is
    iterative, follows no symbolic link to a folder and stops ``MAX_DEPTH`` folders down (said in ``skipped``)."""
    found: set[Path] = set()
    for root in roots:
        root = Path(root)
        if root.is_file():
            found.add(root)
            continue
        if not root.is_dir():
            continue
        stack = [(root, 0)]
        while stack:
            folder, depth = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError as e:
                if skipped is not None:
                    skipped.append((str(folder), f"folder not readable ({e.strerror or e})"))
                continue
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if depth + 1 > MAX_DEPTH:
                            if skipped is not None:
                                skipped.append((entry.path, f"more than {MAX_DEPTH} folders below the run root: not searched"))
                        else:
                            stack.append((Path(entry.path), depth + 1))
                    elif entry.name == name and stat.S_ISREG(entry.stat().st_mode):
                        found.add(Path(entry.path))
                except OSError:
                    continue
    return sorted(found)


def run_key(record: dict[str, Any]) -> tuple[Any, ...]:
    """The configuration a trial belongs to: (task, arch, schedule, tiny, pretrain label, sha256)."""
    pre = record["pretrain"]
    return (record["task"], record["arch"], record["schedule"], bool(record.get("tiny", False)),
            str(pre["label"]), pre.get("sha256") or "")


def check_usable(record: dict[str, Any], where: str) -> dict[str, Any]:
    """Checks beyond the schema that the tables rely on; raises :class:`RecordError`."""
    for key in ("task", "arch", "schedule"):
        if not isinstance(record[key], str) or not record[key]:
            raise RecordError(f"{where}: {key!r} must be a non-empty string")
    kind = record["pretrain"].get("kind")
    if kind is not None and kind not in KINDS:
        raise RecordError(f"{where}: unknown pretrain kind {kind!r}")
    if not isinstance(record["trial"], int) or isinstance(record["trial"], bool):
        raise RecordError(f"{where}: 'trial' must be an integer")
    req = record.get("trials_requested")
    if req is not None and (not isinstance(req, int) or req < 1):
        raise RecordError(f"{where}: 'trials_requested' must be a positive integer")
    for key, want in (("fingerprint", dict), ("resumed", dict)):
        if record.get(key) is not None and not isinstance(record[key], want):
            raise RecordError(f"{where}: {key!r} must be an object, not {type(record[key]).__name__}")
    fp = record.get("fingerprint") or {}
    if not isinstance(fp.get("hash", ""), str) or not isinstance(fp.get("values", {}), dict):
        raise RecordError(f"{where}: 'fingerprint' must hold a string 'hash' and an object 'values'")
    its = (record.get("resumed") or {}).get("from_iters", [])
    if not isinstance(its, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in its):
        raise RecordError(f"{where}: 'resumed.from_iters' must be a list of iteration numbers")
    if record["status"] == "finished":
        for name, value in record["metrics"].items():
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise RecordError(f"{where}: metric {name!r} is not a number ({value!r})")
        if all(v is None or (isinstance(v, float) and math.isnan(v)) for v in record["metrics"].values()):
            raise RecordError(f"{where}: finished trial without any numeric metric")
    return record


def drop_out_of_range(record: dict[str, Any]) -> list[str]:
    """Remove metrics outside ``METRIC_RANGE`` (NaN stays: "not measured"); one reason per removed metric."""
    lo, hi = METRIC_RANGE
    bad = {k: v for k, v in record["metrics"].items()
           if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)) and not lo <= v <= hi}
    for k in bad:
        del record["metrics"][k]
    return [f"metric {k!r} = {v:g} is outside {lo:g}..{hi:g} (a percentage): that metric skipped" for k, v in bad.items()]


def _rank(record: dict[str, Any]) -> tuple[int, str, str]:
    return (record["status"] == "finished", str(record.get("created") or ""), record["_path"])


def collect(roots: Iterable[str | os.PathLike]) -> Collection:
    """Read every record under ``roots``; unusable and superseded ones go to ``skipped``."""
    roots = list(roots)
    out = Collection()
    for root in roots:
        if not Path(root).exists():
            out.skipped.append((str(root), "run root does not exist"))
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for path in find_records(roots, out.skipped):
        try:
            record = check_usable(read_record(path), str(path))
        except RecordError as e:
            out.skipped.append((str(path), str(e).removeprefix(f"{path}: ")))
            continue
        out.skipped += [(str(path), reason) for reason in drop_out_of_range(record)]
        if record["status"] == "finished" and not any(isinstance(v, (int, float)) for v in record["metrics"].values()):
            continue  # every metric was out of range: said above
        record = {**record, "pretrain": pretrain_of(record), "_path": str(path)}
        key = (*run_key(record), record["trial"])
        other = best.get(key)
        if other is None:
            best[key] = record
            continue
        keep, drop = (record, other) if _rank(record) > _rank(other) else (other, record)
        best[key] = keep
        out.skipped.append((drop["_path"], f"superseded by {keep['_path']} (same trial {record['trial']})"))
    out.records = sorted(best.values(), key=lambda r: r["_path"])
    return out


@dataclass
class AblationCollection:
    """Usable ablation records (each with ``_path``) and ``(path, reason)`` for unusable ones."""

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def collect_ablation(roots: Iterable[str | os.PathLike]) -> AblationCollection:
    """Every ``ablation_record.json`` under ``roots`` (a root may itself be a record file)."""
    roots = [Path(r) for r in roots]
    files = [r for r in roots if r.is_file()]
    found = {r for r in files if r.name == ABLATION_RECORD} | set(find_records([r for r in roots if r not in files], None,
                                                                               ABLATION_RECORD))
    out = AblationCollection()
    for path in sorted(found):
        try:
            out.records.append({**read_ablation_record(path), "_path": str(path)})
        except AblationRecordError as e:
            out.skipped.append((str(path), str(e).removeprefix(f"{path}: ")))
    return out
