"""Register the datasets of a sweep's dataset spec inside a trial (``train_net.py --datasets-spec FILE``).

A runner (``run_custom.sh``: ``benchmarks/own_data.py``, or ``--train-fraction`` on any runner) writes one JSON spec into its
sweep folder; every trial of every row reads the same file, so registration happens in the trial's own
process (also on another machine under SLURM) and all trials see the same data. A spec::

    {"version": 1,
     "datasets": [
       {"name": "custom_coco_widgets_train", "type": "coco", "json_file": "/abs/train.json", "image_root": "/abs/img"},
       {"name": "custom_voc_widgets_test", "type": "voc", "dirname": "/abs/VOC", "split": "test",
        "classes": ["widget"], "float_boxes": true},
       {"name": "voc_2007_trainval_frac0.25_seed0", "type": "subset", "of": "voc_2007_trainval",
        "image_ids": ["000005", ...]}],
     "train": [...], "test": [...],          # replace DATASETS.TRAIN / DATASETS.TEST (test optional)
     "fingerprint": {...},                   # runner-level protocol values for the record's fingerprint
     "record": {...}}                        # facts for the record's "dataset" field

``coco`` entries go through Detectron2's ``register_coco_instances``; ``voc`` entries read a VOC-layout folder
with any class names through ``transfer/voc_xml.load_voc_instances`` (``float_boxes``: annotation-tool float
boxes read as they are; metadata for Detectron2's PascalVOC
evaluator, VOC07 11-point metric); ``subset`` entries keep the listed image ids of an already registered
dataset (a listed id the dataset lacks stops the trial). What each loader returned in this process (image
count, hash of the image ids) goes into the record, so a record proves which images a trial trained on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable

SPEC_VERSION = 1
_LOADED: dict[str, dict[str, Any]] = {}


class DatasetSpecError(ValueError):
    """A dataset spec that cannot be used; the message is one line naming the file."""


def ids_sha256(ids: Iterable[Any]) -> str:
    """Order-independent hash of image ids (``str`` of each), e.g. ``("voc_2007_trainval", "000005")`` pairs."""
    lines = sorted("/".join(map(str, i)) if isinstance(i, (tuple, list)) else str(i) for i in ids)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def read_spec(path: str) -> dict[str, Any]:
    try:
        spec = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DatasetSpecError(f"dataset spec not found: {path}") from None
    except (OSError, ValueError) as e:
        raise DatasetSpecError(f"{path}: unreadable dataset spec ({e})") from None
    if not isinstance(spec, dict) or spec.get("version") != SPEC_VERSION or not isinstance(spec.get("datasets"), list):
        raise DatasetSpecError(f"{path}: not a version-{SPEC_VERSION} dataset spec")
    return spec


def _noted(name: str, load: Callable[[], list[dict]]) -> Callable[[], list[dict]]:
    def run() -> list[dict]:
        dicts = load()
        _LOADED[name] = {"images": len(dicts), "ids_sha256": ids_sha256(d["image_id"] for d in dicts)}
        return dicts

    return run


def _subset(name: str, of: str, ids: list) -> Callable[[], list[dict]]:
    def load() -> list[dict]:
        from detectron2.data import DatasetCatalog

        keep = set(ids)
        dicts = [d for d in DatasetCatalog.get(of) if d["image_id"] in keep]
        missing = keep - {d["image_id"] for d in dicts}
        if missing:
            raise DatasetSpecError(f"{name}: {len(missing)} of its {len(keep)} image ids are not in {of} (e.g. "
                                   f"{sorted(map(str, missing))[0]}); the dataset changed since the subset was drawn")
        return dicts

    return load


def register(entry: dict[str, Any], where: str = "spec") -> None:
    """Register one spec entry (again in the same process: kept as it is)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name, kind = entry.get("name"), entry.get("type")
    if not name or kind not in ("coco", "voc", "subset"):
        raise DatasetSpecError(f"{where}: dataset entry {entry.get('name')!r} needs a name and a type coco|voc|subset")
    if name in DatasetCatalog.list():
        return
    if kind == "coco":
        from detectron2.data.datasets import register_coco_instances

        register_coco_instances(name, {}, entry["json_file"], entry["image_root"])
        load = DatasetCatalog[name]
        DatasetCatalog.remove(name)  # the same loader, noting what it returned
        DatasetCatalog.register(name, _noted(name, load))
    elif kind == "voc":
        from transfer.voc_xml import load_voc_instances

        dirname, split, classes = entry["dirname"], entry["split"], list(entry["classes"])
        if entry.get("float_boxes"):  # your own data: annotation-tool float boxes read as they are
            from transfer.voc_xml import allow_float_boxes

            allow_float_boxes(dirname)
        DatasetCatalog.register(name, _noted(name, lambda: load_voc_instances(dirname, split, classes)))
        # year 2007: Detectron2's PascalVOC evaluator then uses the VOC07 11-point metric, as in Table 2
        MetadataCatalog.get(name).set(thing_classes=classes, dirname=dirname, year=2007, split=split,
                                      evaluator_type="pascal_voc")
    else:
        of = entry["of"]
        if of not in DatasetCatalog.list():
            raise DatasetSpecError(f"{where}: subset {name} of {of}, which is not a registered dataset")
        DatasetCatalog.register(name, _noted(name, _subset(name, of, list(entry["image_ids"]))))
        meta = {k: v for k, v in MetadataCatalog.get(of).as_dict().items() if k != "name"}
        MetadataCatalog.get(name).set(**meta)


def apply_spec(cfg: Any, path: str | None) -> None:
    """Register the spec's datasets and point ``cfg.DATASETS`` at them (``path`` None: nothing to do)."""
    if not path:
        return
    spec = read_spec(str(path))
    for entry in spec["datasets"]:
        register(entry, where=str(path))
    cfg.DATASETS.TRAIN = tuple(spec["train"])
    if spec.get("test") is not None:
        cfg.DATASETS.TEST = tuple(spec["test"])


def fingerprint_extra(path: str | None) -> dict[str, Any]:
    """Runner-level protocol values of the spec (epochs, training images, subset), for the fingerprint."""
    return dict(read_spec(str(path)).get("fingerprint") or {}) if path else {}


def dataset_record(path: str | None) -> dict[str, Any]:
    """The record's extra ``dataset`` facts: the spec, what the runner stated, what the loaders returned here."""
    if not path:
        return {}
    spec = read_spec(str(path))
    names = [*spec["train"], *(spec.get("test") or [])]
    return {"spec": str(path), **(spec.get("record") or {}),
            "loaded": {n: dict(_LOADED[n]) for n in names if n in _LOADED}}
