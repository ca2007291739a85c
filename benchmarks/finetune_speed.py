"""Fine-tuning speed and memory: seconds per iteration and peak GPU memory of a Detectron2 config.

    python -m benchmarks.finetune_speed --config voc/voc_R_50_C4_24k_rgb.yaml [--batch 16] [--iters 8] [--json]
    python -m benchmarks.finetune_speed --config tiny/voc_R_18_C4_tiny.yaml --device cpu --smoke

For each mode -- ``fp32-tf32off`` (the paper's arithmetic), ``fp32-tf32on`` (PyTorch's default for
convolutions, also for matmuls here) and ``amp`` (Detectron2's ``SOLVER.AMP.ENABLED``: fp16 autocast
+ gradient scaler, TF32 on) -- the config's own model, optimizer and training data loader are built
(Detectron2's ``SimpleTrainer`` / ``AMPTrainer``, exactly what ``transfer/train_net.py`` runs), and
``--iters`` steps are timed after ``--warmup``. Data: the generated tiny datasets in the real layouts
(``benchmarks/tiny_data.py``), resized by the config's own ``ResizeShortestEdge`` to the protocol's
input sizes (e.g. 480-800 px short side for VOC), so the model sees full-size inputs; decoding the small
JPEGs is cheaper than real photos. Loader workers: ``--workers`` or auto (CPUs per GPU, at most 16).
A batch that does not fit is halved (and said). Peak memory: ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from core.cli import ArgumentParser

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "transfer" / "configs"
MODES = ("fp32-tf32off", "fp32-tf32on", "amp")


def auto_workers(gpus: int = 1) -> int:
    """Loader workers per training process: the CPUs per GPU, between 2 and 16."""
    return max(2, min(16, (os.cpu_count() or 2) // max(1, gpus)))


def _ensure_datasets(root: Path | None) -> Path:
    """The tiny datasets root (generated once); sets ``DETECTRON2_DATASETS`` before Detectron2 is imported."""
    if root is None:
        root = Path(tempfile.gettempdir()) / "moco_bench_tiny_datasets"
    if "detectron2.data" in sys.modules and os.environ.get("DETECTRON2_DATASETS") != str(root):
        root = Path(os.environ["DETECTRON2_DATASETS"])  # datasets already registered under this root
    if not (root / ".complete").exists():
        from benchmarks.tiny_data import generate

        generate(root)
    os.environ["DETECTRON2_DATASETS"] = str(root)
    return root


def _set_tf32(on: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def measure_mode(config: Path, mode: str, batch: int, iters: int, warmup: int, workers: int, device: str,
                 out: Path, extra: list[str]) -> dict:
    """s/iter and peak memory of ``config`` in ``mode`` at ``batch`` images per iteration (one process)."""
    from detectron2.engine import AMPTrainer, SimpleTrainer
    from detectron2.utils.events import EventStorage

    from transfer.trainer import Trainer, check_amp, load_cfg

    amp = mode == "amp"
    cfg = load_cfg(str(config), ["MODEL.WEIGHTS", "", "SOLVER.IMS_PER_BATCH", str(batch), "SOLVER.AMP.ENABLED", str(amp),
                                 "DATALOADER.NUM_WORKERS", str(workers), "MODEL.DEVICE", device, "OUTPUT_DIR", str(out),
                                 *extra])
    check_amp(cfg)
    cuda = device.startswith("cuda")
    if cuda:
        _set_tf32(mode != "fp32-tf32off")
        torch.backends.cudnn.benchmark = False  # Detectron2's default (CUDNN_BENCHMARK False)
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = Trainer.build_model(cfg)
    optimizer = Trainer.build_optimizer(cfg, model)
    loader = Trainer.build_train_loader(cfg)
    trainer = (AMPTrainer if amp else SimpleTrainer)(model, loader, optimizer)
    times = []
    try:
        with EventStorage(0) as storage:
            for i in range(warmup + iters):
                storage.iter = trainer.iter = i
                if cuda:
                    torch.cuda.synchronize()
                t = time.perf_counter()
                trainer.run_step()
                if cuda:
                    torch.cuda.synchronize()
                if i >= warmup:
                    times.append(time.perf_counter() - t)
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        reserved = torch.cuda.max_memory_reserved() / 2**30 if cuda else None
    finally:
        del trainer, loader, optimizer, model
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return {"mode": mode, "batch": batch, "s_per_iter": statistics.median(times), "mean_s_per_iter": statistics.mean(times),
            "peak_alloc_gib": peak, "peak_reserved_gib": reserved}


def measure(config: Path, modes: list[str], batch: int, iters: int, warmup: int, workers: int, device: str,
            extra: list[str] | None = None) -> dict:
    """Every mode of ``config``; an out-of-memory batch is halved until it fits (or reaches 1)."""
    out = Path(tempfile.mkdtemp(prefix="ft_speed_"))
    res = {"config": str(config.relative_to(CONFIGS) if config.is_relative_to(CONFIGS) else config), "requested_batch": batch,
           "workers": workers, "iters": iters, "warmup": warmup, "device": device, "modes": []}
    for mode in modes:
        if mode == "amp" and not device.startswith("cuda"):
            res["modes"].append({"mode": mode, "error": "Detectron2's AMP needs CUDA"})
            continue
        b = batch
        while True:
            try:
                res["modes"].append(measure_mode(config, mode, b, iters, warmup, workers, device, out, extra or []))
                break
            except torch.cuda.OutOfMemoryError:
                if b == 1:
                    res["modes"].append({"mode": mode, "error": "out of memory at batch 1"})
                    break
                b //= 2
            except Exception as e:  # report one line per mode, keep measuring the others
                res["modes"].append({"mode": mode, "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"})
                break
    return res


def format_lines(res: dict) -> list[str]:
    lines = [f"{res['config']}: batch {res['requested_batch']}, {res['workers']} loader workers, median of {res['iters']} "
             f"iterations after {res['warmup']}, {res['device']}"]
    for m in res["modes"]:
        if "error" in m:
            lines.append(f"  {m['mode']:13s} not measured: {m['error']}")
            continue
        mem = f"peak {m['peak_alloc_gib']:.1f} GiB allocated ({m['peak_reserved_gib']:.1f} reserved)" if m["peak_alloc_gib"] is not None else "peak memory n/a (CPU)"
        halved = f" (batch {m['batch']}: {res['requested_batch']} did not fit)" if m["batch"] != res["requested_batch"] else ""
        lines.append(f"  {m['mode']:13s} {m['s_per_iter']:.3f} s/iter  {mem}{halved}")
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="finetune_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="voc/voc_R_50_C4_24k_rgb.yaml", help="config under transfer/configs/ (or a path)")
    p.add_argument("--batch", type=int, default=16, help="images per iteration on this one device (paper: 16)")
    p.add_argument("--iters", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--workers", type=int, default=None, help="loader workers (default: auto)")
    p.add_argument("--modes", nargs="*", choices=MODES, default=list(MODES))
    p.add_argument("--device", default="cuda", help="cuda | cpu")
    p.add_argument("--datasets", type=Path, default=None, help="tiny datasets root (default: generated in the temp dir)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: batch 2, 1 step after 1")
    p.add_argument("--json", action="store_true")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="Detectron2 overrides after --")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("finetune_speed: error: no CUDA device visible; pass --device cpu (with --smoke for a quick run)", file=sys.stderr)
        return 2
    if a.smoke:
        a.batch, a.iters, a.warmup = 2, 1, 1
    config = Path(a.config) if Path(a.config).is_file() else CONFIGS / a.config
    if not config.is_file():
        print(f"finetune_speed: error: config not found: {a.config}", file=sys.stderr)
        return 2
    _ensure_datasets(a.datasets)
    workers = a.workers if a.workers is not None else (0 if a.smoke else auto_workers())
    opts = [o for o in a.opts if o != "--"]
    res = measure(config, list(a.modes), a.batch, a.iters, a.warmup, workers, a.device, opts)
    print(json.dumps(res) if a.json else "\n".join(format_lines(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
