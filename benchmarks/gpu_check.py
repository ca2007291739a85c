"""One-command check of the GPU path: ``make gpu-check`` (= ``python -m benchmarks.gpu_check``).

    python -m benchmarks.gpu_check                      # on a GPU machine: about 10 minutes, no dataset needed
    python -m benchmarks.gpu_check --device cpu --smoke # every section at toy sizes on the CPU (what the test runs)

Sections, each in its own process (a crash or an out-of-memory in one does not stop the others):

1. **environment**: GPU, driver, CUDA, cuDNN, NCCL, torch, torchvision, Detectron2 and where it came from, DALI;
2. **GPU tests**: ``pytest -m gpu``;
3. **pretraining throughput** (``benchmarks/pretrain_throughput.py``): (a) reference-style, (b) this suite's
   default, (c) model only, ResNet-50 at 224 px, batch 256, on generated JPEGs; targets (b) >= 3 x (a) and
   (b) >= 85 % of (c); (d)/(e) the same for MoCo v3 ViT-B/16 at 64 images per GPU; and each data backend alone;
4. **fine-tuning** (``benchmarks/finetune_speed.py``): VOC R50-C4 and COCO R50-FPN Mask R-CNN at batch 16 on
   this one GPU, and ViTDet-B Mask R-CNN at its per-GPU batch (1 image at 1024 px), fp32 with TF32 off / on and
   Detectron2 AMP: s/iter, peak memory, projected wall times;
5. **distributed** (``benchmarks/dist_check.py``): DDP over NCCL (world 1), two processes on one GPU,
   SyncBN / naiveSyncBN, MoCo's shuffling BN across processes;
6. **pretraining precision**: short ResNet-18 MoCo v2 runs with ``--precision fast`` and ``paper``, kNN top-1.

The report is written as Markdown (device and date in it) to ``docs/gpu-check/<date>-<device>.md`` (with the
raw figures in a ``.json`` beside it) and printed. Without a CUDA device it stops at once with one line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from core.cli import ArgumentParser

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("env", "tests", "pretrain", "finetune", "dist", "precision")
BUDGET_S = 600
# Each section's share of the budget: a section may use the time not reserved for the sections after it, so
# time one leaves over goes to the next and a slow one cannot starve the rest.
SHARES = {"env": 0.02, "tests": 0.22, "pretrain": 0.30, "finetune": 0.24, "dist": 0.10, "precision": 0.12}
# Protocol sizes for the projections (transfer/configs/protocol.yaml, docs/benchmarks.md): rows x trials x iterations.
VOC_TABLE = {"rows": 3, "trials": 5, "iters": 24000}
COCO_ITERS = {"1x": 90000, "2x": 180000}
COCO_TRIALS = 5
# (config, images per GPU): the MoCo tables' recipes at their batch 16 on this one GPU; ViTDet-B at its per-GPU batch
# (64 images on 64 GPUs, App. A.2), 1024 px LSJ
FINETUNE_CONFIGS = {"VOC R50-C4": ("voc/voc_R_50_C4_24k_rgb.yaml", 16),
                    "COCO R50-FPN Mask R-CNN": ("coco/coco_R_50_FPN_1x_rgb.yaml", 16),
                    "COCO ViTDet-B Mask R-CNN": ("coco/coco_ViTDet_B_100ep.yaml", 1)}
SMOKE_CONFIGS = {"VOC R18-C4 (tiny)": ("tiny/voc_R_18_C4_tiny.yaml", 2),
                 "COCO ViTDet (tiny)": ("tiny/coco_ViTDet_tiny.yaml", 2)}
VITDET = {"iters": 184375, "gpus": 64}  # ViTDet-B's 100-epoch schedule, on the paper's 64 GPUs
# MoCo v3 ViT-B pretraining: batch 4096 (the default -b) on 8 nodes of 8 GPUs (moco-v3 CONFIG.md), 64 per GPU
V3_VIT = {"arch": "vit_base", "batch": 64, "smoke": "vit_tiny"}


SHORT = {"env": "environment", "tests": "GPU tests", "pretrain": "pretraining throughput", "finetune": "fine-tuning speed/memory",
         "dist": "distributed", "precision": "pretraining precision"}


@dataclass
class Section:
    key: str
    title: str
    status: str = "ok"  # ok | failed | partial | skipped
    lines: list[str] = field(default_factory=list)  # Markdown body
    data: dict | list | None = None
    seconds: float = 0.0


@dataclass
class Context:
    device: str
    smoke: bool
    deadline: float
    datasets: Path | None = None
    log: object = print
    section_deadline: float | None = None  # set by run() for the section in progress

    def remaining(self) -> float:
        """Seconds the current section may still use (the whole budget outside a section)."""
        return (self.section_deadline if self.section_deadline is not None else self.deadline) - time.monotonic()

    def part(self, reserve_fraction: float) -> float:
        """Seconds for one part of a section, keeping ``reserve_fraction`` of what is left for the parts after it."""
        return self.remaining() * (1 - reserve_fraction)


# ----------------------------------------------------------------------------- helpers

def _one_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


FAILURE_LOGS: list[str] = []  # output of failed child processes, written beside the report as ``.log``


def _keep_log(what: str, text: str, lines: int = 120) -> None:
    FAILURE_LOGS.append(f"===== {what}\n" + "\n".join(text.strip().splitlines()[-lines:]) + "\n")


def run_json(args: list[str], timeout: float, env: dict | None = None) -> dict | list:
    """Run ``python -m <args> --json`` in a fresh process; its last JSON line, or raise RuntimeError (one line)."""
    if timeout <= 5:
        raise TimeoutError("no time left in the budget")
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run([sys.executable, "-m", *args, "--json"], cwd=REPO, capture_output=True, text=True,
                              timeout=timeout, env=full_env)
    except subprocess.TimeoutExpired as e:
        _keep_log(f"{' '.join(args)} (timed out)", (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or ""))
        raise TimeoutError(f"timed out after {timeout:.0f} s") from None
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith(("{", "[")):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    _keep_log(f"{' '.join(args)} (exit {proc.returncode})", proc.stderr + proc.stdout)
    raise RuntimeError(f"exit {proc.returncode}: {_one_line(proc.stderr) or _one_line(proc.stdout)}")


def parse_pytest_progress(text: str) -> tuple[dict[str, list[str]], str | None]:
    """Per-test outcomes from ``pytest -v`` lines seen so far, and the test still running (for a run cut short)."""
    outcomes: dict[str, list[str]] = {}
    running = None
    for line in text.splitlines():
        m = re.match(r"^(\S+::\S+)(?: (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b)?", line.strip())
        if not m:
            continue
        if m.group(2):
            outcomes.setdefault(m.group(2).lower(), []).append(m.group(1))
            running = None
        else:
            running = m.group(1)
    return outcomes, running


def parse_pytest_summary(text: str) -> dict[str, int]:
    """Counts from pytest's closing line, e.g. '3 passed, 1 skipped, 2 deselected in 4.2s'."""
    counts = {}
    for line in reversed(text.strip().splitlines()):
        found = re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)", line)
        if found:
            for n, what in found:
                counts["errors" if what.startswith("error") else what] = int(n)
            break
    return counts


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds < 48 * 3600 else f"{seconds / 86400:.1f} days"


