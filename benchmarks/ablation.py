"""The MoCo papers' ablations as data: ``bash benchmarks/run_ablation.sh SPEC [flags]``.

A sweep spec (``benchmarks/sweeps/<name>.yaml``) lists points over a base pretraining recipe: mechanism x K
(MoCo v1 Figure 3, and the models of Table 3), momentum values, MoCo v2's ablation cases (a)-(e), or
temperatures. Each point runs pretraining (``pretrain/main_moco.py``; an interrupted run resumes from its
last checkpoint) -> the linear protocol (``pretrain/main_lincls.py``) or, for short runs, the kNN monitor
-> optionally VOC detection transfer (the VOC runner's rows and trial records), and leaves an ablation
record (``core/ablation_records.py``). A finished point is skipped on rerun; then
``python -m results --runs OUT`` (run at the end) renders the tables and the Figure-3-style plot.

    bash benchmarks/run_ablation.sh figure3 --data /path/to/imagenet        # linear top-1 vs K, 3 mechanisms
    bash benchmarks/run_ablation.sh table3 --data /path/to/imagenet         # + VOC C4/DC5 of 3 mechanisms
    bash benchmarks/run_ablation.sh --tiny                                  # 3 mechanisms x 3 K, kNN, CPU

Running one point is one call of :func:`run_point` with plain arguments, which is what a launcher hands
to a worker: ``--launcher local`` runs them one after the other in this process, ``--launcher slurm``
submits one job per point (an array) through the suite's launcher (``cluster/slurm.py``, the runners'
SLURM flags); a job at its time limit or preempted is requeued and the point resumes (pretraining from its
last checkpoint, finished steps skipped). ``--wait`` waits for the jobs and renders the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import itertools
import math
import re
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from benchmarks.common import split_at_dashes
from benchmarks.runner import REPO
from core import safe_yaml
from core.files import brief
from cluster.slurm import LaunchError, SlurmSpec, add_slurm_args, check_fits, default_cluster, make_executor, submit_all
from core.cli import ArgumentParser

SWEEPS = REPO / "benchmarks" / "sweeps"
TINY_SPEC = "tiny"
ALIASES = {"K": "moco_k", "m": "moco_m", "T": "moco_t"}  # spec shorthands -> main_moco flags
SPEC_KEYS = {"name", "view", "title", "eval", "output", "pretrain", "lincls", "voc", "voc_trials", "points", "notes"}
POINT_KEYS = {"id", "label", "lr_per_256"}  # besides main_moco flags (and the aliases)


class SpecError(ValueError):
    """A sweep spec that cannot be run; one-line message."""


# ----------------------------------------------------------------------------- specs

@dataclass
class Point:
    """One sweep point: ``params`` are main_moco flags (dest names) over the spec's ``pretrain`` base."""

    id: str
    label: str
    params: dict[str, Any]


@dataclass
class Spec:
    name: str
    view: str
    title: str
    eval: str
    output: str
    pretrain: dict[str, Any]
    lincls: dict[str, Any]
    voc: list[str]
    voc_trials: int
    points: list[Point]
    path: Path
    notes: list[str] = field(default_factory=list)

    def point(self, point_id: str) -> Point:
        for p in self.points:
            if p.id == point_id:
                return p
        raise SpecError(f"{self.path}: no point {point_id!r} (points: {', '.join(p.id for p in self.points)})")


def spec_path(spec: str | Path) -> Path:
    """A spec file, or the name of one in ``benchmarks/sweeps`` (``figure3`` -> ``sweeps/figure3.yaml``)."""
    p = Path(spec)
    if p.suffix in (".yaml", ".yml", ".json") or p.exists():
        return p
    return SWEEPS / f"{spec}.yaml"


def available_specs() -> list[str]:
    return sorted(p.stem for p in SWEEPS.glob("*.yaml"))


