"""Process-group launch (single process, spawned local processes, torchrun / SLURM env, manual ranks)
and the few collectives MoCo needs.

Launch modes, decided by :func:`launch` in this order:

* environment (``torchrun``, ``submitit``'s ``TorchDistributedEnvironment``): ``RANK``/``WORLD_SIZE``/
  ``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT`` are set and ``--dist-url`` is unset or ``env://``;
* ``--multiprocessing-distributed``: as in the reference code, one process per GPU on this node
  (``--world-size`` nodes, this is node ``--rank``); on a CPU-only machine ``--world-size`` local
  processes (or ``--nproc-per-node`` per node for several CPU nodes);
* ``--world-size N --rank R --dist-url URL``: one process per call, started by the user;
* otherwise a single process (one GPU, ``--gpu``, or the CPU).

Backend: NCCL on GPUs, gloo on the CPU (``--dist-backend`` overrides).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    """Where this process runs: its global rank, the world size, its local rank and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


class LaunchError(Exception):
    """A launch configuration that cannot work; one-line message."""


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


@torch.no_grad()
def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from all processes along dim 0, in rank order (no gradient flows back)."""
    if not is_distributed():
        return t
    t = t.contiguous()
    if t.is_cuda and dist.get_backend() != "nccl":  # gloo gathers host memory only (e.g. 2 processes on one GPU)
        return all_gather_cat(t.cpu()).to(t.device)
    if dist.get_backend() == "nccl":
        out = t.new_empty((get_world_size() * t.shape[0], *t.shape[1:]))
        dist.all_gather_into_tensor(out, t)
        return out
    parts = [torch.empty_like(t) for _ in range(get_world_size())]
    dist.all_gather(parts, t)
    return torch.cat(parts)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward hands each process the summed gradient of its own rows."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.rows = t.shape[0]
        parts = [torch.empty_like(t) for _ in range(get_world_size())]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        # Every process's loss may depend on every process's rows: sum the gradients over processes
        # (an all-reduce works on every backend; reduce-scatter does not on gloo), keep our block.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        r = get_rank()
        return grad[r * ctx.rows:(r + 1) * ctx.rows]


def all_gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from all processes along dim 0, in rank order; gradients flow back to each owner."""
    return _GatherWithGrad.apply(t) if is_distributed() else t


def broadcast_(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    """In-place broadcast from ``src`` (no-op on one process)."""
    if is_distributed():
        dist.broadcast(t, src)
    return t


def all_reduce_mean_(t: torch.Tensor) -> torch.Tensor:
    """In-place mean over processes (no-op on one process)."""
    if is_distributed():
        dist.all_reduce(t)
        t /= get_world_size()
    return t


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def free_port() -> int:
    """A TCP port that is free on this host right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def use_cuda(args: argparse.Namespace) -> bool:
    """Whether to run on GPUs: ``--device`` auto|cpu|cuda (``--gpu`` implies cuda)."""
    device = getattr(args, "device", "auto")
    if device == "cpu":
        return False
    if device == "cuda" or getattr(args, "gpu", None) is not None:
        if not torch.cuda.is_available():
            raise LaunchError("a GPU was requested (--device cuda / --gpu) but CUDA is not available; use --device cpu")
        return True
    return torch.cuda.is_available()


def _set_cpu_threads(local_procs: int) -> None:
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_procs))


def _init(backend: str | None, cuda: bool, init_method: str, world_size: int, rank: int) -> None:
    dist.init_process_group(backend or ("nccl" if cuda else "gloo"), init_method=init_method,
                            world_size=world_size, rank=rank)


def _device(cuda: bool, local_rank: int) -> torch.device:
    if not cuda:
        return torch.device("cpu")
    index = local_rank % max(1, torch.cuda.device_count())  # one visible GPU per task: index 0
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def _spawned(local_rank: int, worker: Callable[[DistContext, Any], Any], cfg: Any, nprocs: int,
             world_size: int, node_rank: int, dist_url: str, backend: str | None, cuda: bool) -> None:
    rank = node_rank * nprocs + local_rank
    if not cuda:
        _set_cpu_threads(nprocs)
    try:
        _init(backend, cuda, dist_url, world_size, rank)
        ctx = DistContext(rank, world_size, local_rank, _device(cuda, local_rank), nprocs)
        worker(ctx, cfg)
    except Exception as e:  # one line per failing process instead of a traceback from every rank
        if getattr(cfg, "debug", False):
            raise
        print(f"error (rank {rank}): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        sys.exit(2)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(worker: Callable[[DistContext, Any], Any], args: argparse.Namespace) -> Any:
    """Run ``worker(ctx, args)`` in the launch mode the flags and environment ask for.

    Returns the worker's result in the current process (rank 0's when this process is rank 0), or None
    when the work ran in spawned children.
    """
    cuda = use_cuda(args)
    backend = getattr(args, "dist_backend", None)
    url = getattr(args, "dist_url", None)
    env_ws = int(os.environ.get("WORLD_SIZE", "1"))
    if "RANK" in os.environ and env_ws > 1 and url in (None, "env://"):
        local, local_ws = int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        if not cuda:
            _set_cpu_threads(local_ws)
        _init(backend, cuda, "env://", env_ws, int(os.environ["RANK"]))
        try:
            return worker(DistContext(dist.get_rank(), env_ws, local, _device(cuda, local), local_ws), args)
        finally:
            dist.destroy_process_group()
    if getattr(args, "multiprocessing_distributed", False):
        per_node = getattr(args, "nproc_per_node", None)
        if cuda:
            nprocs, nodes = torch.cuda.device_count(), args.world_size
        elif per_node:
            nprocs, nodes = per_node, args.world_size
        else:  # CPU: --world-size local processes on this one node
            nprocs, nodes = args.world_size, 1
        node_rank = args.rank if nodes > 1 else 0
        if nodes > 1 and (url is None or node_rank < 0):
            raise LaunchError("several nodes need --dist-url tcp://HOST:PORT and --rank NODE_INDEX")
        url = url or f"tcp://127.0.0.1:{free_port()}"
        torch.multiprocessing.spawn(_spawned, nprocs=nprocs, join=True,
                                    args=(worker, args, nprocs, nprocs * nodes, node_rank, url, backend, cuda))
        return None
    if args.world_size > 1:
        if url is None or args.rank < 0:
            raise LaunchError("--world-size > 1 without --multiprocessing-distributed needs --rank and --dist-url")
        local = args.gpu if args.gpu is not None else (args.rank % max(1, torch.cuda.device_count()))
        _init(backend, cuda, url, args.world_size, args.rank)
        try:
            local_ws = torch.cuda.device_count() if cuda else 1
            return worker(DistContext(args.rank, args.world_size, local, _device(cuda, local), local_ws), args)
        finally:
            dist.destroy_process_group()
    return worker(DistContext(0, 1, args.gpu or 0, _device(cuda, args.gpu or 0)), args)