# ----------------------------------------------------------------------------- sections

def environment(ctx: Context) -> Section:
    import torchvision

    from transfer.doctor import detectron2_report

    s = Section("env", "Environment")
    rows = [["python", platform.python_version()], ["torch", f"{torch.__version__} (CUDA {torch.version.cuda})"],
            ["torchvision", torchvision.__version__]]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            rows.append([f"GPU {i}", f"{p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}"])
        rows.append(["driver", _driver_version()])
        rows.append(["cuDNN", str(torch.backends.cudnn.version())])
        nccl = torch.cuda.nccl.version() if torch.distributed.is_nccl_available() else None
        rows.append(["NCCL", ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl)])
        rows.append(["bf16 supported", str(torch.cuda.is_bf16_supported())])
    else:
        rows.append(["GPU", "none (CPU run)"])
    for line in detectron2_report():
        name, _, value = line.partition(": ")
        rows.append([name, value])
    rows.append(["NVIDIA DALI", _dali_version()])
    rows.append(["CPU cores", str(os.cpu_count())])
    try:
        import psutil

        rows.append(["memory", f"{psutil.virtual_memory().total / 2**30:.0f} GiB"])
    except ImportError:
        pass
    s.lines = _md_table(["", ""], rows)
    s.data = {r[0]: r[1] for r in rows}
    return s


