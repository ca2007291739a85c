"""COCO DensePose (MoCo v1 Table 6) through Detectron2's DensePose project, when it is installed: DensePose R-CNN
R50-FPN, s1x schedule, GPS AP (``transfer/configs/densepose/``; runner ``bash benchmarks/run_densepose.sh``).
All the suite knows about it is here: the project glue below, the dataset check, the tiny layout (drawn people
with part masks and sampled points), the task and its runner entry.

DensePose lives in Detectron2's ``projects/DensePose`` (package ``densepose``); it is not part of the
Detectron2 wheels and not on PyPI, so the suite does not vendor or reimplement it. What this module adds
around it, so that ``transfer/train_net.py`` trains a DensePose config like any other:

* :func:`is_densepose_config` tells from the YAML (its ``_BASE_`` chain read by ``transfer/config_files.py``)
  that a config needs DensePose, and
  :func:`add_config` adds DensePose's config keys (``densepose.add_densepose_config``) before the file is
  merged — or, without the package, stops with :data:`MISSING` (one line naming what to install);
  ``read_only=True`` merges the file without it (unknown keys allowed) to read its values (tests, plans);
* :func:`register_datasets` re-registers ``densepose_coco_2014_*`` under ``$DETECTRON2_DATASETS``
  (the project registers them under ``./datasets``, unlike Detectron2's builtin datasets);
* :func:`train_mapper` / :func:`test_mapper` are the project's ``DatasetMapper`` (DensePose annotations);
* :func:`build_evaluator` is the project's trainer's evaluator: Detectron2's COCO box AP plus
  ``DensePoseCOCOEvaluator`` (AP with the geodesic point similarity, GPS and GPSm).

Evaluation (and horizontal-flip training) reads DensePose's SMPL-based data files (``SMPL_subdiv.mat``,
``Pdist_matrix.pkl``, ``UV_symmetry_transforms.mat``), which the project downloads on first use.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from transfer.tasks.registry import register
from transfer.tasks.base import CONFIGS, Benchmark, Metrics, RunSpec, Task
from transfer.tasks.categories import person_category
from transfer.tasks.checks import _ANN_KEYS, Problems, _check_coco_images, _load_lists
from transfer.tasks.coco import coco_style_metrics
from transfer.tasks.draw import _PART_FINE, README_MARKER, Person, _person_annotation, _rng, _save_jpeg, people_scene



MISSING = ("COCO DensePose needs Detectron2's DensePose project (Python package 'densepose'), which is not "
           "installed: install Detectron2 from source and then `pip install -e projects/DensePose` from its "
           "checkout (or `pip install 'git+https://github.com/facebookresearch/detectron2@main"
           "#subdirectory=projects/DensePose'`)")
DATASET_FILES = {  # name: (image folder, annotation file), relative to the dataset root (DensePose's layout)
    "densepose_coco_2014_train": ("coco/train2014", "coco/annotations/densepose_train2014.json"),
    "densepose_coco_2014_valminusminival": ("coco/val2014", "coco/annotations/densepose_valminusminival2014.json"),
    "densepose_coco_2014_minival": ("coco/val2014", "coco/annotations/densepose_minival2014.json"),
}


class DensePoseMissing(RuntimeError):
    """The config needs the ``densepose`` package and it is not importable (message: :data:`MISSING`)."""


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("densepose") is not None


def require() -> Any:
    """The ``densepose`` module, or :class:`DensePoseMissing`."""
    if not available():
        raise DensePoseMissing(MISSING)
    import densepose

    return densepose


def needs_densepose(values: dict) -> bool:
    """Whether the merged config ``values`` set ``MODEL.DENSEPOSE_ON: True``."""
    model = values.get("MODEL") if isinstance(values, dict) else None
    return isinstance(model, dict) and bool(model.get("DENSEPOSE_ON", False))


def is_densepose_config(config_file: str | Path) -> bool:
    """Whether ``config_file`` (or a ``_BASE_`` of it) sets ``MODEL.DENSEPOSE_ON: True``; the chain is read as
    untrusted input (``transfer/config_files.py``: a refused file raises ``ValueError`` with one line)."""
    from transfer.config_files import load_config_dict

    if not Path(config_file).exists():
        return False
    return needs_densepose(load_config_dict(config_file))


def add_config(cfg: Any, read_only: bool = False) -> Any:
    """DensePose's config keys on ``cfg``; without the package, :class:`DensePoseMissing` (``read_only``:
    allow the file's unknown keys instead, to read its values)."""
    if available():
        require().add_densepose_config(cfg)
        return cfg
    if not read_only:
        raise DensePoseMissing(MISSING)
    cfg.set_new_allowed(True)
    return cfg


