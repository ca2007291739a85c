"""Your own detection data for ``run_custom.sh`` (``python -m benchmarks.run custom``: this module is its runner): a COCO-json train/test pair or a VOC-layout folder.

Each is checked with the dataset check's rules (``benchmarks/dataset_check.py``: every listed image present,
complete and of the stated size; every annotation readable, its category known, its box inside the image
and of non-zero area; VOC XML through ``transfer/voc_xml.py``), summarised (classes, images, instances,
masks) and described as the dataset-spec entries the trials register (``transfer/custom_data.py``).

* COCO json: ``JSON:IMAGE_DIR`` for train and test, any category list (the same in both files); boxes, and
  masks when every annotation has one.
* VOC layout: ``DIR/{JPEGImages,Annotations,ImageSets/Main/{trainval,test}.txt}``, any class names, read from
  the annotations (sorted) or given in order with ``--classes`` (then an unknown name is an error). Boxes as
  annotation tools write them (labelme, CVAT: non-integral floats) are read and evaluated as they are.

A class without a test instance that its metric counts (VOC07: a non-difficult object; pycocotools: a
non-crowd annotation) has no AP: it is named in a warning and left out of the mean, as pycocotools does (and
``transfer/evaluators.py`` for the VOC metric); averaging it in as 0 would cap an ideal detector below 100.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from benchmarks.common import base_parser, parse_with_opts, requested_rows
from benchmarks.sweep_data import (
    SweepContext,
    SweepDataError,
    SweepSetup,
    add_fraction_args,
    draw_subset,
    fraction_dir,
    fraction_label,
    subset_spec,
    write_spec,
)
from transfer.tasks.base import CONFIGS, RunSpec
from core.names import clean_name
from transfer.tasks.checks import Problems, _valid_segmentation, check_coco_json, mask_format
from transfer.tasks.voc import check_voc_split

VOC_SPLITS = ("trainval", "test")


class OwnDataError(ValueError):
    """A command-line description of the data that cannot be used (one line)."""


@dataclass
class Split:
    images: int = 0                                  # listed
    instances: int = 0                               # objects (crowd regions excluded)
    with_objects: set = field(default_factory=set)   # ids of images with an object: what Detectron2 trains on
    ids: list = field(default_factory=list)          # every listed image id, in file order
    counted: Counter = field(default_factory=Counter)  # class -> instances the metric counts (not difficult/crowd)
    unreadable: int = 0                              # annotation files that could not be read (the check says why)
    objects: Counter = field(default_factory=Counter)  # VOC: class -> every object (difficult too: they train)


@dataclass
class OwnData:
    """A checked dataset: what the runner needs to size the schedule and write the dataset spec."""

    kind: str                 # "coco" | "voc"
    name: str                 # used in dataset names and the default output folder
    classes: list[str]
    train: Split
    test: Split
    masks: bool               # every train and test annotation has a usable mask
    sha256: str               # the annotation files' contents (the data's identity in the fingerprint)
    entries: list[dict]       # dataset-spec entries, train first
    train_name: str
    test_name: str
    source: str               # for messages
    mask_format: str = "polygon"  # INPUT.MASK_FORMAT that reads every training mask (bitmask: some are RLE)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "data"


def parse_pair(text: str, flag: str) -> tuple[Path, Path]:
    """``path/to/file.json:path/to/images`` -> (json, image dir)."""
    cut = text.lower().find(".json:")
    if cut < 0:
        raise OwnDataError(f"{flag} {text!r}: expected JSON:IMAGE_DIR (a COCO instances .json, a colon, the folder "
                           "its file_name entries are relative to)")
    return Path(text[: cut + 5]).expanduser().resolve(), Path(text[cut + 6:]).expanduser().resolve()


def default_name(path: Path) -> str:
    """The dataset's folder name: ``/data/widgets/annotations/train.json`` -> ``widgets``."""
    folder = path if path.is_dir() else path.parent
    if folder.name.lower() in ("annotations", "annotation", "labels", "json") and folder.parent.name:
        folder = folder.parent
    return slug(folder.name)