def _driver_version() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown (nvidia-smi failed)"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (no nvidia-smi)"


def _dali_version() -> str:
    try:
        import nvidia.dali as dali

        return dali.__version__
    except Exception:
        return "not installed (optional: pip install nvidia-dali-cuda130)"


def gpu_tests(ctx: Context) -> Section:
    s = Section("tests", "GPU tests (`pytest -m gpu`)")
    if ctx.smoke:
        s.status, s.lines = "skipped", ["not run in smoke mode (the smoke run is itself a test)"]
        return s
    timeout = ctx.remaining()
    if timeout < 30:
        s.status, s.lines = "skipped", ["skipped: time budget"]
        return s
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-p", "no:randomly", "-p", "no:cacheprovider",
                               "-rfEs", "--durations=5"], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        _keep_log("pytest -m gpu (timed out)", out, 400)
        seen, running = parse_pytest_progress(out)
        s.data = {k: len(v) for k, v in seen.items()}
        s.status, s.lines = "failed", [f"timed out after {timeout:.0f} s: " + ", ".join(f"{len(v)} {k}" for k, v in seen.items())
                                       + (f"; still running: `{running}`" if running else "")]
        s.lines += [f"- {k.upper()} `{t}`" for k in ("failed", "error") for t in seen.get(k, [])]
        return s
    counts = parse_pytest_summary(proc.stdout)
    s.data = {"returncode": proc.returncode, **counts}
    failed = counts.get("failed", 0) + counts.get("errors", 0)
    s.status = "ok" if proc.returncode == 0 and counts.get("passed", 0) > 0 and not failed else "failed"
    if s.status == "failed":
        _keep_log("pytest -m gpu", proc.stdout + proc.stderr, 400)
    s.lines = [f"{counts.get('passed', 0)} passed, {failed} failed, {counts.get('skipped', 0)} skipped (exit {proc.returncode})"]
    s.lines += [f"- `{ln.strip()}`" for ln in proc.stdout.splitlines() if ln.startswith(("FAILED", "ERROR", "SKIPPED"))][:20]
    return s


