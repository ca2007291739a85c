"""PASCAL VOC detection transfer (MoCo paper Table 2): ``bash benchmarks/run_voc.sh [flags] [-- D2 opts]``.

Full protocol (VOC2007 + VOC2012 under ``$DETECTRON2_DATASETS``): Faster R-CNN R50-C4 or
R50-dilated-C5, trainval07+12 -> test2007, 24k iterations, N trials per row with seeds
``seed .. seed+N-1``, rows: supervised ImageNet (MSRA R-50.pkl), your ``--weights``, random init.

Embedded default (``--tiny``, or when no VOC is found): the same pipeline at small scale on the
generated tiny VOC-layout data: short MoCo v2 pretraining and a supervised counterpart (ResNet-18 on
the tiny ImageFolder), each converted and fine-tuned next to random init with a small C4 detector.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks.runner import REPO, Row, child_env, plan_trials, print_table, run_all

CONFIGS = REPO / "transfer" / "configs"
MSRA_R50 = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
TINY_BANNER = ("SMALL-SCALE DEMONSTRATION on generated tiny data (ResNet-18, ~64-192 px images, short schedules): "
               "it exercises the paper's pipeline end to end, it is NOT the paper's protocol and its numbers are "
               "not comparable to Table 2.")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="run_voc.sh", description=__doc__.split("\n\n")[0],
                                epilog="Arguments after '--' are passed to Detectron2 as config overrides.")
    p.add_argument("--weights", help="pretrained backbone for the MoCo row: .pth/.pth.tar checkpoint or converted .pkl")
    p.add_argument("--label", help="row label for --weights (default: 'MoCo <file stem>')")
    p.add_argument("--supervised-weights", default=MSRA_R50, help=f"supervised row weights (default {MSRA_R50})")
    p.add_argument("--rows", default="supervised,moco,random",
                   help="rows to run, comma-separated from supervised,moco,random (moco needs --weights)")
    p.add_argument("--arch", choices=["C4", "DC5"], default="C4", help="R50-C4 or R50-dilated-C5")
    p.add_argument("--trials", type=int, default=None, help="trials per row (default 5; 1 with --tiny)")
    p.add_argument("--seed", type=int, default=0, help="seed of trial 0 (trial i uses seed+i)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per trial (Detectron2 launch)")
    p.add_argument("--output", type=Path, default=None, help="output root (default output/voc, output/voc-tiny)")
    p.add_argument("--datasets", type=Path, default=None, help="dataset root (default $DETECTRON2_DATASETS or ./datasets)")
    p.add_argument("--tiny", action="store_true", help="run the embedded small-scale default")
    p.add_argument("--with-paper", action="store_true", help="show the paper's rows beside the measured ones")
    argv = list(sys.argv[1:] if argv is None else argv)
    opts: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, opts = argv[:cut], argv[cut + 1:]
    args = p.parse_args(argv)
    args.opts = opts
    return args


def dataset_root(args: argparse.Namespace) -> Path:
    import os

    return (args.datasets or Path(os.environ.get("DETECTRON2_DATASETS", "datasets"))).expanduser()


def has_voc(root: Path) -> bool:
    return (root / "VOC2007").is_dir() or (root / "VOC2012").is_dir()


def config_for(weights: str, arch: str) -> Path:
    """Supervised MSRA (BGR, caffe-style) weights use the base config; torchvision-style ones the RGB one."""
    from transfer.train_net import weights_provenance

    base = CONFIGS / "voc" / f"voc_R_50_{arch}_24k.yaml"
    if not weights:
        return base.with_name(base.stem + "_random.yaml")
    if weights.endswith(".pkl") and (weights_provenance(weights) or {}).get("input_format") != "RGB":
        return base
    if "://" in weights:
        return base
    return base.with_name(base.stem + "_moco.yaml")


def full_rows(args: argparse.Namespace) -> list[Row]:
    wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    rows = []
    for name in wanted:
        if name == "supervised":
            rows.append(Row("supervised IN-1M", "supervised", config_for(args.supervised_weights, args.arch),
                            args.supervised_weights))
        elif name == "moco":
            if args.weights:
                rows.append(Row(args.label or f"MoCo {Path(args.weights).name.split('.')[0]}", "moco",
                                config_for(args.weights, args.arch), str(Path(args.weights).resolve())))
        elif name == "random":
            rows.append(Row("random init", "random", config_for("", args.arch), ""))
        else:
            raise SystemExit(f"run_voc.sh: error: unknown row {name!r} (choose from supervised,moco,random)")
    return rows


def _pretrain(fn, argv: list[str], what: str) -> Path:
    """Run a pretraining entry point in-process; its one-line errors end the run."""
    t0 = time.perf_counter()
    try:
        ckpt = fn(argv)
    except SystemExit as e:
        raise SystemExit(f"run_voc.sh: error: {what} failed (exit {e.code})") from None
    print(f"[voc-tiny] {what}: {ckpt} ({time.perf_counter() - t0:.0f}s)")
    return Path(ckpt)


def tiny_rows(args: argparse.Namespace, data: Path, out: Path) -> list[Row]:
    """Make (or reuse) the tiny MoCo and supervised checkpoints; return the three rows."""
    from pretrain import main_moco, supervised

    train, val = data / "pretrain" / "train", data / "pretrain" / "val"
    config = CONFIGS / "tiny" / "voc_R_18_C4_tiny.yaml"
    rows = [Row("random init", "random", config, "")]
    sup_dir = out / "pretrain" / "supervised"
    sup = _pretrain(supervised.main, [str(train), "-a", "resnet18", "--epochs", "12", "-b", "32", "--lr", "0.1",
                                      "--cos", "--crop-size", "64", "--seed", str(args.seed), "-j", "0",
                                      "--output-dir", str(sup_dir)], "supervised counterpart (ImageFolder labels)")
    rows.append(Row("supervised (tiny labels)", "supervised", config, str(sup)))
    if args.weights:
        rows.append(Row(args.label or f"MoCo {Path(args.weights).name.split('.')[0]}", "moco", config,
                        str(Path(args.weights).resolve())))
        return rows
    moco_dir = out / "pretrain" / "moco"
    moco = _pretrain(main_moco.main, [str(train), "-a", "resnet18", "--preset", "v2", "--epochs", "30", "-b", "32",
                                      "--lr", "0.06", "--moco-k", "1024", "--crop-size", "64", "--seed",
                                      str(args.seed), "-j", "0", "--output-dir", str(moco_dir), "--resume", "auto",
                                      "--knn-val", str(val), "--knn-every", "10", "--no-tensorboard"],
                     "MoCo v2 pretraining")
    rows.append(Row("MoCo v2 (tiny pretraining)", "moco", config, str(moco)))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = dataset_root(args)
    tiny = args.tiny or not has_voc(root)
    t0 = time.perf_counter()
    if tiny:
        if args.arch != "C4":
            print("run_voc.sh: error: the embedded small-scale default runs the C4 detector only (drop --arch DC5 "
                  "or provide VOC under $DETECTRON2_DATASETS)", file=sys.stderr)
            return 2
        out = args.output or Path("output/voc-tiny")
        if not args.tiny:
            print(f"[voc] no VOC2007/VOC2012 under {root}: running the embedded small-scale default")
        print(f"[voc-tiny] {TINY_BANNER}")
        from benchmarks.tiny_data import generate

        data = out / "datasets"
        if not (data / ".complete").exists():
            generate(data, log=lambda line: print(f"[voc-tiny] {line}"))
        rows = tiny_rows(args, data, out)
        trials, arch, extra, env = args.trials or 1, "R18-C4", ["--tiny", "--schedule", "tiny"], child_env(data)
    else:
        from benchmarks.dataset_check import check_voc

        problems = check_voc(root)
        if problems:
            print(f"run_voc.sh: error: VOC layout under {root} is not usable:", file=sys.stderr)
            for line in problems:
                print(f"  {line}", file=sys.stderr)
            return 2
        out = args.output or Path("output/voc")
        rows = full_rows(args)
        if not rows:
            print("run_voc.sh: error: no rows to run (pass --weights for the MoCo row)", file=sys.stderr)
            return 2
        trials, arch, extra, env = args.trials or 5, f"R50-{args.arch}", [], child_env(root)
    plan = plan_trials(rows, trials, out.resolve(), arch, args.seed, args.opts)
    print(f"[voc] {len(rows)} row(s) x {trials} trial(s) -> {out}")
    counts = run_all(plan, trials_requested=trials, env=env, gpus=args.gpus, extra=extra)
    print(f"[voc] trials: {counts['finished']} finished, {counts['skipped']} skipped (done before), "
          f"{counts['failed']} failed; {time.perf_counter() - t0:.0f}s")
    if tiny:
        print(f"[voc-tiny] {TINY_BANNER}")
    rc = print_table(out, with_paper=args.with_paper and not tiny)
    return 1 if counts["failed"] else rc


if __name__ == "__main__":
    sys.exit(main())