def _canon(params: dict[str, Any], where: str) -> dict[str, Any]:
    """Spec keys -> main_moco dest names (``K`` -> ``moco_k`` ...), checked against main_moco's flags."""
    from pretrain.main_moco import build_parser

    dests = {a.dest for a in build_parser()._actions} - {"help", "data"}
    out = {}
    for key, value in params.items():
        key = ALIASES.get(key, key.replace("-", "_"))
        if key not in dests and key not in POINT_KEYS:
            raise SpecError(f"{where}: unknown key {key!r} (a main_moco.py flag, K, m, T, lr_per_256, id or label)")
        out[key] = value
    return out


def _default_id(params: dict[str, Any]) -> str:
    parts = []
    for key, value in params.items():
        if key in ("label", "id"):
            continue
        short = {v: k for k, v in ALIASES.items()}.get(key, key)
        if key == "mechanism":
            parts.insert(0, str(value))
        elif isinstance(value, bool):
            parts.append(short if value else f"no{short}")
        else:
            parts.append(f"{short}{value:g}" if isinstance(value, float) else f"{short}{value}")
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", "_".join(parts) or "base").strip("-")


def _default_label(view: str, params: dict[str, Any], base: dict[str, Any]) -> str:
    from pretrain.mechanisms import DISPLAY

    merged = {**base, **params}
    if view == "figure3":
        mech = merged.get("mechanism", "moco")
        k = merged.get("batch_size", 256) if mech == "end-to-end" and "moco_k" not in params else merged.get("moco_k", 65536)
        nce = " (NCE)" if merged.get("bank_loss") == "nce" else ""
        return f"{DISPLAY.get(mech, mech)}{nce} K={k}"
    shown = {k: v for k, v in params.items() if k not in ("id", "label")}
    return " ".join(f"{ {v: k for k, v in ALIASES.items()}.get(k, k)}={v}" for k, v in shown.items()) or "base"


def _expand(entries: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(entries, list) or not entries:
        raise SpecError(f"{where}: 'points' must be a non-empty list")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise SpecError(f"{where}: point {i} is not a mapping")
        if "grid" in entry:
            grid = entry["grid"]
            if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
                raise SpecError(f"{where}: point {i}: 'grid' maps each key to a non-empty list")
            rest = {k: v for k, v in entry.items() if k != "grid"}
            out += [{**rest, **dict(zip(grid, combo))} for combo in itertools.product(*grid.values())]
        else:
            out.append(dict(entry))
    return out


def load_spec(spec: str | Path) -> Spec:
    """Read and check a sweep spec; raises :class:`SpecError` with one line."""
    from core.ablation_records import EVALS, VIEWS

    path = spec_path(spec)
    if not path.is_file():
        raise SpecError(f"no sweep spec {spec!r} (a .yaml file, or one of: {', '.join(available_specs())})")
    try:
        raw = safe_yaml.load(path, "sweep spec")
    except safe_yaml.YamlError as e:
        raise SpecError(str(e)) from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(raw) - SPEC_KEYS)
    if unknown:
        raise SpecError(f"{path}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(SPEC_KEYS))})")
    view, ev = raw.get("view"), raw.get("eval", "linear")
    if view not in VIEWS:
        raise SpecError(f"{path}: 'view' must be one of {', '.join(VIEWS)} (got {brief(view)})")
    if ev not in EVALS:
        raise SpecError(f"{path}: 'eval' must be one of {', '.join(EVALS)} (got {brief(ev)})")
    base = _canon(raw.get("pretrain") or {}, f"{path}: pretrain")
    voc = [str(a) for a in (raw.get("voc") or [])]
    if any(a not in ("C4", "DC5") for a in voc):
        raise SpecError(f"{path}: 'voc' lists detector archs from C4, DC5 (got {voc})")
    points, seen = [], set()
    for i, entry in enumerate(_expand(raw.get("points"), str(path))):
        params = _canon(entry, f"{path}: point {i}")
        pid = str(params.pop("id", "") or _default_id(params))
        label = str(params.pop("label", "") or _default_label(view, params, base))
        if pid in seen:
            raise SpecError(f"{path}: two points with the id {pid!r}; give them distinct 'id's")
        seen.add(pid)
        points.append(Point(pid, label, params))
    name = str(raw.get("name") or path.stem)
    spec = Spec(name=name, view=view, title=str(raw.get("title") or name), eval=ev,
                output=str(raw.get("output") or name), pretrain=base,
                lincls={k.replace("-", "_"): v for k, v in (raw.get("lincls") or {}).items()}, voc=voc,
                voc_trials=int(raw.get("voc_trials", 5)), points=points, path=path,
                notes=[str(n) for n in (raw.get("notes") or [])])
    for pt in points:  # every point's flags must parse now, not hours into the sweep
        try:
            effective_params(pretrain_argv(spec, pt, "DATA", Path("OUT"), 0, None))
        except (SpecError, SystemExit) as e:
            raise SpecError(f"{path}: point {pt.id}: {_parse_error(e)}") from None
    return spec


