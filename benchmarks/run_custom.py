"""Detection transfer on your own data: ``bash benchmarks/run_custom.sh --train JSON:IMAGES --test JSON:IMAGES``
or ``--voc DIR`` ``[flags] [-- D2 opts]``.

The question of the paper's Table 2 on any labelled detection data: does a backbone transfer better than
supervised ImageNet pretraining, and than random init? Data: a COCO-json pair (boxes, and masks when every
annotation has one) or a VOC-layout folder with any class names. Model: Faster (or Mask) R-CNN R50-C4 or
R50-FPN with normalized fine-tuning (``transfer/configs/custom/``). Schedule: the paper's VOC recipe sized by
the epoch rule (``transfer/schedule.py``: ~23.2 epochs of the training images at batch 16, lr x0.1 at 75% and
~91.7%, lr scaled with ``--batch``; ``--epochs`` or ``--max-iter`` override). Evaluation: pycocotools AP (and
the VOC07 metric for the VOC layout). Rows, trials, seeds, skip/resume, ``--dry-run``, the dataset check and
the table are those of the other runners (``benchmarks/common.py``); ``--train-fraction`` trains on a recorded
subset (``benchmarks/sweep_data.py``).

``--tiny``: a ResNet-18 model on small images for a look on a CPU (its supervised and MoCo rows pretrain on
the generated tiny data, as the other runners' embedded default); not the paper's protocol.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.common import CONFIGS, Benchmark, base_parser, parse_with_opts, requested_rows, run_benchmark
from benchmarks.own_data import OwnData, OwnDataError, check_coco_pair, check_voc_dir, default_name, parse_pair, slug
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

PROG = "run_custom.sh"
# Below these, one detection moves AP by a point or more: say so (tests/README: "noise-dominated").
FEW_TRAIN_IMAGES = 100
FEW_TEST_INSTANCES = 100


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = base_parser(PROG, __doc__.split("\n\n")[0].replace("\n", " "), "custom-<name>")
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
    args.class_list = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
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
        return SweepSetup(run_dir, opts, ["--datasets-spec", str(path.resolve()), "--schedule", label],
                          self.describe(data, images, schedule, ref_images, path))

    @staticmethod
    def reference(ctx: SweepContext) -> tuple:
        """(reference schedule, its training images): the paper's VOC recipe, or with ``--tiny`` the tiny VOC
        demo's (the tiny config's schedule over the generated trainval07+12: 5 epochs)."""
        from transfer import schedule as sched

        if not ctx.tiny:
            return sched.reference()
        from benchmarks.tiny_data import DEFAULT_SIZES
        from transfer.config import load_cfg

        return (sched.from_values(load_cfg(str(ctx.config), [])),
                DEFAULT_SIZES["voc2007_trainval"] + DEFAULT_SIZES["voc2012_trainval"])

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


def benchmark(args: argparse.Namespace) -> Benchmark:
    sweep = CustomSweep(args)
    layout = "VOC" if args.voc else "COCO json"
    where = str(args.voc.resolve()) if args.voc else f"{args.train_pair[0]} and {args.test_pair[0]}"
    return Benchmark(
        name=f"custom-{args.dataset_name}", prog=PROG, table="a paper table", dataset=layout,
        has_data=lambda root: True, check=sweep.check,
        config=CONFIGS / "custom" / f"custom_R_50_{args.arch}.yaml", run_dir=f"R50-{args.arch}",
        tiny_config=CONFIGS / "tiny" / f"custom_R_18_{args.arch}_tiny.yaml", tiny_run_dir=f"R18-{args.arch}",
        prepare=sweep.prepare, tiny_data=sweep.tiny_data, location=where,
        banner="SMALL-SCALE MODEL on your data (ResNet-18, ~160 px images, batch 4; the tiny supervised and MoCo rows "
               "pretrain on generated data): for trying the pipeline on a CPU, NOT the paper's protocol; its numbers "
               "are not comparable to a full run.",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_benchmark(benchmark(args), args)


if __name__ == "__main__":
    sys.exit(main())