# ----------------------------------------------------------------------------- COCO json

def _coco_split(doc: dict) -> Split:
    anns = [a for a in doc["annotations"] if isinstance(a, dict) and not a.get("iscrowd", 0)]
    annotated = Counter(a.get("image_id") for a in anns)
    ids = [img["id"] for img in doc["images"] if isinstance(img, dict) and "id" in img]
    return Split(len(ids), sum(annotated.values()), {i for i in ids if annotated[i]}, ids,
                 Counter(a.get("category_id") for a in anns))


def missing_test_classes(classes: Sequence[str], counted: Counter, metric: str) -> str | None:
    """The warning for classes without a test instance ``metric`` counts (None when every class has one)."""
    missing = [c for c in classes if not counted[c]]
    if not missing or len(missing) == len(classes):
        return None
    return (f"WARNING: class(es) {', '.join(missing)} have no test instance that {metric} counts: their AP is "
            f"undefined and left out of the mean (the mean is over the other {len(classes) - len(missing)} "
            "classes, as pycocotools does); add test images of them to measure them")


def missing_train_classes(classes: Sequence[str], counted: Counter, where: str) -> list[str]:
    """One warning per class without a training instance (``where``: the split and its file)."""
    return [f"WARNING: class {c!r} has no training instance in {where}: the model never learns it (its test AP "
            "is 0 if it has test instances); add training images of it or leave the class out"
            for c in classes if not counted[c]]


def _categories(doc: dict) -> list[tuple[Any, str]]:
    return sorted(((c["id"], c["name"]) for c in doc["categories"] if isinstance(c, dict) and "id" in c
                   and "name" in c), key=lambda c: c[0])


def check_coco_pair(train: tuple[Path, Path], test: tuple[Path, Path], masks: str, name: str | None,
                    notes: list[str]) -> tuple[list[str], OwnData | None]:
    """(problem lines, the data when there are none); ``masks``: auto | on | off."""
    problems, docs = Problems(), []
    for (json_file, image_dir), what in ((train, "--train"), (test, "--test")):
        if not json_file.is_file():
            problems.add("missing-json", f"{json_file}: annotation file missing ({what})")
        if not image_dir.is_dir():
            problems.add("missing-dir", f"{image_dir}: image directory missing ({what})")
        if json_file.is_file() and image_dir.is_dir():
            docs.append(check_coco_json(json_file, image_dir, problems, notes, need_masks=masks == "on", custom=True))
    if len(docs) == 2 and all(docs):
        if _categories(docs[0]) != _categories(docs[1]):
            problems.add("category-mismatch", f"{test[0]}: 'categories' differ from those of {train[0]}; use one "
                                              "category list (ids and names) in both files")
    if not problems.lines() and not _coco_split(docs[0]).with_objects:
        problems.add("no-annotations", f"{train[0]}: no image with an object; there is nothing to train on")
    if not problems.lines() and not _coco_split(docs[1]).instances:
        problems.add("no-annotations", f"{test[0]}: no annotation that is not a crowd region; there is nothing to "
                                       "evaluate")
    lines = problems.lines()
    if lines:
        return lines, None
    tr, te = docs
    has_masks = all(_valid_segmentation(a.get("segmentation")) for d in docs for a in d["annotations"])
    if masks == "auto" and not has_masks:
        notes.append("not every annotation has a usable mask: boxes only (Faster R-CNN); --masks on lists them")
    counted = _coco_split(te).counted
    warning = missing_test_classes([n for _, n in _categories(tr)],
                                   Counter({n: counted[i] for i, n in _categories(te)}), "pycocotools (non-crowd)")
    if warning:
        notes.append(warning)
    train_counted = _coco_split(tr).counted
    notes += missing_train_classes([n for _, n in _categories(tr)],
                                   Counter({n: train_counted[i] for i, n in _categories(tr)}),
                                   f"the training set {train[0]} (non-crowd)")
    name = slug(name) if name else default_name(train[0])
    digest = hashlib.sha256()
    for json_file, _ in (train, test):
        digest.update(json_file.read_bytes())
    tn, sn = f"custom_coco_{name}_train", f"custom_coco_{name}_test"
    entries = [{"name": tn, "type": "coco", "json_file": str(train[0]), "image_root": str(train[1])},
               {"name": sn, "type": "coco", "json_file": str(test[0]), "image_root": str(test[1])}]
    return [], OwnData("coco", name, [n for _, n in _categories(tr)], _coco_split(tr), _coco_split(te),
                       has_masks and masks != "off", digest.hexdigest(), entries, tn, sn,
                       f"{train[0]} -> {test[0]}", mask_format([tr]))


