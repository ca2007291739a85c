"""Speed of one MoCo training step: this implementation vs a plain reference-style loop vs the bare encoder.

    python pretrain/bench.py --arch resnet18 --batch-size 32 --crop-size 64 --iters 10

Three variants run on the same synthetic batch (data loading excluded). Their steps are timed
interleaved (round-robin, in one process) so that all see the same machine load; the median step
time is reported. Peak memory is measured per variant in a fresh process over three steps (GPU: peak
allocated; CPU: peak resident set size of the process, which includes the ~0.3-0.5 GB of the runtime):

* ``this``    -- ``pretrain.moco`` with the speed options (``--amp/--channels-last/--compile``, auto = on GPUs),
  fused/foreach SGD and momentum update, no queue copy, no per-step host sync;
* ``plain``   -- the same MoCo step written the way the reference code does it: fp32, a Python loop over
  parameters for the momentum update, ``queue.clone()`` in the logits, ``loss.item()``/top-k each step;
* ``encoder`` -- only the encoder's own work with the same speed options: query forward+backward, SGD
  step, key forward (no momentum update, shuffle, queue, logits).

Printed: images/s (one image = one query + one key crop) and peak memory per variant,
the ``this/plain`` speed ratio, and the MoCo overhead ``time(this) / time(encoder) - 1``.
Both MoCo variants use the same one-process shuffling-BN emulation (``--bn-splits``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.cli import ArgumentParser
from pretrain.moco import auto_bn_splits, build_encoder, build_moco, moco_loss, pretext_topk, set_bn_splits
from pretrain.resnets import ARCHS
from pretrain.speed import Speed, add_speed_args, resolve_speed, sgd

VARIANTS = ("this", "plain", "encoder")


class PlainMoCo(nn.Module):
    """MoCo written like the reference implementation (single device; fp32)."""

    def __init__(self, arch: str, dim: int, K: int, m: float, T: float, mlp: bool, bn_splits: int) -> None:
        super().__init__()
        self.K, self.m, self.T = K, m, T
        self.encoder_q = set_bn_splits(build_encoder(arch, dim, mlp), bn_splits)
        self.encoder_k = set_bn_splits(build_encoder(arch, dim, mlp), bn_splits)
        for pq, pk in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            pk.data.copy_(pq.data)
            pk.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(dim, K), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = F.normalize(self.encoder_q(im_q), dim=1)
        with torch.no_grad():
            for pq, pk in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
                pk.data = pk.data * self.m + pq.data * (1.0 - self.m)
            idx = torch.randperm(im_k.shape[0], device=im_k.device)
            k = F.normalize(self.encoder_k(im_k[idx]), dim=1)[torch.argsort(idx)]
        l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)
        l_neg = torch.einsum("nc,ck->nk", q, self.queue.clone().detach())
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        with torch.no_grad():
            ptr, n = int(self.queue_ptr), k.shape[0]
            self.queue[:, ptr:ptr + n] = k.T
            self.queue_ptr[0] = (ptr + n) % self.K
        return logits, labels


def _step_this(a: argparse.Namespace, speed: Speed, dev: torch.device) -> Callable[[torch.Tensor, torch.Tensor], None]:
    model = build_moco(a.arch, a.moco_dim, a.moco_k, 0.999, a.moco_t, a.mlp, a.bn_splits, speed.channels_last).to(
        dev, memory_format=speed.memory_format)
    opt = sgd(model.encoder_q.parameters(), 0.03, 0.9, 1e-4, dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=speed.use_scaler)
    if speed.compile:
        model.encoder_q.compile()
        model.encoder_k.compile()
    stats: list[torch.Tensor] = []

    def step(im_q: torch.Tensor, im_k: torch.Tensor) -> None:
        with torch.autocast(dev.type, dtype=speed.amp_dtype or torch.float32, enabled=speed.amp_dtype is not None):
            logits, keys = model(im_q, im_k)
        loss = moco_loss(logits)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        model.enqueue(keys)
        stats.append(torch.stack([loss.detach(), *pretext_topk(logits)]))
        if len(stats) > 100:
            stats.clear()

    return step


def _step_plain(a: argparse.Namespace, speed: Speed, dev: torch.device) -> Callable[[torch.Tensor, torch.Tensor], None]:
    if a.moco_k % a.batch_size:
        raise SystemExit("the plain loop (like the reference) needs --moco-k divisible by --batch-size")
    model = PlainMoCo(a.arch, a.moco_dim, a.moco_k, 0.999, a.moco_t, a.mlp, a.bn_splits).to(dev)
    opt = torch.optim.SGD(model.encoder_q.parameters(), 0.03, momentum=0.9, weight_decay=1e-4)
    crit = nn.CrossEntropyLoss()

    def step(im_q: torch.Tensor, im_k: torch.Tensor) -> None:
        logits, labels = model(im_q, im_k)
        loss = crit(logits, labels)
        _, pred = logits.topk(5, 1)
        (pred == labels[:, None]).float().sum().item()  # the reference's per-step accuracy meter
        loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def _step_encoder(a: argparse.Namespace, speed: Speed, dev: torch.device) -> Callable[[torch.Tensor, torch.Tensor], None]:
    enc_q = build_encoder(a.arch, a.moco_dim, a.mlp).to(dev, memory_format=speed.memory_format)
    enc_k = build_encoder(a.arch, a.moco_dim, a.mlp).to(dev, memory_format=speed.memory_format)
    for p in enc_k.parameters():
        p.requires_grad_(False)
    opt = sgd(enc_q.parameters(), 0.03, 0.9, 1e-4, dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=speed.use_scaler)
    if speed.compile:
        enc_q.compile()
        enc_k.compile()

    def step(im_q: torch.Tensor, im_k: torch.Tensor) -> None:
        with torch.autocast(dev.type, dtype=speed.amp_dtype or torch.float32, enabled=speed.amp_dtype is not None):
            q = enc_q(im_q.contiguous(memory_format=speed.memory_format))
            with torch.no_grad():
                enc_k(im_k.contiguous(memory_format=speed.memory_format))
        loss = q.float().square().mean()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def _device(a: argparse.Namespace) -> torch.device:
    cuda = a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available())
    return torch.device("cuda") if cuda else torch.device("cpu")


def _setup(a: argparse.Namespace, variant: str) -> tuple[Callable[[torch.Tensor, torch.Tensor], None], Speed]:
    dev = _device(a)
    speed = Speed(None, False, False, False, False) if variant == "plain" else resolve_speed(a, dev)
    torch.manual_seed(0)
    return {"this": _step_this, "plain": _step_plain, "encoder": _step_encoder}[variant](a, speed, dev), speed


def _batch(a: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    shape = (a.batch_size, 3, a.crop_size, a.crop_size)
    return torch.randn(shape, generator=g).to(_device(a)), torch.randn(shape, generator=g).to(_device(a))


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_variants(a: argparse.Namespace, variants: list[str]) -> dict[str, dict[str, float | str]]:
    """Median step time of each variant, steps interleaved round-robin so all see the same machine load."""
    dev = _device(a)
    steps = {v: _setup(a, v) for v in variants}
    im_q, im_k = _batch(a)
    for _ in range(a.warmup):
        for step, _ in steps.values():
            step(im_q, im_k)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(a.iters):
        for v, (step, _) in steps.items():
            _sync(dev)
            t = time.perf_counter()
            step(im_q, im_k)
            _sync(dev)
            times[v].append(time.perf_counter() - t)
    out: dict[str, dict[str, float | str]] = {}
    for v, ts in times.items():
        med = statistics.median(ts)
        out[v] = {"variant": v, "device": str(dev), "speed": steps[v][1].describe(), "median_s": med,
                  "images_per_s": a.batch_size / med}
    return out


def peak_memory(a: argparse.Namespace, variant: str) -> dict[str, float | str]:
    """Peak memory of a variant over one warm-up and two steps, in this (fresh) process."""
    dev = _device(a)
    step, _ = _setup(a, variant)
    im_q, im_k = _batch(a)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(3):
        step(im_q, im_k)
    _sync(dev)
    if dev.type == "cuda":
        return {"peak_mem_mb": torch.cuda.max_memory_allocated() / 2**20, "peak_kind": "GPU peak allocated"}
    return {"peak_mem_mb": _peak_rss_mb(), "peak_kind": "process peak RSS"}


def _peak_rss_mb() -> float:
    """Peak RSS of this process: VmHWM (reset by exec, unlike ru_maxrss, which a child inherits from its parent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="bench.py", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-a", "--arch", default="resnet50", choices=ARCHS)
    p.add_argument("-b", "--batch-size", type=int, default=32)
    p.add_argument("--crop-size", type=int, default=224)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--moco-k", type=int, default=65536)
    p.add_argument("--moco-dim", type=int, default=128)
    p.add_argument("--moco-t", type=float, default=0.07)
    p.add_argument("--mlp", action="store_true")
    p.add_argument("--bn-splits", type=int, default=None, help="default ~32 images per BN group")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--variants", nargs="*", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--no-memory", action="store_true", help="skip the per-variant peak-memory runs (fresh processes)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON line")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    add_speed_args(p)
    return p


