"""What the benchmark runners (``run_voc.py``, ``run_coco.py``, ``run_cityscapes.py``) share.

The command line (rows, trials, seeds, GPUs, output, dataset root, ``--tiny``, Detectron2 overrides after
``--``), the choice of config flavour per row (supervised MSRA weights: the BGR base config; MoCo /
torchvision weights: ``*_moco.yaml``; random init: ``*_random.yaml``), the tiny MoCo v2 and supervised
ResNet-18 checkpoints of the embedded small-scale default (made once under the output dir and reused),
and the run itself: layout check or tiny data, trials through ``benchmarks/runner.py``, table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from benchmarks.runner import REPO, Row, child_env, plan_trials, print_table, run_all

CONFIGS = REPO / "transfer" / "configs"
MSRA_R50 = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
ROWS = ("supervised", "moco", "random")
# Tiny pretraining of the embedded default: ResNet-18 on the 64 px tiny ImageFolder.
TINY_SUPERVISED_EPOCHS = 8
TINY_MOCO_EPOCHS = 20
# K well below the 300 tiny images (a longer queue holds each image as its own negative) and a momentum
# suited to 180 steps (0.999 would leave the key encoder ~84% random); the MoCo paper's K and m ablations.
TINY_MOCO_DICT = ("--moco-k", "64", "--moco-m", "0.99")


def tiny_banner(table: str) -> str:
    return ("SMALL-SCALE DEMONSTRATION on generated tiny data (ResNet-18, ~64-256 px images, short schedules): "
            "it exercises the paper's pipeline end to end, it is NOT the paper's protocol and its numbers are "
            f"not comparable to {table}.")


# ----------------------------------------------------------------------------- command line

def base_parser(prog: str, description: str, default_output: str) -> argparse.ArgumentParser:
    """Flags every runner has; runners add their own (``--arch``, ``--schedule``, ``--task``)."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                epilog="Arguments after '--' are passed to Detectron2 as config overrides.")
    p.add_argument("--weights", help="pretrained backbone for the MoCo row: .pth/.pth.tar checkpoint or converted .pkl")
    p.add_argument("--label", help="row label for --weights (default: 'MoCo <file stem>')")
    p.add_argument("--supervised-weights", default=MSRA_R50, help=f"supervised row weights (default {MSRA_R50})")
    p.add_argument("--rows", default=",".join(ROWS),
                   help="rows to run, comma-separated from supervised,moco,random (moco needs --weights)")
    p.add_argument("--trials", type=int, default=None, help="trials per row (default 5; 1 with --tiny)")
    p.add_argument("--seed", type=int, default=0, help="seed of trial 0 (trial i uses seed+i)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per trial (Detectron2 launch)")
    p.add_argument("--output", type=Path, default=None,
                   help=f"output root (default output/{default_output}, output/{default_output}-tiny)")
    p.add_argument("--datasets", type=Path, default=None, help="dataset root (default $DETECTRON2_DATASETS or ./datasets)")
    p.add_argument("--tiny", action="store_true", help="run the embedded small-scale default")
    p.add_argument("--with-paper", action="store_true", help="show the paper's rows beside the measured ones")
    return p


def parse_with_opts(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; what follows ``--`` becomes ``args.opts`` (Detectron2 config overrides)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    opts: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, opts = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)
    args.opts = opts
    return args


def dataset_root(args: argparse.Namespace) -> Path:
    return (args.datasets or Path(os.environ.get("DETECTRON2_DATASETS", "datasets"))).expanduser()


# ----------------------------------------------------------------------------- rows

def config_for(base: Path, weights: str) -> Path:
    """Supervised MSRA (BGR, caffe-style) weights use ``base``; torchvision-style ones its ``_moco`` flavour."""
    from transfer.train_net import weights_provenance

    if not weights:
        return base.with_name(base.stem + "_random.yaml")
    if weights.endswith(".pkl") and (weights_provenance(weights) or {}).get("input_format") != "RGB":
        return base
    if "://" in weights:
        return base
    return base.with_name(base.stem + "_moco.yaml")


def full_rows(args: argparse.Namespace, base: Path, prog: str) -> list[Row]:
    """Rows of the full protocol for the supervised-flavour config ``base``."""
    rows = []
    for name in (r.strip() for r in args.rows.split(",") if r.strip()):
        if name == "supervised":
            rows.append(Row("supervised IN-1M", "supervised", config_for(base, args.supervised_weights),
                            args.supervised_weights))
        elif name == "moco":
            if args.weights:
                rows.append(Row(args.label or f"MoCo {Path(args.weights).name.split('.')[0]}", "moco",
                                config_for(base, args.weights), str(Path(args.weights).resolve())))
        elif name == "random":
            rows.append(Row("random init", "random", config_for(base, ""), ""))
        else:
            raise SystemExit(f"{prog}: error: unknown row {name!r} (choose from {','.join(ROWS)})")
    return rows


def _pretrain(fn: Callable[[list[str]], Path], argv: list[str], what: str, tag: str, prog: str) -> Path:
    """Run a pretraining entry point in-process; its one-line errors end the run."""
    t0 = time.perf_counter()
    try:
        ckpt = fn(argv)
    except SystemExit as e:
        raise SystemExit(f"{prog}: error: {what} failed (exit {e.code})") from None
    print(f"[{tag}] {what}: {ckpt} ({time.perf_counter() - t0:.0f}s)")
    return Path(ckpt)


def _finished(folder: Path, epochs: int, what: str, tag: str) -> Path | None:
    from pretrain.checkpoint import checkpoint_name

    ckpt = folder / checkpoint_name(epochs - 1)
    if ckpt.is_file():
        print(f"[{tag}] {what}: reusing {ckpt}")
        return ckpt
    return None