def _parse_error(e: BaseException) -> str:
    return str(e) if isinstance(e, SpecError) else f"main_moco.py rejects its flags (exit {e.code})"


# ----------------------------------------------------------------------------- flags

def to_flags(params: dict[str, Any], parser: argparse.ArgumentParser) -> list[str]:
    """``{"moco_k": 4096, "mlp": True, "schedule": [120, 160]}`` -> ``--moco-k 4096 --mlp --schedule 120 160``."""
    actions = {a.dest: a for a in parser._actions}
    argv: list[str] = []
    for key, value in params.items():
        action = actions.get(key)
        if action is None:
            raise SpecError(f"unknown flag {key!r}")
        flag = next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0])
        if isinstance(action, argparse.BooleanOptionalAction):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(action, argparse._StoreTrueAction):
            argv += [flag] if value else []
        elif isinstance(value, (list, tuple)):
            argv += [flag, *map(str, value)]
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def pretrain_argv(spec: Spec, point: Point, data: str, out: Path, seed: int, knn_val: str | None,
                  extra: list[str] | None = None) -> list[str]:
    """The main_moco.py command line of ``point``."""
    from pretrain.main_moco import build_parser

    params = {**spec.pretrain, **point.params}
    per_256 = params.pop("lr_per_256", None)
    if params.get("mechanism") == "end-to-end" and "moco_k" in params:
        params["batch_size"] = params.pop("moco_k")  # the end-to-end dictionary is the mini-batch
    if per_256 is not None and "lr" not in params:
        params["lr"] = float(per_256) * int(params.get("batch_size", 256)) / 256
    if knn_val:
        params.setdefault("knn_val", knn_val)
        params.setdefault("knn_every", params.get("epochs", 200))
    params.update(output_dir=str(out), resume="auto", seed=seed)
    params.setdefault("keep_checkpoints", 1)
    return [*to_flags(params, build_parser()), *(extra or []), str(data)]


def effective_params(argv: list[str]) -> dict[str, Any]:
    """The values a point really runs with (main_moco's parser, presets and derived defaults applied)."""
    from pretrain.main_moco import PAPER_BATCH, PAPER_LR, parse_args

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            a = parse_args(argv)
    except SystemExit:
        raise SpecError(err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else "bad flags") from None
    return {"mechanism": a.mechanism, "K": a.batch_size if a.mechanism == "end-to-end" else a.moco_k,
            "m": a.moco_m, "T": a.moco_t, "mlp": a.mlp, "aug_plus": a.aug_plus, "cos": a.cos, "epochs": a.epochs,
            "batch_size": a.batch_size, "lr": a.lr if a.lr is not None else PAPER_LR * a.batch_size / PAPER_BATCH,
            "arch": a.arch, "crop_size": a.crop_size, "bank_loss": a.bank_loss, "bank_m": a.bank_m,
            "preset": a.preset}


# ----------------------------------------------------------------------------- one point

def _epochs_csv(folder: Path) -> list[dict[str, str]]:
    path = folder / "epochs.csv"
    return list(csv.DictReader(open(path))) if path.is_file() else []


