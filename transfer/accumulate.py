"""Gradient accumulation: the paper's batch of 16 on GPUs that cannot hold 16 / (number of GPUs) images.

Each iteration still reads the full per-process share of the global batch (``SOLVER.IMS_PER_BATCH`` /
processes) and takes one optimizer step, but runs it as ``SOLVER.ACCUMULATE_STEPS`` forward/backward
passes on consecutive slices, each loss divided by the number of slices, so the gradient is the mean over
the whole batch as in the paper. What does change: batch-norm statistics are computed over each slice (a
BN batch of ``IMS_PER_BATCH / ACCUMULATE_STEPS``, synchronized across GPUs), which is why the fingerprint
records the value and ``results`` footnotes it. With DDP the gradients are all-reduced once, on the last
slice.
"""

from __future__ import annotations

import contextlib
import time

import torch
from detectron2.engine import SimpleTrainer
from torch.nn.parallel import DistributedDataParallel


def split(batch: list, parts: int) -> list[list]:
    """``batch`` in ``parts`` consecutive slices of equal size."""
    if len(batch) % parts:
        raise ValueError(f"a batch of {len(batch)} images per process cannot be split into {parts} equal slices")
    size = len(batch) // parts
    return [batch[i * size:(i + 1) * size] for i in range(parts)]


class AccumulatingTrainer(SimpleTrainer):
    """``SimpleTrainer`` (or AMP, with ``amp=True``) taking one optimizer step per ``steps`` slices."""

    def __init__(self, model, data_loader, optimizer, steps: int, amp: bool = False) -> None:
        super().__init__(model, data_loader, optimizer)
        self.steps = steps
        self.amp = amp
        self.grad_scaler = torch.amp.GradScaler("cuda") if amp else None

    def run_step(self) -> None:
        assert self.model.training, "[AccumulatingTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        self.optimizer.zero_grad()
        totals: dict[str, torch.Tensor] = {}
        slices = split(data, self.steps)
        for i, part in enumerate(slices):
            last = i == len(slices) - 1
            sync = (self.model.no_sync() if isinstance(self.model, DistributedDataParallel) and not last
                    else contextlib.nullcontext())
            with sync, torch.autocast("cuda", enabled=self.amp):
                loss_dict = self.model(part)
                losses = sum(loss_dict.values()) / self.steps
                (self.grad_scaler.scale(losses) if self.amp else losses).backward()
            for k, v in loss_dict.items():
                totals[k] = totals.get(k, 0) + v.detach() / self.steps
        self.after_backward()
        self._write_metrics(totals, data_time)
        if self.amp:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()

    def state_dict(self) -> dict:
        ret = super().state_dict()
        if self.grad_scaler is not None:
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        if self.grad_scaler is not None and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