def pretraining(ctx: Context) -> Section:
    import tempfile

    from benchmarks.pretrain_throughput import TARGET_VS_MODEL, TARGET_VS_REFERENCE, make_jpeg_folder

    s = Section("pretrain", "Pretraining throughput, end to end (JPEG folder -> augmented pairs -> MoCo v2 step)")
    n, size = (24, (48, 40)) if ctx.smoke else (2048, (500, 375))
    folder = make_jpeg_folder(Path(tempfile.mkdtemp(prefix="gpu_check_jpeg_")), n, size)
    common = ["benchmarks.pretrain_throughput", "--device", ctx.device, "--data", str(folder), "--images", str(n),
              "--image-size", *map(str, size), *(["--smoke"] if ctx.smoke else [])]
    res: dict = {}
    errors: list[str] = []
    # Separate processes, so one failing keeps the others; (b)/(c) include torch.compile's first compilation.
    for part, reserve in (("a", 0.75), ("bc", 0.45), ("v3", 0.3), ("data", 0.0)):
        try:
            if part == "v3":  # MoCo v3 ViT (its own preset, the same Trainer): ViT-B at 64 images per GPU
                vit = ["--only", "bc", "--suite-flags", f"--preset v3-vit -a {V3_VIT['smoke' if ctx.smoke else 'arch']}"]
                got = run_json([*common, *vit, *([] if ctx.smoke else ["-b", str(V3_VIT["batch"])])], ctx.part(reserve))
                res["v3"] = {"b": got["b"], "c": got["c"], "config": got["config"]}
            else:
                res.update(run_json([*common, "--only", part], ctx.part(reserve)))
        except (RuntimeError, TimeoutError, KeyError) as e:
            errors.append(f"({part}) not measured: {e}")
    if "a" in res and "b" in res:
        res["b_over_a"] = res["b"]["images_per_s"] / res["a"]["images_per_s"]
    if "b" in res:
        res["b_over_c"] = res["b"]["images_per_s"] / res["c"]["images_per_s"]
    s.data = res
    if "config" in res:
        cfg = res["config"]
        s.lines = [f"{cfg['arch']}, crop {cfg['crop']}, batch {cfg['batch']}, K {cfg['K']}, {cfg['images']} generated "
                   f"{cfg['image_size'][0]}x{cfg['image_size'][1]} JPEGs, {cfg['workers']} loader workers, {cfg['iters']} timed "
                   f"steps after {cfg['warmup']}.", ""]
    rows = []
    for key, name in (("a", "(a) reference-style"), ("b", "(b) suite default"), ("c", "(c) model only")):
        if key in res:
            r = res[key]
            rows.append([name, f"{r['images_per_s']:.0f}", f"{1000 * r['s_per_step']:.0f}", r["settings"]])
    v3 = res.get("v3", {})
    for key, name in (("b", "(d) MoCo v3 ViT, suite default"), ("c", "(e) MoCo v3 ViT, model only")):
        if key in v3:
            r, cfg3 = v3[key], v3["config"]
            rows.append([name, f"{r['images_per_s']:.0f}", f"{1000 * r['s_per_step']:.0f}",
                         f"--preset v3-vit -a {V3_VIT['smoke' if ctx.smoke else 'arch']}, batch {cfg3['batch']}, "
                         f"crop {cfg3['crop']}; {r['settings']}"])
    for backend, r in res.get("data", {}).items():
        rows.append([f"data only: {backend}", f"{r['images_per_s']:.0f}" if "images_per_s" in r else "-", "-",
                     r.get("error", "decode + augment only, no model")])
    s.lines += _md_table(["", "img/s", "ms/step", "settings"], rows) + [""] + [f"- {e}" for e in errors]
    met = []
    if "b_over_a" in res:
        met.append(res["b_over_a"] >= TARGET_VS_REFERENCE)
        s.lines.append(f"- (b)/(a) = **{res['b_over_a']:.2f}x** (target >= {TARGET_VS_REFERENCE:.0f}x): "
                       f"{'met' if met[-1] else '**not met**'}")
    if "b_over_c" in res:
        met.append(res["b_over_c"] >= TARGET_VS_MODEL)
        s.lines.append(f"- (b)/(c) = **{100 * res['b_over_c']:.0f}%** (target >= {100 * TARGET_VS_MODEL:.0f}%): "
                       f"{'met' if met[-1] else '**not met**'}")
    rates = {b: r["images_per_s"] for b, r in res.get("data", {}).items() if "images_per_s" in r}
    if rates and "b" in res:
        fastest = max(rates, key=rates.get)
        chosen = res["b"]["settings"].split(",")[0].replace("data backend ", "")
        s.lines.append(f"- fastest data backend alone: **{fastest}**; `--data-backend auto` chose **{chosen}**"
                       + ("" if fastest == chosen or ctx.device != "cuda" else " (auto should change to the fastest)"))
    if "b" in res and not ctx.smoke:
        paper_v100 = 168.0
        s.lines.append(f"- paper anchor: MoCo v2 on 8 V100 ~{paper_v100:.0f} img/s per GPU; (b) is "
                       f"{res['b']['images_per_s'] / paper_v100:.1f}x that")
    s.status = "failed" if errors else ("ok" if met and all(met) else "partial")
    return s