def tiny_rows(args: argparse.Namespace, data: Path, out: Path, config: Path, tag: str, prog: str) -> list[Row]:
    """Random init, the tiny supervised counterpart and tiny MoCo v2 (or ``--weights``) rows for ``config``.

    The checkpoints live in ``out/pretrain/{supervised,moco}`` and are made only when missing.
    """
    from pretrain import main_moco, supervised

    train, val = data / "pretrain" / "train", data / "pretrain" / "val"
    rows = [Row("random init", "random", config, "")]
    sup_dir, what = out / "pretrain" / "supervised", "supervised counterpart (ImageFolder labels)"
    sup = _finished(sup_dir, TINY_SUPERVISED_EPOCHS, what, tag) or _pretrain(
        supervised.main, [str(train), "-a", "resnet18", "--epochs", str(TINY_SUPERVISED_EPOCHS), "-b", "32",
                          "--lr", "0.03", "--cos", "--crop-size", "64", "--seed", str(args.seed), "-j", "0",
                          "--output-dir", str(sup_dir)], what, tag, prog)
    rows.append(Row("supervised (tiny labels)", "supervised", config, str(sup)))
    if args.weights:
        rows.append(Row(args.label or f"MoCo {Path(args.weights).name.split('.')[0]}", "moco", config,
                        str(Path(args.weights).resolve())))
        return rows
    moco_dir, what = out / "pretrain" / "moco", "MoCo v2 pretraining"
    moco = _finished(moco_dir, TINY_MOCO_EPOCHS, what, tag) or _pretrain(
        main_moco.main, [str(train), "-a", "resnet18", "--preset", "v2", "--epochs", str(TINY_MOCO_EPOCHS), "-b",
                         "32", "--lr", "0.03", *TINY_MOCO_DICT, "--crop-size", "64", "--seed", str(args.seed),
                         "-j", "0", "--output-dir", str(moco_dir), "--resume", "auto", "--keep-checkpoints", "1",
                         "--knn-val", str(val), "--knn-every", "10", "--no-tensorboard"], what, tag, prog)
    rows.append(Row("MoCo v2 (tiny pretraining)", "moco", config, str(moco)))
    return rows


# ----------------------------------------------------------------------------- the run

@dataclass
class Benchmark:
    """One runner's specifics; :func:`run_benchmark` does the rest."""

    name: str                          # console tag and default output dir, e.g. "coco"
    prog: str                          # e.g. "run_coco.sh"
    table: str                         # paper table the full protocol reproduces, e.g. "Table 5"
    dataset: str                       # what is missing when the real data is absent, e.g. "COCO 2017"
    has_data: Callable[[Path], bool]
    check: Callable[[Path, list[str]], list[str]]  # (root, notes out) -> problem lines of the layout (empty: OK)
    config: Path                       # supervised-flavour config of the full protocol
    run_dir: str                       # output sub-directory of the full protocol, e.g. "R50-FPN-1x"
    tiny_config: Path | None           # None: no embedded default for this variant
    tiny_run_dir: str = ""
    tiny_unavailable: str = ""         # the error when tiny_config is None


def run_benchmark(bench: Benchmark, args: argparse.Namespace) -> int:
    """Full protocol on the real data, or the embedded tiny default (``--tiny`` or no data found)."""
    root = dataset_root(args)
    tiny = args.tiny or not bench.has_data(root)
    tag = f"{bench.name}-tiny" if tiny else bench.name
    t0 = time.perf_counter()
    if tiny:
        if bench.tiny_config is None:
            print(f"{bench.prog}: error: {bench.tiny_unavailable}", file=sys.stderr)
            return 2
        out = args.output or Path(f"output/{bench.name}-tiny")
        if not args.tiny:
            print(f"[{bench.name}] no {bench.dataset} under {root}: running the embedded small-scale default")
        print(f"[{tag}] {tiny_banner(bench.table)}")
        from benchmarks.tiny_data import generate

        data = out / "datasets"
        if not (data / ".complete").exists():
            generate(data, log=lambda line: print(f"[{tag}] {line}"))
        rows = tiny_rows(args, data, out, bench.tiny_config, tag, bench.prog)
        trials, run_dir, extra, env = args.trials or 1, bench.tiny_run_dir, ["--tiny", "--schedule", "tiny"], child_env(data)
    else:
        print(f"[{bench.name}] checking the {bench.dataset} layout under {root} ...")
        notes: list[str] = []
        problems = bench.check(root, notes)
        for line in notes:
            print(f"[{bench.name}] note: {line}")
        if problems:
            print(f"{bench.prog}: error: {bench.dataset} layout under {root} is not usable:", file=sys.stderr)
            for line in problems:
                print(f"  {line}", file=sys.stderr)
            return 2
        out = args.output or Path(f"output/{bench.name}")
        rows = full_rows(args, bench.config, bench.prog)
        if not rows:
            print(f"{bench.prog}: error: no rows to run (pass --weights for the MoCo row)", file=sys.stderr)
            return 2
        trials, run_dir, extra, env = args.trials or 5, bench.run_dir, [], child_env(root)
    plan = plan_trials(rows, trials, out.resolve(), run_dir, args.seed, args.opts)
    print(f"[{bench.name}] {len(rows)} row(s) x {trials} trial(s) -> {out}")
    counts = run_all(plan, trials_requested=trials, env=env, gpus=args.gpus, extra=extra)
    print(f"[{bench.name}] trials: {counts['finished']} finished, {counts['skipped']} skipped (done before), "
          f"{counts['failed']} failed; {time.perf_counter() - t0:.0f}s")
    if tiny:
        print(f"[{tag}] {tiny_banner(bench.table)}")
    rc = print_table(out, with_paper=args.with_paper and not tiny)
    return 1 if counts["failed"] else rc