def _num(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def pretext_metrics(pretrain_dir: Path, epochs: int) -> dict[str, float | None]:
    """Pretext loss/acc@1 (first and last epoch) and the kNN monitor (initial, final) from epochs.csv."""
    rows = _epochs_csv(pretrain_dir)
    trained = [r for r in rows if r.get("epoch") not in ("0", "") and _num(r.get("loss")) is not None]
    init = next((r for r in rows if r.get("epoch") == "0"), None)
    final = next((r for r in reversed(rows) if r.get("epoch") == str(epochs)), None)
    return {"knn_top1": _num(final.get("knn_top1")) if final else None,
            "knn_top1_init": _num(init.get("knn_top1")) if init else None,
            "pretext_loss_first": _num(trained[0]["loss"]) if trained else None,
            "pretext_loss_last": _num(trained[-1]["loss"]) if trained else None,
            "pretext_acc1_first": _num(trained[0]["acc1"]) if trained else None,
            "pretext_acc1_last": _num(trained[-1]["acc1"]) if trained else None}


def _one_line(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return str(e.code)
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _pretrain(argv: list[str], out: Path, epochs: int, log: Callable[[str], None]) -> Path:
    from pretrain import main_moco
    from pretrain.checkpoint import checkpoint_name

    final = out / checkpoint_name(epochs - 1)
    if final.is_file():
        log(f"pretraining: reusing {final}")
        return final
    last = main_moco.main(argv)
    if last is None or not final.is_file():
        raise RuntimeError(f"pretraining stopped before its last epoch (last checkpoint {last})")
    return final


def _linear(spec: Spec, ckpt: Path, data: str, out: Path, seed: int, log: Callable[[str], None]) -> float:
    import json

    from pretrain import main_lincls

    result = out / "lincls_result.json"
    if result.is_file():
        done = json.loads(result.read_text())
        if done.get("pretrained") == str(ckpt) and isinstance(done.get("top1"), (int, float)):
            log(f"linear protocol: reusing {result}")
            return float(done["top1"])
    argv = [*to_flags({"seed": seed, **spec.lincls}, main_lincls.build_parser()), "--pretrained", str(ckpt),
            "--output-dir", str(out), data]
    if (out / "lincls_checkpoint.pth.tar").is_file():
        argv += ["--resume", str(out / "lincls_checkpoint.pth.tar")]
    top1 = main_lincls.main(argv).get("top1")
    if top1 is None:
        raise RuntimeError("the linear protocol returned no top-1")
    return float(top1)


def _voc(ckpt: Path, label: str, archs: list[str], trials: int, out: Path, seed: int, tiny: bool,
         datasets: str | None, gpus: int) -> dict[str, int]:
    """VOC fine-tuning trials of ``ckpt`` as one row (``label``) per detector arch; trial records under ``out``."""
    counts = {"finished": 0, "skipped": 0, "failed": 0}
    if tiny:
        from benchmarks.common import CONFIGS
        from benchmarks.runner import Row, child_env, plan_trials, run_all

        if archs != ["C4"]:
            raise SpecError("the tiny VOC transfer has a C4 detector only (pass --voc C4)")
        row = Row(label, "pretrained", CONFIGS / "tiny" / "voc_R_18_C4_tiny.yaml", str(ckpt.resolve()))
        plan = plan_trials([row], trials, (out / "C4").resolve(), "R18-C4", seed, [])
        env = child_env(Path(datasets) if datasets else None)
        for k, v in run_all(plan, trials_requested=trials, env=env, gpus=gpus,
                            extra=["--tiny", "--schedule", "tiny"]).items():
            counts[k] += v
        return counts
    from benchmarks import run

    for arch in archs:
        argv = ["--weights", str(ckpt), "--label", label, "--rows", "pretrained", "--arch", arch, "--trials",
                str(trials), "--seed", str(seed), "--gpus", str(gpus), "--output", str(out / arch)]
        if datasets:
            argv += ["--datasets", datasets]
        counts["failed" if run.main(["voc", *argv]) else "finished"] += trials
    return counts


def run_point(spec: str, point: str, output: str, *, data: str, seed: int = 0, tiny: bool = False,
              eval: str | None = None, voc: list[str] | None = None, voc_trials: int | None = None,
              voc_datasets: str | None = None, gpus: int = 1, extra: list[str] | None = None,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or skip, or resume) one sweep point and return its ablation record.

    ``spec``: spec file or name; ``point``: its id; ``output``: the sweep's output root (the point writes
    ``output/<point>/seed<seed>/``); ``data``: ImageNet-style root with ``train/`` and ``val/``;
    ``voc``: detector archs (default: the spec's); ``voc_datasets``: ``DETECTRON2_DATASETS`` for VOC.
    Errors of the point are recorded (status "failed", one line), not raised.
    """
    from core.ablation_records import finished_record, write_ablation_record

    sp = load_spec(spec)
    pt = sp.point(point)
    ev = eval or sp.eval
    archs = sp.voc if voc is None else list(voc)
    trials = voc_trials or sp.voc_trials
    folder = Path(output) / pt.id / f"seed{seed}"
    tag = f"[ablation {sp.name}/{pt.id} seed {seed}]"

    def say(msg: str) -> None:
        log(f"{tag} {msg}")

    done = finished_record(folder)
    if done is not None and done["eval"] == ev and (not archs or _voc_covers(done, archs, trials)):
        say(f"already finished, skipped (top-1 {done['metrics']['top1']:.2f}, {done['eval']})")
        return done
    val = str(Path(data) / "val")
    argv = pretrain_argv(sp, pt, data, folder / "pretrain", seed, val if ev == "knn" else None, extra)
    record: dict[str, Any] = {
        "sweep": sp.name, "view": sp.view, "point": pt.id, "label": pt.label, "eval": ev, "seed": seed,
        "tiny": tiny, "status": "failed", "error": None, "metrics": {}, "checkpoint": None, "voc": None,
        "timings": {}, "argv": argv, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname()}
    try:
        record["params"] = effective_params(argv)
        t0 = time.perf_counter()
        say(f"pretraining: {' '.join(argv)}")
        ckpt = _pretrain(argv, folder / "pretrain", record["params"]["epochs"], say)
        record["checkpoint"] = str(ckpt.relative_to(folder))
        record["timings"]["pretrain_s"] = round(time.perf_counter() - t0, 1)
        metrics = pretext_metrics(folder / "pretrain", record["params"]["epochs"])
        t0 = time.perf_counter()
        if ev == "knn":
            if metrics["knn_top1"] is None:
                raise RuntimeError(f"no final kNN top-1 in {folder / 'pretrain' / 'epochs.csv'}")
            metrics["top1"] = metrics["knn_top1"]
        else:
            metrics["top1"] = _linear(sp, ckpt, data, folder / "lincls", seed, say)
        record["timings"]["eval_s"] = round(time.perf_counter() - t0, 1)
        record.update(metrics=metrics, status="finished")
        write_ablation_record(folder, record)
        say(f"top-1 {metrics['top1']:.2f} ({ev})" + (f", kNN at random initialisation {metrics['knn_top1_init']:.2f}"
                                                     if metrics.get("knn_top1_init") is not None else ""))
        if archs:
            t0 = time.perf_counter()
            counts = _voc(ckpt, pt.label, archs, trials, folder / "voc", seed, tiny, voc_datasets, gpus)
            record["voc"] = {"archs": archs, "trials": trials, "dir": "voc", "failed": counts["failed"]}
            record["timings"]["voc_s"] = round(time.perf_counter() - t0, 1)
            if counts["failed"]:
                record["error"] = f"{counts['failed']} VOC trial(s) failed; see {folder / 'voc'}"
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # one failing point must not stop the sweep or lose the finished ones
        record["error"] = _one_line(e)  # a failed VOC step leaves a finished point finished
        say(f"FAILED: {record['error']}")
        if "--debug" in (extra or []):
            traceback.print_exc()
        record.setdefault("params", {})
    write_ablation_record(folder, record)
    return record


def _voc_covers(record: dict[str, Any], archs: list[str], trials: int) -> bool:
    voc = record.get("voc") or {}
    return set(archs) <= set(voc.get("archs") or []) and voc.get("trials", 0) >= trials and not voc.get("failed")


# ----------------------------------------------------------------------------- the sweep

def run_local(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The local launcher: every point in this process, one after the other."""
    return [run_point(**call) for call in calls]


class PointJob:
    """The callable submitit runs for one point; ``checkpoint()`` requeues it (the point resumes)."""

    def __init__(self, call: dict[str, Any]) -> None:
        self.call = dict(call)

    def __call__(self) -> dict[str, Any]:
        return run_point(**self.call)

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit

        from benchmarks import runner

        runner.request_checkpoint_and_wait()  # VOC trials of the point save their iteration
        return submitit.helpers.DelayedSubmission(PointJob(self.call))


def point_record(call: dict[str, Any]) -> dict[str, Any]:
    """The ablation record a point left (a failed stand-in when it left none)."""
    from core.ablation_records import RECORD_NAME, read_ablation_record

    folder = Path(call["output"]) / call["point"] / f"seed{call['seed']}"
    try:
        return read_ablation_record(folder / RECORD_NAME)
    except Exception as e:  # noqa: BLE001  (no or unreadable record: the point did not finish)
        return {"status": "failed", "error": f"no record in {folder} ({_one_line(e)})", "point": call["point"]}


def run_slurm(calls: list[dict[str, Any]], args: argparse.Namespace, out: Path) -> list[dict[str, Any]] | None:
    """One job per point (an array); None when submitted without waiting, else the points' records."""
    from cluster.jobs import wait_until_ended

    spec = SlurmSpec.from_args(args, gpus_per_node=args.gpus, name="moco-ablation")
    cluster = args.cluster or default_cluster()
    if cluster == "slurm":
        check_fits(spec)
    executor = make_executor(spec, Path(args.job_dir or out / "slurm").resolve(), cluster)
    jobs = submit_all(executor, [PointJob(c) for c in calls])
    for call, job in zip(calls, jobs):
        print(f"[ablation] {call['point']} seed {call['seed']}: submitted as job {job.job_id} ({cluster})")
    if cluster == "slurm" and not args.wait:
        return None
    if cluster == "slurm":
        wait_until_ended([str(j.job_id) for j in jobs])
    else:
        while not all(j.done() for j in jobs):
            time.sleep(1)
    records = [point_record(c) for c in calls]
    for r in records:  # the points ran elsewhere: their one-line reasons here
        if r["status"] != "finished" or r.get("error"):
            print(f"[ablation] {r.get('point', '?')}: FAILED: {r.get('error') or r['status']}")
    return records


LAUNCHERS = ("local", "slurm")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="run_ablation.sh", description=__doc__.split("\n\n")[0],
                       epilog=f"specs in {SWEEPS}: {', '.join(available_specs())}. "
                                       "Arguments after '--' go to every main_moco.py run.")
    p.add_argument("spec", nargs="?", help="sweep spec: a .yaml file or a name in benchmarks/sweeps")
    p.add_argument("--tiny", action="store_true",
                   help=f"small-scale sweep on the generated tiny ImageFolder (default spec {TINY_SPEC!r}), CPU")
    p.add_argument("--data", help="ImageNet-style root with train/ and val/ (not needed with --tiny)")
    p.add_argument("--output", type=Path, help="output root (default output/ablation/<spec output>)")
    p.add_argument("--seeds", default="0", help="comma-separated pretraining seeds (default 0)")
    p.add_argument("--points", help="comma-separated point ids to run (default: all)")
    p.add_argument("--eval", choices=("linear", "knn"), help="override the spec's evaluation")
    p.add_argument("--voc", help="also fine-tune on VOC with these detectors, e.g. C4,DC5 (default: the spec's)")
    p.add_argument("--no-voc", action="store_true", help="skip the spec's VOC step")
    p.add_argument("--voc-trials", type=int, help="VOC trials per point and detector (default: the spec's)")
    p.add_argument("--voc-datasets", help="DETECTRON2_DATASETS for the VOC step (default: the environment's)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per VOC trial")
    p.add_argument("--launcher", choices=LAUNCHERS, default="local",
                   help="where points run: here, one after the other, or one SLURM job each (an array)")
    p.add_argument("--wait", action="store_true", help="--launcher slurm: wait for the jobs, then render the tables")
    p.add_argument("--list", action="store_true", help="print the points and their main_moco.py commands, run nothing")
    p.add_argument("--with-paper", action="store_true", help="tables: the paper's values beside the measured ones")
    add_slurm_args(p, gpus_flag=False)
    argv, extra = split_at_dashes(argv)
    args = p.parse_args(argv)
    args.extra = extra
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prog = "run_ablation.sh"
    try:
        spec = load_spec(args.spec or (TINY_SPEC if args.tiny else ""))
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except SpecError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except ValueError:
        print(f"{prog}: error: --seeds takes integers, e.g. 0,1,2", file=sys.stderr)
        return 2
    out = args.output or Path("output") / "ablation" / (spec.output + ("-tiny" if args.tiny and spec.output != TINY_SPEC else ""))
    wanted = [p.strip() for p in (args.points or "").split(",") if p.strip()]
    unknown = sorted(set(wanted) - {p.id for p in spec.points})
    if unknown:
        print(f"{prog}: error: unknown point(s) {', '.join(unknown)} (points: {', '.join(p.id for p in spec.points)})",
              file=sys.stderr)
        return 2
    points = [p for p in spec.points if not wanted or p.id in wanted]
    voc = [] if args.no_voc else ([a.strip() for a in args.voc.split(",") if a.strip()] if args.voc else None)
    if args.list:
        data = args.data or "DATA"
        ev = args.eval or spec.eval
        for seed in seeds:
            for p in points:
                argv = pretrain_argv(spec, p, data, out / p.id / f"seed{seed}" / "pretrain", seed,
                                     f"{data}/val" if ev == "knn" else None, args.extra)
                print(f"{p.id}\t{p.label}\tpython pretrain/main_moco.py {' '.join(argv)}")
        return 0
    if args.tiny:
        from benchmarks.common import tiny_banner
        from benchmarks.tiny_data import generate

        print(f"[ablation-tiny] {tiny_banner('the paper ablations')}")
        root = out / "datasets"
        if not (root / ".complete").exists():
            generate(root, log=lambda line: print(f"[ablation-tiny] {line}"))
        data, voc_datasets = str(root / "pretrain"), args.voc_datasets or str(root)
    else:
        if not args.data:
            print(f"{prog}: error: pass --data with an ImageNet-style root (train/ and val/), or --tiny", file=sys.stderr)
            return 2
        data, voc_datasets = args.data, args.voc_datasets
        if not Path(data).is_dir():
            print(f"{prog}: error: --data {data} is not a folder", file=sys.stderr)
            return 2
    calls = [dict(spec=str(spec.path), point=p.id, output=str(out), data=data, seed=seed, tiny=args.tiny,
                  eval=args.eval, voc=voc, voc_trials=args.voc_trials, voc_datasets=voc_datasets, gpus=args.gpus,
                  extra=args.extra) for seed in seeds for p in points]
    print(f"[ablation] {spec.name}: {len(points)} point(s) x {len(seeds)} seed(s) -> {out} ({args.launcher} launcher)")
    t0 = time.perf_counter()
    if args.launcher == "slurm":
        try:
            records = run_slurm(calls, args, out)
        except LaunchError as e:
            print(f"{prog}: error: {e}", file=sys.stderr)
            return 2
        if records is None:
            print(f"[ablation] submitted; tables when they finish: python -m results --runs {out}")
            return 0
    else:
        records = run_local(calls)
    failed = [r for r in records if r["status"] != "finished" or r.get("error")]
    print(f"[ablation] {len(records) - len(failed)} finished, {len(failed)} failed; {time.perf_counter() - t0:.0f}s")
    from benchmarks.runner import print_table

    rc = print_table(out, args.with_paper, ["--out", str(out / "tables")])
    return 1 if failed else rc


if __name__ == "__main__":
    sys.exit(main())