# ----------------------------------------------------------------------------- VOC layout

def _voc_split(base: Path, split: str, names: Counter, first: dict[str, Path] | None = None) -> Split:
    """Counts of one split (unreadable files are skipped here: the check reports them)."""
    from transfer.voc_xml import VocXmlError, read_voc_xml

    split_file = base / "ImageSets" / "Main" / f"{split}.txt"
    ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()] \
        if split_file.is_file() else []
    out = Split(len(ids), ids=ids)
    for file_id in ids:
        try:
            objects = read_voc_xml(base / "Annotations" / f"{file_id}.xml", float_boxes=True).objects
        except VocXmlError:
            out.unreadable += 1
            continue
        names.update(o.name for o in objects)
        for o in objects:
            (first if first is not None else {}).setdefault(o.name, base / "Annotations" / f"{file_id}.xml")
        out.counted.update(o.name for o in objects if not o.difficult)
        out.objects.update(o.name for o in objects)
        out.instances += len(objects)
        if objects:
            out.with_objects.add(file_id)
    return out


def check_voc_dir(base: Path, classes: Sequence[str] | None, name: str | None,
                  notes: list[str]) -> tuple[list[str], OwnData | None]:
    """(problem lines, the data when there are none) for a VOC-layout folder with any class names."""
    base = base.expanduser().resolve()
    problems = Problems()
    names: Counter = Counter()
    first: dict[str, Path] = {}  # class name -> the first file that has it
    splits = {s: _voc_split(base, s, names, first) for s in VOC_SPLITS}
    if classes and len(set(classes)) != len(classes):
        twice = sorted({c for c in classes if list(classes).count(c) > 1})
        return [f"--classes names {', '.join(twice)} more than once; each class once, in the order you want"], None
    class_names = list(classes) if classes else sorted(names)
    unreadable = sum(s.unreadable for s in splits.values())
    if not class_names and base.is_dir() and not unreadable:  # unreadable files: the check says why, first
        problems.add("no-objects", f"{base}: no <object> in any annotation of {', '.join(VOC_SPLITS)}; nothing to "
                                   "detect")
    forms: dict[str, list[str]] = {}
    for raw in sorted(names):
        forms.setdefault(unicodedata.normalize("NFC", raw), []).append(raw)
    for same in (f for f in forms.values() if len(f) > 1):
        problems.add("bad-class-name", "class names " + " and ".join(f"{ascii(n)} ({first[n]})" for n in same) +
                     " print alike and differ only in Unicode form (NFC/NFD); write the name one way in every file")
    for split in VOC_SPLITS:
        check_voc_split(base, split, class_names, problems, notes, float_boxes=True)
    if not problems.lines() and class_names and not sum(splits["test"].counted.values()):
        problems.add("no-test-objects", f"{base}: the test split has no object that the VOC metric counts (every one "
                                        "is <difficult>); there is nothing to evaluate")
    lines = problems.lines()
    if lines:
        return lines, None
    warning = missing_test_classes(class_names, splits["test"].counted, "the VOC metric (non-difficult)")
    if warning:
        notes.append(warning)
    notes += missing_train_classes(class_names, splits["trainval"].objects,  # difficult ones train too
                                   f"trainval ({base / 'ImageSets' / 'Main' / 'trainval.txt'})")
    unused = [c for c in class_names if not names[c]]
    if unused:
        notes.append(f"--classes {', '.join(unused)}: no object of these classes in {base}")
    if not classes:
        notes.append(f"{len(class_names)} class name(s) read from the annotations: {', '.join(class_names)} "
                     "(--classes sets them and their order)")
    name = slug(name) if name else default_name(base)
    digest = hashlib.sha256()
    for split in VOC_SPLITS:
        digest.update((base / "ImageSets" / "Main" / f"{split}.txt").read_bytes())
        for file_id in splits[split].ids:
            digest.update((base / "Annotations" / f"{file_id}.xml").read_bytes())
    tn, sn = f"custom_voc_{name}_trainval", f"custom_voc_{name}_test"
    entries = [{"name": f"custom_voc_{name}_{s}", "type": "voc", "dirname": str(base), "split": s,
                "classes": class_names, "float_boxes": True} for s in VOC_SPLITS]
    return [], OwnData("voc", name, class_names, splits["trainval"], splits["test"], False, digest.hexdigest(),
                       entries, tn, sn, str(base))