def register_datasets(root: str | Path) -> None:
    """Register the DensePose COCO 2014 splits under ``root`` (replacing the project's ``./datasets`` ones)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    require()
    from densepose.data.datasets.coco import CocoDatasetInfo, register_dataset

    for name, (images, annotations) in DATASET_FILES.items():
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_dataset(CocoDatasetInfo(name=name, images_root=images, annotations_fpath=annotations), str(root))


def train_mapper(cfg: Any) -> Any:
    from densepose.data import DatasetMapper

    return DatasetMapper(cfg, True)


def test_mapper(cfg: Any) -> Any:
    from densepose.data import DatasetMapper

    return DatasetMapper(cfg, False)


def build_evaluator(cfg: Any, dataset_name: str, output_folder: str) -> Any:
    """COCO box AP and DensePose GPS/GPSm AP, as the project's own trainer evaluates."""
    require()
    from densepose.evaluation import DensePoseCOCOEvaluator
    from densepose.evaluation.evaluator import build_densepose_evaluator_storage
    from detectron2.evaluation import COCOEvaluator, DatasetEvaluators

    ev = cfg.DENSEPOSE_EVALUATION
    return DatasetEvaluators([
        COCOEvaluator(dataset_name, tasks=("bbox",), output_dir=output_folder, use_fast_impl=False),
        DensePoseCOCOEvaluator(dataset_name, True, output_folder, evaluator_type=ev.TYPE,
                               min_iou_threshold=ev.MIN_IOU_THRESHOLD,
                               storage=build_densepose_evaluator_storage(cfg, output_folder)),
    ])


# ----------------------------------------------------------------------------- check and tiny layout

DENSEPOSE_FILES: tuple[tuple[str, str], ...] = (("densepose_train2014", "train2014"),
                                                ("densepose_valminusminival2014", "val2014"),
                                                ("densepose_minival2014", "val2014"))


_DP_POINT_KEYS = ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V")


def _densepose_problem(ann: dict) -> str | None:
    """What is wrong with one annotation's DensePose fields (None: fine or none present)."""
    if not any(k in ann for k in (*_DP_POINT_KEYS, "dp_masks")):
        return None
    missing = [k for k in (*_DP_POINT_KEYS, "dp_masks") if k not in ann]
    if missing:
        return f"has DensePose fields but not {', '.join(missing)}"
    lengths = {len(ann[k]) if isinstance(ann[k], list) else -1 for k in _DP_POINT_KEYS}
    if len(lengths) != 1 or -1 in lengths:
        return f"{', '.join(_DP_POINT_KEYS)} must be lists of one length"
    if not all(0 <= v <= 256 for k in ("dp_x", "dp_y") for v in ann[k]):
        return "dp_x/dp_y must lie in the 256x256 box frame (0-255)"
    if not all(v == int(v) and 1 <= v <= 24 for v in ann["dp_I"]):
        return "dp_I must be part indices 1-24"
    if not all(0 <= v <= 1 for k in ("dp_U", "dp_V") for v in ann[k]):
        return "dp_U/dp_V must lie in [0, 1]"
    masks = ann["dp_masks"]
    if not (isinstance(masks, list) and len(masks) == 14
            and all(m == [] or (isinstance(m, dict) and "counts" in m and "size" in m) for m in masks)):
        return "dp_masks must be 14 entries, each an RLE ({'size', 'counts'}) or []"
    return None