def main(argv: list[str] | None = None) -> dict[str, dict[str, float | str]]:
    a = build_parser().parse_args(argv)
    if a.bn_splits is None:
        a.bn_splits = auto_bn_splits(a.batch_size)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a._child:
        print("BENCH " + json.dumps(peak_memory(a, a._child)), flush=True)
        return {}
    results = time_variants(a, list(a.variants))
    for v in results if not a.no_memory else ():
        argv_child = [x for x in (argv if argv is not None else sys.argv[1:]) if x != "--json"]
        out = subprocess.run([sys.executable, "-m", "pretrain.bench", *argv_child, "--_child", v], capture_output=True,
                             text=True, cwd=Path(__file__).resolve().parents[1])
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH ")), None)
        if out.returncode or line is None:
            raise SystemExit(f"bench.py: error: memory run of {v} failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
        results[v].update(json.loads(line[6:]))
    report(a, results)
    return results


def report(a: argparse.Namespace, r: dict[str, dict[str, float | str]]) -> None:
    if a.json:
        print(json.dumps(r))
        return
    first = next(iter(r.values()))
    print(f"{a.arch}, batch {a.batch_size}, crop {a.crop_size}, K {a.moco_k}, BN groups {a.bn_splits}, "
          f"{a.iters} interleaved timed steps after {a.warmup} warm-up, device {first['device']}, {torch.get_num_threads()} CPU threads")
    for v, x in r.items():
        mem = f"peak {x['peak_mem_mb']:8.0f} MiB ({x['peak_kind']})" if "peak_mem_mb" in x else "peak memory not measured"
        print(f"  {v:8s} {x['images_per_s']:9.1f} img/s  {1000 * x['median_s']:8.1f} ms/step  {mem}  [{x['speed']}]")
    if "this" in r and "plain" in r:
        print(f"  speed-up this/plain: {r['this']['images_per_s'] / r['plain']['images_per_s']:.2f}x")
    if "this" in r and "encoder" in r:
        print(f"  MoCo overhead over encoder fwd+bwd+key fwd: {100 * (r['this']['median_s'] / r['encoder']['median_s'] - 1):+.1f}%")


if __name__ == "__main__":
    main()