# ----------------------------------------------------------------------------- the runner's part (run_custom.sh)

RUNNER_DOC = 'Detection transfer on your own data: ``bash benchmarks/run_custom.sh --train JSON:IMAGES --test JSON:IMAGES`` or ``--voc DIR`` ``[flags] [-- D2 opts]``.'
PROG = "run_custom.sh"
# Below these, one detection moves AP by a point or more: say so (tests and docs/own-data.md: "noise-dominated").
FEW_TRAIN_IMAGES = 100
FEW_TEST_INSTANCES = 100


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = base_parser(PROG, RUNNER_DOC, "custom-<name>")
    data = p.add_argument_group("your data (COCO json pair, or a VOC-layout folder)")
    data.add_argument("--train", metavar="JSON:IMAGE_DIR", help="COCO instances json of the training set and the "
                                                                "folder its file_name entries are in")
    data.add_argument("--test", metavar="JSON:IMAGE_DIR", help="the same for the test set")
    data.add_argument("--voc", type=Path, metavar="DIR",
                      help="VOC-layout folder: JPEGImages/, Annotations/, ImageSets/Main/{trainval,test}.txt")
    data.add_argument("--classes", help="VOC layout: class names in order, comma-separated (default: the names in "
                                        "the annotations, sorted); any other name in an annotation is an error")
    data.add_argument("--name", help="dataset name in records and the default output folder (default: its folder)")
    data.add_argument("--masks", choices=("auto", "on", "off"), default="auto",
                      help="COCO json: Mask R-CNN when every annotation has a mask (auto), always (on: a missing "
                           "mask is an error) or never (off)")
    model = p.add_argument_group("model and schedule")
    model.add_argument("--arch", choices=("C4", "FPN"), default="C4", help="R50-C4 (as VOC, default) or R50-FPN")
    model.add_argument("--batch", type=int, help="images per iteration (default 16, 4 with --tiny); the lr scales "
                                                 "linearly (0.02 at 16)")
    model.add_argument("--epochs", type=float, help="passes over the training images (default: the VOC recipe's "
                                                    "~23.2; 5 with --tiny)")
    model.add_argument("--max-iter", type=int, help="exact number of iterations (overrides --epochs)")
    add_fraction_args(p)
    args = parse_with_opts(p, argv)
    if bool(args.voc) == bool(args.train or args.test) or (not args.voc and not (args.train and args.test)):
        p.error("give either --train JSON:IMAGE_DIR and --test JSON:IMAGE_DIR, or --voc DIR")
    if args.classes and not args.voc:
        p.error("--classes is for --voc (a COCO json names its categories)")
    for flag, value in (("--batch", args.batch), ("--max-iter", args.max_iter)):
        if value is not None and value < 1:
            p.error(f"{flag} must be positive")
    if args.epochs is not None and args.epochs <= 0:
        p.error("--epochs must be positive")
    try:
        args.train_pair = parse_pair(args.train, "--train") if args.train else None
        args.test_pair = parse_pair(args.test, "--test") if args.test else None
    except OwnDataError as e:
        p.error(str(e))
    try:
        args.class_list = [clean_name(c, "class name") for c in args.classes.split(",") if c.strip()] \
            if args.classes else None
    except ValueError as e:
        p.exit(2, f"{PROG}: error: --classes: {e}\n")
    twice = sorted({c for c in args.class_list or [] if args.class_list.count(c) > 1})
    if twice:
        p.exit(2, f"{PROG}: error: --classes names {', '.join(twice)} more than once; list each class once, in the "
                  "order you want\n")
    args.dataset_name = slug(args.name) if args.name else default_name(args.voc or args.train_pair[0])
    return args


