"""What every benchmark run shares (``python -m benchmarks.run TASK``; the task's own part is its module in
``transfer/tasks/``).

The command line (rows, trials, seeds, GPUs, output, dataset root, ``--tiny``, ``--dry-run``, input
formats, Detectron2 overrides after ``--``), the rows (supervised, random init, and one pretrained row per
``--weights`` / ``--weights-list`` entry: ``benchmarks/backbones.py``), the choice of config flavour per row from the input format
its weights need (``transfer/weights.py``: Caffe2/MSRA weights -> the BGR base config; every
torchvision-style file -> ``*_rgb.yaml``; random init -> ``*_random.yaml``), the tiny MoCo v2 and supervised
ResNet-18 checkpoints of the embedded small-scale default (made once under the output dir and reused),
and the run itself: dataset check or tiny data, preflight (``benchmarks/preflight.py``), plan, trials
through ``benchmarks/runner.py``, table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from benchmarks import backbones
from benchmarks.backbones import add_weights_args
from benchmarks.runner import REPO, Row, SweepStop, child_env, plan_trials, print_table, run_all
from benchmarks.scaleout import batch_overrides, submit, write_sweep
from cluster.slurm import add_slurm_args
from transfer.tasks.base import RGB_FLAVOUR, RunSpec
from transfer.weights import CONVERTIBLE, MSRA_R50
from core.cli import ArgumentParser

if TYPE_CHECKING:
    from transfer.methods import Method

CONFIGS = REPO / "transfer" / "configs"
ROWS = ("supervised", "pretrained", "random")
ROW_ALIASES = {"moco": "pretrained"}  # the pretrained rows' name before rows had a method (--rows moco still works)
# Tiny pretraining of the embedded default: ResNet-18 on the 64 px tiny ImageFolder.
TINY_SUPERVISED_EPOCHS = 8
TINY_MOCO_EPOCHS = 20
# K well below the 300 tiny images (a longer queue holds each image as its own negative) and a momentum
# suited to 180 steps (0.999 would leave the key encoder ~84% random); the MoCo paper's K and m ablations.
TINY_MOCO_DICT = ("--moco-k", "64", "--moco-m", "0.99")
# Tiny pretraining of `--arch ViTDet --tiny`: MoCo v3 on a tiny ViT (pretrain/main_moco.py --preset v3-vit).
TINY_MOCO_V3_EPOCHS = 10


def tiny_banner(table: str) -> str:
    return ("SMALL-SCALE DEMONSTRATION on generated tiny data (ResNet-18, ~64-256 px images, short schedules): "
            "it exercises the paper's pipeline end to end, it is NOT the paper's protocol and its numbers are "
            f"not comparable to {table}.")


# ----------------------------------------------------------------------------- command line

def base_parser(prog: str, description: str, default_output: str) -> argparse.ArgumentParser:
    """Flags every runner has; runners add their own (``--arch``, ``--schedule``, ``--task``)."""
    p = ArgumentParser(prog=prog, description=description,
                       epilog="Arguments after '--' are passed to Detectron2 as config overrides.")
    add_weights_args(p)  # --weights [LABEL=]PATH (repeatable), --weights-list, --label, --weights-format
    p.add_argument("--supervised-weights", default=MSRA_R50, help=f"supervised row weights (default {MSRA_R50})")
    p.add_argument("--supervised-format", choices=("RGB", "BGR"),
                   help="input format --supervised-weights needs (default: decided from the file)")
    p.add_argument("--rows", default=",".join(ROWS),
                   help="rows to run, comma-separated from supervised,pretrained,random (pretrained: every --weights; "
                        "with --tiny and no --weights, the tiny MoCo v2 pretraining; 'moco' means pretrained)")
    p.add_argument("--trials", type=int, default=None, help="trials per row (default 5; 1 with --tiny)")
    p.add_argument("--seed", type=int, default=0, help="seed of trial 0 (trial i uses seed+i)")
    p.add_argument("--gpus", "--gpus-per-node", dest="gpus", type=int, default=1,
                   help="GPUs per trial (per node with --nodes > 1)")
    p.add_argument("--output", type=Path, default=None,
                   help=f"output root (default output/{default_output}, output/{default_output}-tiny)")
    p.add_argument("--datasets", "--root", dest="datasets", type=Path, default=None,
                   help="dataset root (default $DETECTRON2_DATASETS or ./datasets)")
    p.add_argument("--tiny", action="store_true", help="run the embedded small-scale default")
    p.add_argument("--dry-run", action="store_true",
                   help="check rows, weights, datasets, output folder and disk, print the plan, train nothing")
    p.add_argument("--allow-partial-weights", action="store_true",
                   help="train even when backbone tensors of the weights are not loaded (experts)")
    p.add_argument("--no-wait", action="store_true",
                   help="do not wait for trials another runner is training; print the table of what finished")
    p.add_argument("--with-paper", action=argparse.BooleanOptionalAction, default=True,
                   help="the final table shows the published rows beside the measured ones (a --tiny run: those of "
                        "the full-scale benchmark it stands in for, apart); --no-with-paper leaves them out")
    p.add_argument("--reference", metavar="LABEL",
                   help="the row the table's gaps and paired differences are to (default: supervised)")
    p.add_argument("--cost", action="store_true", help="show the GPU-hours each row's trials spent in the table")
    p.add_argument("--amp", action="store_true",
                   help="mixed-precision fine-tuning (Detectron2 SOLVER.AMP.ENABLED; GPUs only). Off by default: the "
                        "paper's protocol is fp32. AMP trials go to their own <run dir>-amp folder")
    p.add_argument("--tf32", action="store_true",
                   help="TF32 convolutions and matmuls (SOLVER.TF32; Ampere or later GPUs, about 2.9x faster on an "
                        "H200). Off by default: the paper fine-tuned in fp32; footnoted in the tables. TF32 trials go "
                        "to their own <run dir>-tf32 folder")
    g = p.add_argument_group("scale-out (docs/cluster.md)")
    g.add_argument("--launcher", choices=("local", "slurm"), default="local",
                   help="run trials here, or submit each as a SLURM job (submitit)")
    g.add_argument("--parallel-trials", type=int, default=1,
                   help="trials at once on this machine, each on its own --gpus GPUs (CPU: its share of the cores)")
    g.add_argument("--ims-per-gpu", type=int, default=None,
                   help="images per GPU per forward pass; fewer than the paper's batch allows -> gradient accumulation")
    g.add_argument("--scale-schedule", action="store_true",
                   help="with --ims-per-gpu: a smaller total batch with the linear rule (lr x b/16, iterations and "
                        "steps x 16/b) instead of accumulation; recorded and footnoted")
    g.add_argument("--wait", action="store_true", help="--launcher slurm: wait for the jobs and print the table")
    g.add_argument("--stall-limit-min", type=float, default=30.0,
                   help="stop a trial that prints nothing for this long as hung (0: never; Detectron2 prints every "
                        "20 iterations and every few seconds while evaluating)")
    add_slurm_args(p, gpus_flag=False)
    return p


def split_at_dashes(argv: list[str] | None) -> tuple[list[str], list[str]]:
    """``argv`` (default: the command line) before and after its first ``--``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