def finetuning(ctx: Context) -> Section:
    s = Section("finetune", "Fine-tuning speed and memory (one GPU)")
    configs = SMOKE_CONFIGS if ctx.smoke else FINETUNE_CONFIGS
    extra = ["--smoke", "--modes", "fp32-tf32off", "amp"] if ctx.smoke else ["--iters", "8", "--warmup", "3"]
    if ctx.datasets:
        extra += ["--datasets", str(ctx.datasets)]
    rows, data, failed = [], {}, False
    for i, (name, (config, batch)) in enumerate(configs.items()):
        try:
            res = run_json(["benchmarks.finetune_speed", "--config", config, "--device", ctx.device, *extra,
                            *([] if ctx.smoke else ["--batch", str(batch)])],
                           ctx.part(1 - 1 / (len(configs) - i)))
        except (RuntimeError, TimeoutError) as e:
            rows.append([name, "-", "-", "-", f"not measured: {e}"])
            failed = True
            continue
        data[name] = res
        for m in res["modes"]:
            if "error" in m:
                rows.append([name, m["mode"], "-", "-", m["error"]])
                failed = failed or ctx.device == "cuda"
                continue
            mem = f"{m['peak_alloc_gib']:.1f}" if m["peak_alloc_gib"] is not None else "n/a (CPU)"
            note = "" if m["batch"] == res["requested_batch"] else f"batch {res['requested_batch']} did not fit"
            rows.append([name, m["mode"], str(m["batch"]), f"{m['s_per_iter']:.3f}", mem + (f"; {note}" if note else "")])
    s.data = data
    s.lines = _md_table(["config", "mode", "batch", "s/iter", "peak GiB allocated"], rows)
    s.lines += ["", "Modes: `fp32-tf32off` = the paper's arithmetic; `fp32-tf32on` = TF32 convolutions and matmuls; "
                "`amp` = Detectron2 `SOLVER.AMP.ENABLED` (runner flag `--amp`), fp16 autocast + TF32. Data loader "
                f"workers: {next(iter(data.values()))['workers'] if data else '?'} (auto: CPUs per GPU, 2-16). Inputs: the "
                "generated tiny datasets resized by each config to the protocol's sizes."]
    s.lines += [""] + projections(data)
    s.status = "failed" if failed else "ok"
    return s


def projections(data: dict) -> list[str]:
    """Projected wall time (training only, evaluation not included) of a full VOC table and COCO rows on this GPU."""
    lines = []
    for name, res in data.items():
        for m in res["modes"]:
            if "error" in m or m["batch"] != res["requested_batch"]:
                continue
            if "ViTDet-B" in name and m["batch"] == 1:
                wall = VITDET["iters"] * m["s_per_iter"]
                lines.append(f"- ViTDet-B 100-epoch row ({VITDET['iters']:,} iterations of 1 image per GPU on "
                             f"{VITDET['gpus']} GPUs like this one, communication not counted), `{m['mode']}`: "
                             f"**{_hours(wall)}** wall, {_hours(VITDET['gpus'] * wall)} GPU time per trial")
                continue
            if res["requested_batch"] != 16:
                continue
            if name.startswith("VOC"):
                n = VOC_TABLE["rows"] * VOC_TABLE["trials"] * VOC_TABLE["iters"]
                lines.append(f"- full VOC table ({VOC_TABLE['rows']} rows x {VOC_TABLE['trials']} trials x "
                             f"{VOC_TABLE['iters'] // 1000}k iterations), `{m['mode']}`: **{_hours(n * m['s_per_iter'])}**")
            elif name.startswith("COCO"):
                for sched, iters in COCO_ITERS.items():
                    lines.append(f"- COCO {sched} row ({iters // 1000}k iterations), `{m['mode']}`: "
                                 f"**{_hours(iters * m['s_per_iter'])}** per trial, {_hours(COCO_TRIALS * iters * m['s_per_iter'])} "
                                 f"for {COCO_TRIALS} trials")
    if not lines:
        return ["- projections: need a measurement at the paper's batch 16 (none here)"]
    return ["Projected training time on this one GPU (evaluation excluded):", *lines]


def distributed(ctx: Context) -> Section:
    from benchmarks.dist_check import format_lines

    s = Section("dist", "Distributed on one machine")
    args = ["benchmarks.dist_check", "--device", ctx.device] + (["--no-moco"] if ctx.smoke else [])
    res = run_json(args, ctx.remaining())
    s.data = res
    s.lines = [ln.replace("  PASS", "- PASS").replace("  FAIL", "- FAIL") for ln in format_lines(res)]
    if ctx.device == "cuda" and torch.cuda.device_count() < 2:
        s.lines.append("- NCCL with 2 processes needs 2 GPUs (one rank per GPU): not run on this 1-GPU machine; "
                       "the 2-process checks use gloo with CUDA tensors")
    s.status = "ok" if all(r["ok"] for r in res) else "failed"
    return s