def check_densepose(root: Path | str, notes: list[str] | None = None) -> list[str]:
    """Check DensePose-COCO under ``<root>/coco``: ``annotations/densepose_{train2014,valminusminival2014,
    minival2014}.json``, their images in ``train2014``/``val2014`` and each annotation's DensePose fields."""
    root, problems = Path(root), Problems()
    notes = [] if notes is None else notes
    for stem, folder in DENSEPOSE_FILES:
        path = root / "coco" / "annotations" / f"{stem}.json"
        doc = _load_lists(path, problems, "DensePose-COCO json", ("images", "annotations"))
        if doc is None:
            continue
        image_ids = _check_coco_images(path, doc["images"], root / "coco" / folder, problems)
        with_dp = 0
        for k, ann in enumerate(doc["annotations"]):
            if not isinstance(ann, dict) or any(key not in ann for key in _ANN_KEYS):
                problems.add("bad-annotation", f"{path}: annotations[{k}] needs {', '.join(_ANN_KEYS)}")
                continue
            if ann["image_id"] not in image_ids:
                problems.add("unknown-image-id", f"{path}: annotation id {ann['id']}: image_id {ann['image_id']} "
                                                 "is not in 'images'")
            line = _densepose_problem(ann)
            if line:
                problems.add("bad-densepose", f"{path}: annotation id {ann['id']}: {line}")
            with_dp += "dp_I" in ann
        if doc["annotations"] and not with_dp:
            problems.add("no-annotations", f"{path}: no annotation has DensePose points (dp_I, dp_U, dp_V, ...)")
    return problems.lines()


DENSEPOSE_SPLITS = {"train2014": "train2014", "valminusminival2014": "val2014", "minival2014": "val2014"}


def _densepose_fields(person: Person, rng: np.random.Generator, n_points: int = 24) -> dict:
    """DensePose-COCO annotation fields of one person: 14 coarse part masks (RLE, 256x256 over the box) and
    sampled points (``dp_x``/``dp_y`` in 0-255 box coordinates, fine part ``dp_I`` 1-24, ``dp_U``/``dp_V``)."""
    from pycocotools import mask as mask_utils

    x0, y0, x1, y1 = person.box
    crop = Image.fromarray(person.parts[y0:y1, x0:x1]).resize((256, 256), Image.Resampling.NEAREST)
    parts = np.asarray(crop)
    masks = []
    for part in range(1, 15):
        m = np.asfortranarray((parts == part).astype(np.uint8))
        if m.any():
            rle = mask_utils.encode(m)
            masks.append({"size": [256, 256], "counts": rle["counts"].decode()})
        else:
            masks.append([])
    ys, xs = np.nonzero(parts)
    pick = rng.choice(len(xs), size=min(n_points, len(xs)), replace=False)
    coarse = parts[ys[pick], xs[pick]]
    return {"dp_masks": masks, "dp_x": [float(v) for v in xs[pick]], "dp_y": [float(v) for v in ys[pick]],
            "dp_I": [float(_PART_FINE[int(c)]) for c in coarse],
            "dp_U": [float(v) for v in rng.uniform(0, 1, len(pick))],
            "dp_V": [float(v) for v in rng.uniform(0, 1, len(pick))]}


def write_densepose(root: Path, splits: dict[str, int], seed: int) -> Path:
    """Write DensePose-COCO's layout: ``coco/annotations/densepose_<split>.json`` for train2014,
    valminusminival2014 and minival2014, images in ``coco/train2014`` and ``coco/val2014``."""
    base = root / "coco"
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    image_id = 950000
    for split, n in splits.items():
        folder = DENSEPOSE_SPLITS[split]
        rng = _rng(seed, f"densepose_{split}")
        images, annotations = [], []
        for _ in range(n):
            image_id += 1
            canvas, people = people_scene(rng, int(rng.integers(1, 3)))
            file_name = f"COCO_{folder}_{image_id:012d}.jpg"
            _save_jpeg(canvas, base / folder / file_name)
            images.append({"id": image_id, "file_name": file_name, "height": canvas.shape[0],
                           "width": canvas.shape[1]})
            for person in people:
                ann = _person_annotation(person, len(annotations) + 1, image_id, rng)
                annotations.append({**ann, **_densepose_fields(person, rng)})
        doc = {"info": {"description": f"{README_MARKER} (seed {seed})"}, "licenses": [], "images": images,
               "annotations": annotations, "categories": [person_category()]}
        (base / "annotations" / f"densepose_{split}.json").write_text(json.dumps(doc, separators=(",", ":")))
    return base