_INPUT = "the row's input format: --weights-format, --supervised-format or input_format in --weights-list"
RESERVED_OPTS = {  # config keys the runner sets per row or that decide where a trial writes: the flag to use
    "MODEL.WEIGHTS": "each row's weights come from --weights (or --supervised-weights); random init has none",
    "OUTPUT_DIR": "trials write under --output",
    "_BASE_": "the runner picks the config (--arch and the runner itself); it cannot be overridden",
    "SEED": "trial i uses --seed + i (--trials sets how many)",
    "DATASETS.TRAIN": "the benchmark trains on its own datasets (your own data: run_custom.sh)",
    "DATASETS.TEST": "the benchmark tests on its own datasets (your own data: run_custom.sh)",
    "INPUT.FORMAT": _INPUT, "MODEL.PIXEL_MEAN": _INPUT, "MODEL.PIXEL_STD": _INPUT,
    "MODEL.RESNETS.STRIDE_IN_1X1": _INPUT,
    "SOLVER.AMP.ENABLED": "use --amp (AMP trials go to their own folder)",
    "SOLVER.TF32": "use --tf32 (TF32 trials go to their own folder)",
}


def opts_problem(opts: list[str]) -> str | None:
    """One line when the overrides after ``--`` are not KEY VALUE pairs or set a key of :data:`RESERVED_OPTS`."""
    from transfer.config_files import overrides_shape_problem

    for key in opts[::2] if len(opts) % 2 == 0 else []:
        if key in RESERVED_OPTS:
            return f"{key} cannot be set after '--': {RESERVED_OPTS[key]}"
    shape = overrides_shape_problem(opts)
    return f"the Detectron2 overrides after '--': {shape}" if shape else None