def precision_check(ctx: Context) -> Section:
    """Short MoCo v2 runs, --precision fast vs paper, kNN top-1 on the generated tiny ImageFolder."""
    s = Section("precision", "Pretraining precision: `--precision fast` (default) vs `paper` (fp32, TF32 off)")
    code = "import json,sys; from benchmarks.gpu_check import _precision_runs as r; print(json.dumps(r(sys.argv[1:])))"
    seeds = ["0"] if ctx.smoke else ["0", "1"]
    timeout = ctx.remaining()
    if timeout < 20:
        s.status, s.lines = "skipped", ["skipped: time budget"]
        return s
    try:
        proc = subprocess.run([sys.executable, "-c", code, ctx.device, "smoke" if ctx.smoke else "full", *seeds], cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"timed out after {timeout:.0f} s") from None
    if proc.returncode:
        _keep_log("precision runs", proc.stderr)
        raise RuntimeError(_one_line(proc.stderr))
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    s.data = res
    rows = [[mode, ", ".join(f"{v:.1f}" for v in r["knn_top1"]), f"{sum(r['knn_top1']) / len(r['knn_top1']):.1f}",
             ", ".join(f"{v:.3f}" for v in r["final_loss"]), r["precision"]] for mode, r in res.items()]
    size = "smoke" if ctx.smoke else "full"
    n_train, n_val, crop = _PRECISION_SIZES[size]
    s.lines = [f"ResNet-18, {crop} px crops, generated tiny ImageFolder ({n_train} train / {n_val} val images), MoCo v2 "
               f"recipe, {_PRECISION_EPOCHS[size]} epoch(s), seeds {', '.join(seeds)}, `--compile off`; "
               "a sanity check that the fast arithmetic does not move the kNN accuracy, not a benchmark.", ""]
    s.lines += _md_table(["precision", "kNN top-1 per seed", "mean", "final loss per seed", "recorded"], rows)
    return s


_PRECISION_EPOCHS = {"smoke": 1, "full": 8}
_PRECISION_SIZES = {"smoke": (24, 12, 32), "full": (300, 100, 64)}  # train images, val images, crop


def _precision_runs(argv: list[str]) -> dict:
    """(in a child process) MoCo v2 runs per precision and seed; kNN top-1 and loss of the last epoch."""
    import csv
    import tempfile

    from benchmarks.tiny_data import write_pretrain
    from pretrain import main_moco

    device, size, *seeds = argv
    smoke = size == "smoke"
    root = Path(tempfile.mkdtemp(prefix="precision_"))
    n_train, n_val, crop = _PRECISION_SIZES[size]
    data = write_pretrain(root, {"train": n_train, "val": n_val}, 0)
    out: dict = {}
    for mode in ("fast", "paper"):
        knn, loss, rec = [], [], ""
        for seed in seeds:
            od = root / f"{mode}-{seed}"
            last = main_moco.main([str(data / "train"), "-a", "resnet18", "--preset", "v2", "--epochs",
                                   str(_PRECISION_EPOCHS[size]), "-b", "8" if smoke else "32", "--lr", "0.06",
                                   "--moco-k", "64" if smoke else "1024", "--crop-size", str(crop),
                                   "--seed", seed, "-j", "0" if smoke else "4", "--output-dir", str(od), "--no-tensorboard",
                                   "--knn-val", str(data / "val"), "--knn-every", "100", "--precision", mode, "--compile", "off",
                                   "--device", device, "-p", "1000"])
            with open(od / "epochs.csv") as f:
                rows = list(csv.DictReader(f))
            knn.append(float(rows[-1]["knn_top1"]))
            loss.append(float(rows[-1]["loss"]))
            p = torch.load(last, map_location="cpu", weights_only=True)["suite"]["precision"]
            rec = f"{p['autocast'] or 'fp32'}, TF32 {'on' if p['tf32'] else 'off'}"
        out[mode] = {"knn_top1": knn, "final_loss": loss, "precision": rec}
    return out


SECTION_FUNCS = {"env": environment, "tests": gpu_tests, "pretrain": pretraining, "finetune": finetuning,
                 "dist": distributed, "precision": precision_check}


# ----------------------------------------------------------------------------- report

def device_name(device: str) -> str:
    return torch.cuda.get_device_name(0) if device == "cuda" and torch.cuda.is_available() else f"CPU ({platform.machine()})"


