"""Multi-process checks on one machine: DDP, Detectron2's SyncBN / naiveSyncBN, MoCo's shuffling BN.

    python -m benchmarks.dist_check                 # on GPUs: NCCL world 1 (and 2 with two GPUs), gloo on CUDA
    python -m benchmarks.dist_check --device cpu    # the same checks over gloo on the CPU

Each check runs in fresh processes (``torch.multiprocessing``; a hung collective is killed after a
timeout) and verifies a property, not just that nothing crashed:

* ``ddp``: a small MLP under ``DistributedDataParallel``, each process on its own shard: after three
  SGD steps the weights are identical on every rank and equal to one process training on the whole
  batch (gradients are averaged across processes);
* ``SyncBN`` / ``naiveSyncBN`` (``detectron2.layers.get_norm``): each rank normalises its own shard;
  the outputs and running means equal one BatchNorm over the concatenated batch;
* ``moco-shuffle`` (``run_moco_shuffle``): ``pretrain/main_moco.py`` on 2 processes (cross-process
  shuffling BN, key gather, queue) gives the losses of the 1-process ``--bn-splits 2`` emulation;
* ``moco-v3-syncbn`` (``run_moco_v3``, CUDA only): MoCo v3 ViT on 2 processes with SyncBN gives the losses of
  1 process on the whole batch.

Rank r uses GPU r modulo the GPUs visible. NCCL needs one GPU per rank (it refuses two ranks on one
device: "Duplicate GPU detected" in older releases, "invalid usage" in NCCL 2.28.9 on an H200, measured
2026-12-04), so with one GPU it is checked at world size 1 only and the two-process runs use gloo with
CUDA tensors (collectives staged through host memory); with two GPUs or more, NCCL also runs at world
size 2. torch's ``SyncBatchNorm`` needs CUDA tensors (not checked on the CPU).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.distributed as dist
import torch.nn as nn

from core.cli import ArgumentParser

REPO = Path(__file__).resolve().parents[1]


def _gather(t: torch.Tensor) -> list[torch.Tensor]:
    """All ranks' ``t`` (host copies), any backend."""
    t = t.detach().contiguous()
    if dist.get_backend() != "nccl":
        t = t.cpu()
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t)
    return [p.cpu() for p in parts]