# ----------------------------------------------------------------------------- the task and the runner


def densepose_metrics(results: dict) -> Metrics:
    """DensePose AP with the geodesic point similarity (GPS; Guler et al. 2018) as ``APdp``/``APdp50``/``APdp75``;
    the GPSm variant as ``APdpm*``, box AP as ``APbb*``."""
    out = coco_style_metrics(results, {"bbox": "APbb"})
    for src, dst in (("densepose_gps", "APdp"), ("densepose_gpsm", "APdpm")):
        r = results.get(src, {})
        out.update({dst + suffix: r[k] for k, suffix in (("AP", ""), ("AP50", "50"), ("AP75", "75")) if k in r})
    return out


DENSEPOSE = Task("coco_densepose", ("densepose_coco_",), build_evaluator, densepose_metrics,
                 title="COCO dense pose estimation", paper_table="Table 6", metrics=("APdp", "APdp50", "APdp75"), short="COCO dense pose",
                 applies=lambda cfg: bool(cfg.MODEL.get("DENSEPOSE_ON", False)))


def has_densepose(root: Path) -> bool:
    return (root / "coco" / "annotations" / "densepose_train2014.json").is_file()


def densepose_missing() -> str | None:
    return None if available() else MISSING


RECIPES = {"paper": None, "2020": "densepose_2020"}  # --recipe -> protocol.yaml variant


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", choices=tuple(RECIPES), default="paper",
                   help="DensePose head and lr: 'paper' (the recipe of the paper's time, Detectron2 before e9293707; "
                        "the protocol) or '2020' (today's defaults: 2-channel coarse segmentation, decoder, lr 0.01; "
                        "footnoted, own run dir)")


def recipe_opts(recipe: str) -> tuple[str, ...]:
    """The Detectron2 overrides of a ``--recipe`` (none for the paper's)."""
    from transfer.protocol import variant

    if RECIPES[recipe] is None:
        return ()
    return tuple(x for key, value in variant(RECIPES[recipe])["values"].items() for x in (key, str(value)))


def _spec(args: argparse.Namespace) -> RunSpec:
    recipe = getattr(args, "recipe", "paper")
    suffix = "" if recipe == "paper" else f"-recipe{recipe}"
    return RunSpec(
        name="densepose", prog="run_densepose.sh", table="Table 6", dataset="DensePose-COCO (COCO 2014 images)",
        has_data=has_densepose, check=lambda root, notes: check_densepose(root, notes=notes),
        config=CONFIGS / "densepose" / "densepose_R_50_FPN_s1x.yaml", run_dir="R50-FPN-s1x" + suffix,
        tiny_config=CONFIGS / "tiny" / "densepose_R_18_FPN_tiny.yaml", tiny_run_dir="R18-FPN" + suffix,
        requires=densepose_missing, opts=recipe_opts(recipe),
    )


def _write_tiny(root: Path, seed: int, sizes: dict[str, int]) -> str:
    n = sizes["densepose_train"], sizes["densepose_val"]
    write_densepose(root, {"train2014": n[0], "valminusminival2014": n[1] // 2, "minival2014": n[1] - n[1] // 2}, seed)
    return f"train2014 {n[0]}, val2014 {n[1]}"


BENCHMARK = register(Benchmark(
    name="densepose", summary="COCO DensePose, DensePose R-CNN (MoCo v1 Table 6; needs Detectron2's DensePose project)",
    tasks=(DENSEPOSE,), dataset="DensePose-COCO (COCO 2014 images)", has_data=has_densepose, check=check_densepose,
    needs=("coco/train2014", "coco/val2014", "coco/annotations/densepose_train2014.json",
           "coco/annotations/densepose_valminusminival2014.json", "coco/annotations/densepose_minival2014.json"),
    spec=_spec, add_args=_add_args, write_tiny=_write_tiny, tiny_sizes={"densepose_train": 4, "densepose_val": 4},
))