class CustomSweep:
    """The custom runner's hooks: check the data (and keep what was read), generate tiny pretraining data
    only when a tiny row pretrains, and derive the sweep's datasets and schedule from the data."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data: OwnData | None = None

    def check(self, root: Path, notes: list[str]) -> list[str]:
        a = self.args
        if a.voc:
            problems, self.data = check_voc_dir(a.voc, a.class_list, a.dataset_name, notes)
        else:
            problems, self.data = check_coco_pair(a.train_pair, a.test_pair, a.masks, a.dataset_name, notes)
        return problems

    def tiny_data(self, out: Path, tag: str) -> Path:
        data = out / "datasets"
        names = requested_rows(self.args, PROG)
        pretrains = "supervised" in names or ("pretrained" in names and not self.args.backbones)
        if pretrains and not self.args.dry_run and not (data / ".complete").exists():
            from benchmarks.tiny_data import generate

            print(f"[{tag}] the tiny supervised/MoCo rows pretrain on generated data:")
            generate(data, log=lambda line: print(f"[{tag}] {line}"))
        return data

    def prepare(self, ctx: SweepContext) -> SweepSetup:
        from transfer import schedule as sched

        a, data = self.args, self.data
        assert data is not None  # check() ran and found no problem
        entries, train, images = list(data.entries), [data.train_name], len(data.train.with_objects)
        values: dict = {"data": data.name, "data_sha256": data.sha256[:16], "classes": len(data.classes)}
        if a.train_fraction:
            subset = draw_subset([(data.train_name, i) for i in data.train.ids], a.train_fraction,
                                 a.train_fraction_seed)
            sub_entries, train, sub_values = subset_spec(subset, a.train_fraction, a.train_fraction_seed,
                                                         data.train.images)
            entries += sub_entries
            values.update(sub_values)
            images = sum(1 for _, i in subset if i in data.train.with_objects)
            if not images:
                raise SweepDataError(f"--train-fraction {a.train_fraction:g} draws {len(subset)} image(s), none with "
                                     "an object; use a larger fraction or another --train-fraction-seed")
        ref, ref_images = self.reference(ctx)
        try:
            schedule = sched.rescale(ref, ref_images, images, batch=a.batch, epochs=a.epochs, max_iter=a.max_iter)
        except ValueError as e:
            raise SweepDataError(str(e)) from None
        epochs = schedule.epochs(images)
        values.update(train_images=images, epoch_rule_epochs=round(epochs, 3))
        run_dir = f"{ctx.run_dir}-{schedule.max_iter}it-b{schedule.batch}"
        label = f"{sched.iterations_label(schedule.max_iter)} ({epochs:.1f} ep) on {data.name}"
        if a.train_fraction:
            run_dir += f"-{fraction_dir(a.train_fraction, a.train_fraction_seed)}"
            label += f", {fraction_label(a.train_fraction, a.train_fraction_seed)}"
        record = {"source": data.source, "layout": data.kind, "classes": data.classes, "train_images": images,
                  "test_images": data.test.images, "test_instances": data.test.instances}
        if a.train_fraction:
            record["train_subset"] = {k: v for k, v in values.items() if k.startswith("train_")}
        path = write_spec(ctx.out / run_dir, {"version": 1, "datasets": entries, "train": train,
                                              "test": [data.test_name], "fingerprint": values, "record": record},
                          dry_run=a.dry_run)
        opts = [*schedule.opts(), "MODEL.ROI_HEADS.NUM_CLASSES", str(len(data.classes)),
                "MODEL.MASK_ON", str(data.masks)]
        if data.masks and data.mask_format != "polygon":  # bitmask reads RLE and polygons alike; polygon (the
            opts += ["INPUT.MASK_FORMAT", data.mask_format]  # configs') stops training at the first RLE
        return SweepSetup(run_dir, opts, ["--datasets-spec", str(path.resolve()), "--schedule", label],
                          self.describe(data, images, schedule, ref_images, path))

    @staticmethod
    def reference(ctx: SweepContext) -> tuple:
        """(reference schedule, its training images): the paper's VOC recipe, or with ``--tiny`` the tiny VOC
        demo's (the tiny config's schedule over the generated trainval07+12: 5 epochs)."""
        from transfer import schedule as sched

        if not ctx.tiny:
            return sched.reference()
        from benchmarks.tiny_data import default_sizes
        from transfer.config import load_cfg

        return (sched.from_values(load_cfg(str(ctx.config), [])),
                default_sizes()["voc2007_trainval"] + default_sizes()["voc2012_trainval"])

    def describe(self, data: OwnData, images: int, schedule, ref_images: int, path: Path) -> list[str]:
        test = data.test
        what = "boxes and masks (Mask R-CNN)" if data.masks else "boxes"
        lines = [f"data: {data.kind} '{data.name}', {len(data.classes)} class(es) ({', '.join(data.classes[:8])}"
                 f"{', ...' if len(data.classes) > 8 else ''}); {what}",
                 f"train: {data.train.images} images ({len(data.train.with_objects)} with objects, "
                 f"{data.train.instances} instances)" + (f"; this sweep trains on {images}" if self.args.train_fraction
                                                         else ""),
                 f"test: {test.images} images, {test.instances} instances",
                 f"schedule (epoch rule): {schedule.describe(images)}",
                 f"dataset spec -> {path}" + (" (not written: dry run)" if self.args.dry_run else "")]
        if images < FEW_TRAIN_IMAGES or test.instances < FEW_TEST_INSTANCES:
            per = 100.0 / max(test.instances, 1)
            lines.append(f"WARNING: tiny dataset ({images} training images, {test.instances} test instances): results "
                         f"are noise-dominated (one detection more or less moves AP by up to ~{per:.1f} points); run "
                         "several trials (--trials 5) and compare means ± std, not single numbers")
        return lines


def spec(args: argparse.Namespace) -> RunSpec:
    """What a ``run_custom.sh`` invocation runs (``python -m benchmarks.run custom``)."""
    sweep = CustomSweep(args)
    layout = "VOC" if args.voc else "COCO json"
    where = str(args.voc.resolve()) if args.voc else f"{args.train_pair[0]} and {args.test_pair[0]}"
    return RunSpec(
        name=f"custom-{args.dataset_name}", prog=PROG, table="a paper table", dataset=layout,
        has_data=lambda root: True, check=sweep.check,
        config=CONFIGS / "custom" / f"custom_R_50_{args.arch}.yaml", run_dir=f"R50-{args.arch}",
        tiny_config=CONFIGS / "tiny" / f"custom_R_18_{args.arch}_tiny.yaml", tiny_run_dir=f"R18-{args.arch}",
        prepare=sweep.prepare, tiny_data=sweep.tiny_data, location=where, train_fraction=True,
        banner="SMALL-SCALE MODEL on your data (ResNet-18, ~160 px images, batch 4; the tiny supervised and MoCo rows "
               "pretrain on generated data): for trying the pipeline on a CPU, NOT the paper's protocol; its numbers "
               "are not comparable to a full run.",
    )