def parse_with_opts(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; what follows ``--`` becomes ``args.opts`` (Detectron2 config overrides, none of
    :data:`RESERVED_OPTS`)."""
    argv, opts = split_at_dashes(argv)
    args = parser.parse_args(argv)
    problem = opts_problem(opts)
    if problem:
        parser.exit(2, f"{parser.prog}: error: {problem}\n")
    for flag, what in (("amp", "--amp (Detectron2 AMP)"), ("tf32", "--tf32 (TF32 arithmetic)")):
        if getattr(args, flag, False):
            import torch

            if not torch.cuda.is_available():
                parser.exit(2, f"{parser.prog}: error: {what} needs a CUDA GPU; none is visible\n")
    args.opts = (opts + (["SOLVER.AMP.ENABLED", "True"] if getattr(args, "amp", False) else [])
                 + (["SOLVER.TF32", "True"] if getattr(args, "tf32", False) else []))
    return args


def dataset_root(args: argparse.Namespace) -> Path:
    return (args.datasets or Path(os.environ.get("DETECTRON2_DATASETS", "datasets"))).expanduser()


def requested_rows(args: argparse.Namespace, prog: str) -> list[str]:
    names = [ROW_ALIASES.get(r.strip(), r.strip()) for r in args.rows.split(",") if r.strip()]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise SystemExit(f"{prog}: error: unknown row {unknown[0]!r} (choose from {','.join(ROWS)})")
    return names


# ----------------------------------------------------------------------------- rows

def config_for(base: Path, weights: str, input_format: str | None = None) -> tuple[Path, str, str]:
    """(config, input format, reason): the BGR base config for Caffe2/MSRA weights, its ``_rgb`` flavour for
    torchvision-style ones (RGB, ImageNet mean/std, stride in the 3x3 conv), ``_random`` without weights (rule in
    ``transfer/weights.py``). Flavours are named by what differs, their input format, not by a method."""
    from transfer.weights import decide_input_format

    fmt = decide_input_format(weights, input_format)
    if not weights:
        return base.with_name(base.stem + "_random.yaml"), fmt.format, fmt.reason
    config = base if fmt.format == "BGR" else base.with_name(base.stem + RGB_FLAVOUR + ".yaml")
    return config, fmt.format, fmt.reason


def make_row(label: str, kind: str, base: Path, weights: str, input_format: str | None = None,
             fixed_config: bool = False) -> Row:
    """A row whose config flavour follows its weights (``fixed_config``: ``base`` as it is, format checked by
    the trial)."""
    from transfer.protocol import input_style_values
    from transfer.weights import weights_style

    config, fmt, why = config_for(base, weights, input_format)
    style = input_style_values(fmt, weights_style(weights)) if fmt == "BGR" and weights else {}
    opts = tuple(x for k, v in style.items() for x in (k, str(v).replace(" ", "")))
    return Row(label, kind, base if fixed_config else config, weights, fmt, why, opts=opts)


def _labelled_backbones(args: argparse.Namespace) -> list[tuple[backbones.BackboneSpec, Method, str]]:
    """Each backbone given, in order, with its method (read from the file; cached) and its row label (given, or
    method + file stem, told apart by folder when two files share one)."""
    from transfer.methods import detect_method

    specs = backbones.specs_of(args)
    methods = [detect_method(s.path) for s in specs]
    labels = backbones.distinct_defaults([s.label or backbones.default_label(m.name, s.path)
                                          for s, m in zip(specs, methods)],
                                         [s.label is not None for s in specs], [s.path for s in specs])
    return list(zip(specs, methods, labels))


def check_backbone_labels(args: argparse.Namespace, prog: str) -> None:
    """Refuse clashing backbone labels (:func:`_refuse_clashing_labels`) before any data is written or trained."""
    if "pretrained" in requested_rows(args, prog):
        _refuse_clashing_labels([Row(label, "pretrained", Path(), spec.path, origin=spec.origin)
                                 for spec, _, label in _labelled_backbones(args)])


def pretrained_rows(args: argparse.Namespace, base: Path, fixed_config: bool = False) -> list[Row]:
    """One row per backbone given (``--weights``, ``--weights-list``; ``benchmarks/backbones.py``), in that order: its
    method read from the file, its label (given, or method + file stem), its own input format and config flavour."""
    from transfer.weights import WeightsFormatError

    rows = []
    for spec, method, label in _labelled_backbones(args):
        try:
            row = make_row(label, "pretrained", base, spec.path, spec.input_format or args.weights_format, fixed_config)
        except WeightsFormatError as e:
            raise WeightsFormatError(f"{label} ({spec.origin}): {e}") from None
        row.method, row.method_reason, row.origin, row.prefix = method.name, method.reason, spec.origin, spec.prefix
        rows.append(row)
    _refuse_clashing_labels(rows)
    return rows


def _refuse_clashing_labels(rows: list[Row]) -> None:
    """Raise :class:`~benchmarks.backbones.BackboneError` (one line) when two given rows would share a folder, or one
    would take a baseline row's: checked as soon as the rows are made, before any tiny pretraining or trial."""
    from benchmarks import sweep_checks

    problems = sweep_checks.label_problems(rows)
    if problems:
        more = f" ({len(problems) - 1} more such problem(s))" if len(problems) > 1 else ""
        raise backbones.BackboneError(problems[0] + more)


def _in_order(rows: list[Row]) -> list[Row]:
    """Number the rows in the order they were made (recorded: the tables keep it)."""
    for i, row in enumerate(rows):
        row.order = i
    return rows


def full_rows(args: argparse.Namespace, base: Path, prog: str) -> list[Row]:
    """Rows of the full protocol for the supervised-flavour config ``base``."""
    rows = []
    for name in requested_rows(args, prog):
        if name == "supervised":
            rows.append(make_row("supervised IN-1M", "supervised", base, args.supervised_weights,
                                 args.supervised_format))
        elif name == "pretrained":
            rows += pretrained_rows(args, base)
        elif name == "random":
            rows.append(make_row("random init", "random", base, ""))
    return _in_order(rows)


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


def tiny_pretrain_dir(out: Path, what: str, seed: int) -> Path:
    """Where the tiny default keeps its ``what`` ("moco" / "supervised") pretraining for ``--seed seed``: a rerun
    with another seed pretrains anew instead of reusing another seed's checkpoint."""
    return out / "pretrain" / f"{what}-seed{seed}"


def tiny_rows(args: argparse.Namespace, data: Path, out: Path, config: Path, tag: str, prog: str,
              dry_run: bool = False) -> list[Row]:
    """The requested rows among random init, the tiny supervised counterpart and tiny MoCo v2 (or the ``--weights``
    rows) for ``config``. Their checkpoints live in ``out/pretrain/{supervised,moco}-seed<seed>`` and are made only when
    missing (not with ``dry_run``: the row then names the checkpoint it will make)."""
    from pretrain import main_moco, supervised
    from pretrain.checkpoint import checkpoint_name

    names = requested_rows(args, prog)
    train, val = data / "pretrain" / "train", data / "pretrain" / "val"
    given = pretrained_rows(args, config, fixed_config=True) if "pretrained" in names else []  # checked first
    rows = []
    if "random" in names:
        rows.append(make_row("random init", "random", config, "", fixed_config=True))
    if getattr(args, "arch", None) == "ViTDet":
        return _in_order(rows + _tiny_vit_rows(args, names, given, out, train, val, config, tag, prog, dry_run))
    if "supervised" in names:
        sup_dir, what = tiny_pretrain_dir(out, "supervised", args.seed), "supervised counterpart (ImageFolder labels)"
        sup = sup_dir / checkpoint_name(TINY_SUPERVISED_EPOCHS - 1)
        if not dry_run:
            sup = _finished(sup_dir, TINY_SUPERVISED_EPOCHS, what, tag) or _pretrain(
                supervised.main, [str(train), "-a", "resnet18", "--epochs", str(TINY_SUPERVISED_EPOCHS), "-b", "32",
                                  "--lr", "0.03", "--cos", "--crop-size", "64", "--seed", str(args.seed), "-j", "0",
                                  "--output-dir", str(sup_dir)], what, tag, prog)
        rows.append(make_row("supervised (tiny labels)", "supervised", config, str(sup), args.supervised_format,
                             fixed_config=True))
        rows[-1].pending = "made by the tiny supervised pretraining"
    if given:
        rows += given
    elif "pretrained" in names:
        moco_dir, what = tiny_pretrain_dir(out, "moco", args.seed), "MoCo v2 pretraining"
        moco = moco_dir / checkpoint_name(TINY_MOCO_EPOCHS - 1)
        if not dry_run:
            moco = _finished(moco_dir, TINY_MOCO_EPOCHS, what, tag) or _pretrain(
                main_moco.main, [str(train), "-a", "resnet18", "--preset", "v2", "--epochs", str(TINY_MOCO_EPOCHS),
                                 "-b", "32", "--lr", "0.03", *TINY_MOCO_DICT, "--crop-size", "64", "--seed",
                                 str(args.seed), "-j", "0", "--output-dir", str(moco_dir), "--resume", "auto",
                                 "--keep-checkpoints", "1", "--knn-val", str(val), "--knn-every", "10",
                                 "--no-tensorboard"], what, tag, prog)
        rows.append(make_row("MoCo v2 (tiny pretraining)", "pretrained", config, str(moco), fixed_config=True))
        rows[-1].pending = "made by the tiny MoCo v2 pretraining"
        rows[-1].method, rows[-1].method_reason = "MoCo v2", "this suite's MoCo v2 pretraining (--preset v2)"
    return _in_order(rows)


def _tiny_vit_rows(args: argparse.Namespace, names: list[str], given: list[Row], out: Path, train: Path, val: Path,
                   config: Path, tag: str, prog: str, dry_run: bool) -> list[Row]:
    """``--tiny --arch ViTDet``: the given supervised ViT (there is no tiny supervised ViT pretraining: without
    ``--supervised-weights`` the row is left out) and tiny MoCo v3 ViT pretraining (or the ``--weights`` rows)."""
    from pretrain import main_moco
    from pretrain.checkpoint import checkpoint_name

    rows = []
    if "supervised" in names and args.supervised_weights != MSRA_R50:
        rows.append(make_row("supervised ViT", "supervised", config, args.supervised_weights, args.supervised_format,
                             fixed_config=True))
    elif "supervised" in names:
        print(f"[{tag}] supervised row left out: no tiny supervised ViT (pass --supervised-weights FILE for one)")
    if given:
        return rows + given
    if "pretrained" in names:
        moco_dir, what = tiny_pretrain_dir(out, "moco-v3-vit", args.seed), "MoCo v3 ViT pretraining"
        moco = moco_dir / checkpoint_name(TINY_MOCO_V3_EPOCHS - 1)
        if not dry_run:
            moco = _finished(moco_dir, TINY_MOCO_V3_EPOCHS, what, tag) or _pretrain(
                main_moco.main, [str(train), "--preset", "v3-vit", "--arch", "vit_tiny", "--epochs",
                                 str(TINY_MOCO_V3_EPOCHS), "--warmup-epochs", "2", "-b", "32", "--crop-size", "64",
                                 "--seed", str(args.seed),
                                 "-j", "0", "--output-dir", str(moco_dir), "--resume", "auto", "--keep-checkpoints",
                                 "1", "--knn-val", str(val), "--knn-every", "5", "--no-tensorboard"], what, tag, prog)
        rows.append(make_row("MoCo v3 (tiny ViT pretraining)", "pretrained", config, str(moco), fixed_config=True))
        rows[-1].pending = "made by the tiny MoCo v3 ViT pretraining"
        rows[-1].method, rows[-1].method_reason = "MoCo v3", "this suite's MoCo v3 pretraining (--preset v3-vit)"
    return rows


# ----------------------------------------------------------------------------- the run

def _fail(prog: str, message: str, lines: list[str] = ()) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    for line in lines:
        print(f"  {line}", file=sys.stderr)
    return 2


def _check_dataset(bench: RunSpec, root: Path, tag: str) -> list[str]:
    print(f"[{tag}] checking the {bench.dataset} layout under {bench.location or root} ...")
    notes: list[str] = []
    problems = bench.check(root, notes)
    for line in notes:
        print(f"[{tag}] note: {line}")
    return problems


def _preflight(bench: RunSpec, args: argparse.Namespace, rows: list[Row], trials: int, out: Path, tag: str,
               run_dir: str) -> int:
    """Check everything before the first trial and print the plan; 0 when the sweep may start."""
    from benchmarks import preflight

    problem = preflight.check_output_dir(out)
    if problem:
        return _fail(bench.prog, problem)
    if not args.dry_run:  # a .pth is converted once per sweep, not once per trial
        for row in rows:
            if row.weights.endswith(CONVERTIBLE):
                try:
                    row.weights = preflight.convert_once(row.weights, out / "weights",
                                                         log=lambda line: print(f"[{tag}] {line}"), prefix=row.prefix)
                except Exception as e:  # noqa: BLE001  (ConvertError and friends: one line)
                    return _fail(bench.prog, f"{row.label}: {e}")
    checks = preflight.check_rows(rows, args.opts, args.allow_partial_weights)  # sizes ViT rows from their weights
    disk_line, disk_problem = preflight.disk_problem(rows, trials, out)
    print(f"[{tag}] plan: {len(rows)} row(s) x {trials} trial(s) -> {out / run_dir}")
    for line in preflight.describe_rows(checks, trials, args.seed):
        print(f"[{tag}]   {line}")
    for row in rows:  # ViTDet: the ViT size each row takes from its weights (transfer/vitdet.py)
        size = [f"{k} {v}" for k, v in zip(row.opts[::2], row.opts[1::2]) if k.startswith("MODEL.VIT.")]
        if size:
            print(f"[{tag}]   {row.label}: ViT sized from the weights: {', '.join(size)}")
    print(f"[{tag}] disk: {disk_line}")
    from benchmarks.cost import plan_cost

    for line in plan_cost(rows, trials, args.opts, args.gpus * max(getattr(args, "nodes", 1) or 1, 1),
                          args.parallel_trials):
        print(f"[{tag}] {line}")
    if args.opts:
        print(f"[{tag}] Detectron2 overrides for every trial: {' '.join(args.opts)}")
    problems = [p for c in checks for p in c.problems] + ([disk_problem] if disk_problem else [])
    if problems:
        return _fail(bench.prog, f"{len(problems)} problem(s) found before training; nothing was started:", problems)
    return 0


def run_benchmark(bench: RunSpec, args: argparse.Namespace) -> int:
    """Full protocol on the real data, or the embedded tiny default (``--tiny`` or no data found)."""
    from transfer.weights import WeightsFormatError

    try:
        return _run_benchmark(bench, args)
    except WeightsFormatError as e:
        return _fail(bench.prog, str(e))


def _run_benchmark(bench: RunSpec, args: argparse.Namespace) -> int:
    check_backbone_labels(args, bench.prog)  # one line, before any data is written
    root = dataset_root(args)
    missing = bench.requires() if bench.requires else None
    if missing:
        return _fail(bench.prog, missing)
    tiny = args.tiny or not bench.has_data(root)
    tag = f"{bench.name}-tiny" if tiny else bench.name
    t0 = time.perf_counter()
    if tiny:
        if bench.tiny_config is None:
            return _fail(bench.prog, bench.tiny_unavailable)
        out = args.output or Path(f"output/{bench.name}-tiny")
        if not args.tiny:
            print(f"[{bench.name}] no {bench.dataset} under {root}: running the embedded small-scale default")
        print(f"[{tag}] {bench.banner or tiny_banner(bench.table)}")
        from benchmarks.tiny_data import generate

        data = out / "datasets"
        problem = _writable(out)
        if problem:
            return _fail(bench.prog, problem)
        if bench.tiny_data is not None:
            data = bench.tiny_data(out, tag)
        elif not (data / ".complete").exists():
            generate(data, log=lambda line: print(f"[{tag}] {line}"))
        problems = _check_dataset(bench, data, tag)
        if problems:
            return _fail(bench.prog, f"{bench.dataset} under {bench.location} is not usable:" if bench.location
                         else f"generated tiny data under {data} is not usable:", problems)
        rows = tiny_rows(args, data, out, bench.tiny_config, tag, bench.prog, dry_run=args.dry_run)
        trials, run_dir, extra, env = args.trials or 1, bench.tiny_run_dir, ["--tiny", "--schedule", "tiny"], child_env(data)
        extra += demonstrates(bench, args)
    else:
        problems = _check_dataset(bench, root, tag)
        if problems:
            return _fail(bench.prog, f"{bench.dataset} layout under {bench.location or root} is not usable:", problems)
        out = args.output or Path(f"output/{bench.name}")
        rows = full_rows(args, bench.config, bench.prog)
        trials, run_dir, extra, env = args.trials or 5, bench.run_dir, [], child_env(root)
    if bench.adjust_rows:
        bench.adjust_rows(rows, tiny)
    from benchmarks import sweep_checks

    problems = sweep_checks.label_problems(rows)
    if problems:
        return _fail(bench.prog, problems[0], problems[1:])
    run_dir += "-amp" if getattr(args, "amp", False) else ""  # fp32 and AMP trials never mix in one row
    run_dir += "-tf32" if getattr(args, "tf32", False) else ""
    args.opts = [*bench.opts, *args.opts]  # a named variant's values (e.g. run_densepose.sh --recipe 2020)
    if not rows:
        return _fail(bench.prog, "no rows to run (pass --weights for a pretrained row)")
    if args.allow_partial_weights:
        extra = [*extra, "--allow-partial-weights"]
    if getattr(args, "arch", None) == "ViTDet" and not tiny:  # one table: each row runs its own Table 11 length
        from transfer.tasks.coco import VITDET_SCHEDULE

        extra = [*extra, "--schedule", VITDET_SCHEDULE]
    if bench.prepare is not None:
        from benchmarks.sweep_data import SweepContext, SweepDataError

        try:
            setup = bench.prepare(SweepContext(args, out, run_dir, tiny, data if tiny else root,
                                               bench.tiny_config if tiny else bench.config, tag))
        except SweepDataError as e:
            return _fail(bench.prog, str(e))
        for line in setup.lines:
            print(f"[{tag}] {line}")
        run_dir, extra, args.opts = setup.run_dir, [*extra, *setup.extra], [*setup.opts, *args.opts]
    if args.nodes > 1 and args.launcher == "local":
        return _fail(bench.prog, "--nodes > 1 runs a trial over several machines: use --launcher slurm")
    from benchmarks.preflight import overrides_problem

    problem = overrides_problem([r.config for r in rows], args.opts)
    if problem:
        return _fail(bench.prog, problem)
    try:
        args.opts = [*args.opts, *batch_overrides(rows[0].config, args, tag)]
    except ValueError as e:
        return _fail(bench.prog, str(e))
    rc = _preflight(bench, args, rows, trials, out, tag, run_dir)
    if rc:
        return rc
    plan = plan_trials(rows, trials, out.resolve(), run_dir, args.seed, args.opts)
    sweep_checks.assign_identities(plan, extra)  # a trial is what it runs, not its label (transfer/identity.py)
    problems = sweep_checks.identity_problems(plan)
    if problems:
        return _fail(bench.prog, f"trial folders under {out / run_dir} hold other runs; nothing was started:",
                     problems)
    if args.dry_run:
        print(f"[{tag}] dry run: nothing was trained")
        return 0
    write_sweep(out / run_dir, bench, args, plan, trials)
    if args.launcher == "slurm":
        return submit(bench, args, plan, trials, env, extra, out, tag, tiny, bench.banner or tiny_banner(bench.table))
    try:
        counts = run_all(plan, trials_requested=trials, env=env, gpus=args.gpus, extra=extra, wait=not args.no_wait,
                         parallel=args.parallel_trials, stall_s=args.stall_limit_min * 60)
    except SweepStop as e:
        print(f"{bench.prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"[{bench.name}] trials: {counts['finished']} finished, {counts['skipped']} skipped (done before), "
          f"{counts['elsewhere']} by another runner, {counts['failed']} failed"
          + (f", {counts['held']} still held elsewhere" if counts.get("held") else "")
          + f"; {time.perf_counter() - t0:.0f}s")
    if tiny:
        print(f"[{tag}] {bench.banner or tiny_banner(bench.table)}")
    rc = print_table(out, with_paper=args.with_paper, extra=table_args(args))
    return 1 if counts["failed"] else rc


def demonstrates(bench: RunSpec, args: argparse.Namespace) -> list[str]:
    """``["--demonstrates", "ARCH/SCHEDULE"]``: the full-scale benchmark a tiny run stands in for, recorded so that
    ``--with-paper`` can show its published rows beside the tiny ones (for orientation); [] when it cannot be told."""
    if getattr(args, "arch", None) == "ViTDet":
        from transfer.tasks.coco import VITDET_SCHEDULE

        return ["--demonstrates", f"ViTDet-B/{VITDET_SCHEDULE}"]
    try:
        from transfer.config import arch_of, load_cfg, schedule_of
        from transfer.tasks import task_of

        cfg = load_cfg(str(bench.config), [])
        return ["--demonstrates", f"{arch_of(cfg)}/{schedule_of(cfg, task_of(cfg))}"]
    except Exception:  # noqa: BLE001  (a runner without a full-scale config: nothing to show beside)
        return []


def table_args(args: argparse.Namespace) -> list[str]:
    """The ``python -m results`` flags a runner passes through: ``--reference LABEL``, ``--cost``."""
    return ((["--reference", args.reference] if getattr(args, "reference", None) else [])
            + (["--cost"] if getattr(args, "cost", False) else []))


def _writable(out: Path) -> str | None:
    from benchmarks.preflight import check_output_dir

    return check_output_dir(out)