def _data(world: int, per_rank: int, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn((world * per_rank, *shape), generator=torch.Generator().manual_seed(seed))


def check_ddp(rank: int, world: int, device: torch.device) -> dict:
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    ref = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    ref.load_state_dict(net.state_dict())
    ddp = DistributedDataParallel(net.to(device), device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    x, y = _data(world, 4, (16,), 1), _data(world, 4, (4,), 2)
    for _ in range(3):
        opt.zero_grad()
        ((ddp(x[rank * 4:(rank + 1) * 4].to(device)) - y[rank * 4:(rank + 1) * 4].to(device)) ** 2).mean().backward()
        opt.step()
        ref_opt.zero_grad()
        ((ref(x) - y) ** 2).mean().backward()  # one process, whole batch
        ref_opt.step()
    flat = torch.cat([p.detach().flatten() for p in net.parameters()])
    ranks = _gather(flat)
    same = max(float((r - ranks[0]).abs().max()) for r in ranks)
    ref_flat = torch.cat([p.detach().flatten() for p in ref.parameters()])
    return {"max_diff_between_ranks": same, "max_diff_to_one_process": float((flat.cpu() - ref_flat).abs().max())}


def check_norm(norm: str):
    def run(rank: int, world: int, device: torch.device) -> dict:
        from detectron2.layers import get_norm

        torch.manual_seed(0)
        bn = get_norm(norm, 8).to(device).train()
        x = _data(world, 4, (8, 5, 5), 3) * 2 + 1
        out = bn(x[rank * 4:(rank + 1) * 4].to(device))
        ref = nn.BatchNorm2d(8).train()
        ref_out = ref(x)[rank * 4:(rank + 1) * 4]
        means = _gather(bn.running_mean)
        return {"module": type(bn).__name__, "max_output_diff": float((out.detach().cpu() - ref_out.detach()).abs().max()),
                "max_running_mean_diff": float((bn.running_mean.detach().cpu() - ref.running_mean).abs().max()),
                "ranks_agree": max(float((m - means[0]).abs().max()) for m in means)}
    return run


CHECKS = {"ddp": check_ddp, "SyncBN": check_norm("SyncBN"), "naiveSyncBN": check_norm("naiveSyncBN")}
TOL = {"ddp": 1e-5, "SyncBN": 1e-4, "naiveSyncBN": 1e-4}


def _worker(rank: int, names: list[str], world: int, port: int, backend: str, device_kind: str, out: str) -> None:
    """One process: join the group, run each check in turn, write ``rank<r>.json`` ({check: result | error})."""
    if device_kind == "cpu":
        torch.set_num_threads(1)
    results: dict[str, dict] = {}
    try:
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", world_size=world, rank=rank)
        device = torch.device("cuda", rank % torch.cuda.device_count()) if device_kind == "cuda" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        for name in names:
            try:
                results[name] = CHECKS[name](rank, world, device)
                dist.barrier()
            except Exception as e:
                results[name] = {"error": _one_line(e)}
                break  # a failed collective can leave the group unusable
    except Exception as e:
        results = {n: {"error": _one_line(e)} for n in names}
    finally:
        Path(out, f"rank{rank}.json").write_text(json.dumps(results))
        if dist.is_initialized():
            dist.destroy_process_group()


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"


def run_checks(names: list[str], world: int, backend: str, device_kind: str, timeout: float = 120) -> list[dict]:
    """Run ``names`` in one group of ``world`` fresh processes; one result dict per check
    ({"check", "world", "backend", "device", "ok", "detail"|"error", "seconds"})."""
    from pretrain.distributed import free_port

    out = tempfile.mkdtemp(prefix="dist_check_")
    t0 = time.perf_counter()
    base = {"world": world, "backend": backend, "device": device_kind}
    ctx = torch.multiprocessing.start_processes(_worker, args=(names, world, free_port(), backend, device_kind, out),
                                                nprocs=world, join=False, start_method="spawn")
    deadline, failure = time.monotonic() + timeout, None
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                failure = f"timed out after {timeout:.0f} s (a collective hung)"
                break
    except Exception as e:  # a process died without writing its result
        failure = str(e).splitlines()[0][:300]
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.kill()
    seconds = round(time.perf_counter() - t0, 1)
    per_rank = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(world) if Path(out, f"rank{r}.json").exists()]
    report = []
    for name in names:
        res = [r[name] for r in per_rank if name in r]
        errors = [r["error"] for r in res if "error" in r]
        entry = {"check": name, **base, "seconds": seconds}
        if errors or len(res) < world:
            report.append({**entry, "ok": False, "error": errors[0] if errors else (failure or "a process wrote no result")})
            continue
        worst = {k: max(float(r[k]) for r in res) for k in res[0] if k != "module"}
        report.append({**entry, "ok": all(v <= TOL[name] for v in worst.values()), "detail": worst,
                       **({"module": res[0]["module"]} if "module" in res[0] else {})})
    return report


# --- MoCo's shuffling BN across processes -------------------------------------------------------------
def _losses(folder: Path) -> list[float]:
    with open(folder / "metrics.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def run_moco_shuffle(device_kind: str, backend: str, work: Path | None = None, arch: str = "resnet18", crop: int = 64,
                     timeout: float = 300) -> dict:
    """2-process ``main_moco`` (``--world-size 2 --rank r``, both on GPU 0 / the CPU) vs the 1-process emulation."""
    common = ["-a", arch, "--crop-size", str(crop), "--moco-k", "64"]
    return _two_vs_one("moco-shuffle", device_kind, backend, common, ["--bn-splits", "2"], crop, work, timeout)


def run_moco_v3(device_kind: str, backend: str, work: Path | None = None, timeout: float = 300) -> dict:
    """MoCo v3 (a ViT, BN in its MLP heads) on 2 processes with SyncBN vs 1 process on the whole batch: the keys are
    gathered across processes and SyncBN normalises over the global batch, so both give the same losses. CUDA only
    (torch's SyncBatchNorm); on the CPU, tests/test_pretrain_v3_distributed.py checks the rest."""
    common = ["--preset", "v3-vit", "-a", "vit_tiny", "--crop-size", "32", "--moco-mlp-dim", "64",
              "--warmup-epochs", "0"]
    return _two_vs_one("moco-v3-syncbn", device_kind, backend, common, [], 32, work, timeout)


def _two_vs_one(check: str, device_kind: str, backend: str, recipe: list[str], one_extra: list[str], crop: int,
                work: Path | None, timeout: float) -> dict:
    """``main_moco`` with ``recipe`` on 2 processes and on 1 (plus ``one_extra``): the same 3 losses."""
    from pretrain.distributed import free_port
    from pretrain.synthetic import write_image_folder

    work = Path(work or tempfile.mkdtemp(prefix=f"{check}_"))
    data = write_image_folder(work / "data", classes=2, per_class=12, size=crop + 8)
    common = [*recipe, "-b", "8", "--workers", "0", "-p", "100",
              "--no-tensorboard", "--seed", "5", "--epochs", "1", "--max-iters", "3", "--precision", "paper",
              "--compile", "off", "--channels-last", "off", "--deterministic", "--data-backend", "pil",
              "--device", device_kind, *(["--gpu", "0"] if device_kind == "cuda" else [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    cmd = [sys.executable, "-m", "pretrain.main_moco"]
    t0 = time.perf_counter()
    base = {"check": check, "world": 2, "backend": backend, "device": device_kind}
    url = f"tcp://127.0.0.1:{free_port()}"
    procs = [subprocess.Popen([*cmd, *common, "--world-size", "2", "--rank", str(r), "--dist-url", url, "--dist-backend", backend,
                               "--output-dir", str(work / "two"), str(data)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    try:
        errs = [p.communicate(timeout=timeout)[1] for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        return {**base, "ok": False, "error": f"timed out after {timeout:.0f} s"}
    if any(p.returncode for p in procs):
        err = next(e for p, e in zip(procs, errs) if p.returncode)
        return {**base, "ok": False, "error": (err.strip().splitlines() or ["?"])[-1][:300]}
    one = subprocess.run([*cmd, *common, *one_extra, "--output-dir", str(work / "one"), str(data)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=timeout)
    if one.returncode:
        return {**base, "ok": False, "error": (one.stderr.strip().splitlines() or ["?"])[-1][:300]}
    two, single = _losses(work / "two"), _losses(work / "one")
    rel = max(abs(a - b) / max(abs(b), 1e-6) for a, b in zip(two, single)) if len(two) == len(single) == 3 else float("inf")
    tol = 1e-4 if device_kind == "cpu" else 1e-3
    return {**base, "ok": rel <= tol, "detail": {"max_rel_loss_diff": rel, "tolerance": tol, "losses_2proc": two, "losses_1proc": single},
            "seconds": round(time.perf_counter() - t0, 1)}


def plan(device_kind: str, gpus: int | None = None) -> list[tuple[list[str], int, str]]:
    """(checks, processes, backend) groups. GPU: NCCL at world 1, NCCL at world 2 when there are two GPUs
    (one rank per GPU), and 2 processes over gloo with CUDA tensors. CPU: gloo, 2 processes (torch's
    SyncBatchNorm is CUDA-only)."""
    if device_kind == "cuda":
        gpus = torch.cuda.device_count() if gpus is None else gpus
        norms = ["ddp", "SyncBN", "naiveSyncBN"]
        return [(norms, 1, "nccl"), *([(norms, 2, "nccl")] if gpus >= 2 else []), (norms, 2, "gloo")]
    return [(["ddp", "naiveSyncBN"], 2, "gloo")]


def all_checks(device_kind: str, timeout: float = 120, moco: bool = True) -> list[dict]:
    out = [r for names, world, backend in plan(device_kind) for r in run_checks(names, world, backend, device_kind, timeout)]
    if moco:
        out.append(run_moco_shuffle(device_kind, "gloo"))
        if device_kind == "cuda":  # SyncBN: CUDA tensors only
            out.append(run_moco_v3(device_kind, "gloo"))
    return out


def format_lines(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        what = f"{r['check']}{' (' + r['module'] + ')' if r.get('module') else ''}, {r['world']} process(es), {r['backend']}, {r.get('device', '')}"
        if r["ok"]:
            lines.append(f"  PASS {what}: {json.dumps(r['detail'])} ({r.get('seconds', '?')} s)")
        else:
            lines.append(f"  FAIL {what}: {r.get('error') or json.dumps(r.get('detail'))}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="dist_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--no-moco", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("dist_check: error: no CUDA device visible; pass --device cpu", file=sys.stderr)
        return 2
    res = all_checks(a.device, a.timeout, not a.no_moco)
    print(json.dumps(res) if a.json else "\n".join(format_lines(res)))
    return 0 if all(r["ok"] for r in res) else 1


if __name__ == "__main__":
    sys.exit(main())