def render(sections: list[Section], device: str, started: datetime, seconds: float, smoke: bool) -> str:
    """The Markdown report."""
    name = device_name(device)
    status = {"ok": "ok", "partial": "targets not met", "failed": "FAILED", "skipped": "skipped"}
    out = [f"# GPU check: {name}", "",
           f"Date: {started.strftime('%Y-%m-%d %H:%M UTC')}. Command: `make gpu-check` "
           f"(`python -m benchmarks.gpu_check{' --device cpu --smoke' if smoke else ''}`), {seconds / 60:.1f} min.", ""]
    if smoke:
        out += ["**Smoke run at toy sizes on the CPU: exercises every section; none of its figures says anything about GPUs.**", ""]
    out += _md_table(["section", "result", "time"], [[SHORT[s.key], status[s.status], f"{s.seconds:.0f} s"] for s in sections])
    for s in sections:
        out += ["", f"## {s.title}", "", *s.lines]
    return "\n".join(out) + "\n"


def report_path(out_dir: Path, device: str, started: datetime) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device_name(device)).strip("-").lower()
    return out_dir / f"{started.strftime('%Y-%m-%d')}-{slug}.md"


def run(ctx: Context, sections: list[str], budget: float, on_section=None) -> list[Section]:
    """Run ``sections`` in order; ``on_section(done)`` after each (the report is rewritten, so a killed run keeps it)."""
    done = []
    for i, key in enumerate(sections):
        reserved = sum(SHARES[k] for k in sections[i + 1:]) / sum(SHARES[k] for k in sections) * budget
        ctx.section_deadline = ctx.deadline - reserved
        t0 = time.perf_counter()
        title = key
        try:
            if ctx.remaining() < 10 and key != "env":
                sec = Section(key, key, "skipped", ["skipped: this section's share of the time budget is spent"])
            else:
                sec = SECTION_FUNCS[key](ctx)
        except Exception as e:  # one line in the report; the other sections still run
            sec = Section(key, title, "failed", [f"error: {type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"])
        sec.seconds = time.perf_counter() - t0
        if sec.title == key:
            sec.title = SHORT[key].capitalize()
        ctx.log(f"[gpu-check] {SHORT[key]}: {sec.status} ({sec.seconds:.0f} s)")
        done.append(sec)
        if on_section:
            on_section(done)
    ctx.section_deadline = None
    return done


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--smoke", action="store_true", help="toy sizes (for the CPU test of this script)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "gpu-check", help="report folder (default docs/gpu-check)")
    p.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for all sections (default 600)")
    p.add_argument("--datasets", type=Path, default=None, help="tiny datasets root to reuse (default: generated)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu-check: error: no CUDA device visible (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
              "run it on a GPU machine (docs/gpu.md)", file=sys.stderr)
        return 2
    sections = [x.strip() for x in a.sections.split(",") if x.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        print(f"gpu-check: error: unknown section(s) {', '.join(sorted(unknown))} (choose from {','.join(SECTIONS)})", file=sys.stderr)
        return 2
    started = datetime.now(timezone.utc)
    ctx = Context(a.device, a.smoke, time.monotonic() + a.budget, a.datasets)
    t0 = time.perf_counter()
    a.out.mkdir(parents=True, exist_ok=True)
    path = report_path(a.out, a.device, started)

    def write(done: list[Section], final: bool = False) -> str:
        text = render(done, a.device, started, time.perf_counter() - t0, a.smoke)
        if not final:
            text += f"\n_Incomplete: {len(done)} of {len(sections)} sections so far._\n"
        path.write_text(text)
        path.with_suffix(".json").write_text(json.dumps({s.key: {"status": s.status, "seconds": round(s.seconds, 1), "data": s.data}
                                                         for s in done}, indent=1, default=str))
        if FAILURE_LOGS:  # what the failing child processes printed, for whoever fixes them
            path.with_suffix(".log").write_text("".join(FAILURE_LOGS))
        return text

    done = run(ctx, sections, a.budget, on_section=write)
    print(write(done, final=True))
    print(f"[gpu-check] report written to {path}")
    return 0 if all(s.status in ("ok", "partial", "skipped") for s in done) else 1


if __name__ == "__main__":
    sys.exit(main())
