"""A training data stream that is a pure function of (seed, iteration), so a resumed run sees what an
uninterrupted one would have seen.

Detectron2's default loader restarts its infinite shuffle from the beginning when a run resumes, and
its augmentations draw from each worker's global random state; a resumed trial therefore trains on
other images and crops than an uninterrupted one, and ends with other numbers. Here:

* **Order**: epoch ``e`` is a permutation of the dataset drawn from a generator seeded by ``(seed, e)``
  (with ``RepeatFactorTrainingSampler``'s per-image repeat factors, rounded stochastically per epoch as
  Detectron2 does); indices are grouped into global batches of ``SOLVER.IMS_PER_BATCH`` by aspect ratio
  (wide / tall, as ``AspectRatioGroupedDataset``), and rank ``r`` of ``W`` takes its slice of each global
  batch. Iteration ``N`` of a resumed run replays the index arithmetic (no image is read) and continues
  with global batch ``N``. The stream also does not depend on the number of data-loader workers.
* **Augmentation**: the mapper of sample ``j`` of batch ``N`` runs with Python/numpy/torch random states
  seeded from ``(seed, N, j)`` (restored afterwards), in any worker.
* **Training randomness** (proposal sampling, ...): :class:`SeedEachStep` reseeds every rank at each
  iteration from ``(seed, iteration, rank)``.

The sampling is statistically the same as Detectron2's (uniform epochs, the same grouping rule); what
differs is only which permutation a given seed produces. On GPUs, cuDNN algorithm choice and atomic
additions in some kernels remain non-deterministic, so GPU trials resumed or not differ in the last digits
(see docs/trust.md); on a CPU a resumed trial ends with the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from detectron2.engine import HookBase
from detectron2.utils import comm
from torch.utils.data import DataLoader, Dataset

logger = logging.getLogger(__name__)
_MIX = 0x9E3779B97F4A7C15


def derive_seed(*parts: int) -> int:
    """A 31-bit seed mixing integers (stable across processes and Python versions)."""
    h = 0x12345
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * _MIX + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class BatchPlan:
    """The infinite sequence of global batches (lists of dataset indices) for one seed."""

    def __init__(self, aspects: Sequence[int], batch_size: int, seed: int,
                 repeat_factors: Sequence[float] | None = None) -> None:
        if not len(aspects):
            raise ValueError("the training set is empty")
        self.aspects = list(aspects)  # bucket per image (0: wide, 1: tall; all 0 without grouping)
        self.batch_size = batch_size
        self.seed = seed
        self.repeat = None if repeat_factors is None else torch.as_tensor(repeat_factors, dtype=torch.float64)

    def _epoch(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        n = len(self.aspects)
        if self.repeat is None:
            return torch.randperm(n, generator=g).tolist()
        whole = torch.trunc(self.repeat)  # stochastic rounding of the repeat factors, as Detectron2
        reps = whole + (torch.rand(n, generator=g, dtype=torch.float64) < self.repeat - whole)
        indices = torch.repeat_interleave(torch.arange(n), reps.long())
        return indices[torch.randperm(len(indices), generator=g)].tolist()

    def batches(self, start: int = 0) -> Iterator[list[int]]:
        """Global batches ``start, start+1, ...`` (the ones before are computed and dropped)."""
        buckets: list[list[int]] = [[], []]
        emitted, epoch = 0, 0
        while True:
            for idx in self._epoch(epoch):
                bucket = buckets[self.aspects[idx]]
                bucket.append(idx)
                if len(bucket) == self.batch_size:
                    if emitted >= start:
                        yield list(bucket)
                    emitted += 1
                    bucket.clear()
            epoch += 1


class _BatchSampler:
    """Yields, per iteration, this rank's ``(iteration, slot, index)`` keys; ``start_iter`` is set on resume."""

    def __init__(self, plan: BatchPlan, rank: int, world_size: int) -> None:
        if plan.batch_size % world_size:
            raise ValueError(f"SOLVER.IMS_PER_BATCH {plan.batch_size} is not divisible by {world_size} processes")
        self.plan, self.rank, self.per_rank = plan, rank, plan.batch_size // world_size
        self.start_iter = 0

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        lo = self.rank * self.per_rank
        for it, batch in enumerate(self.plan.batches(self.start_iter), start=self.start_iter):
            yield [(it, lo + j, idx) for j, idx in enumerate(batch[lo:lo + self.per_rank])]

    def __len__(self) -> int:  # infinite; DataLoader only needs a value for its repr
        return 2**62


class _SeededMap(Dataset):
    """Maps ``dicts[index]`` with the random states seeded from ``(seed, iteration, slot)``."""

    def __init__(self, dicts: Sequence[dict], mapper: Callable[[dict], Any], seed: int) -> None:
        self.dicts, self.mapper, self.seed = dicts, mapper, seed

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        it, slot, index = key
        saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        try:
            for attempt in range(100):  # a mapper may drop a sample (e.g. no instance left after a crop)
                seed_everything(derive_seed(self.seed, it, slot, attempt))
                out = self.mapper(dict(self.dicts[index]))
                if out is not None:
                    return out
                index = (index + 7919) % len(self.dicts)
            raise RuntimeError(f"the mapper dropped 100 samples in a row at iteration {it}")
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])

    def __len__(self) -> int:
        return len(self.dicts)


def _aspects(dicts: Sequence[dict], grouping: bool) -> list[int]:
    if not grouping:
        return [0] * len(dicts)
    return [int(d.get("width", 1) <= d.get("height", 0)) for d in dicts]  # Detectron2: wide if w > h


def build_resumable_train_loader(cfg: Any, mapper: Callable[[dict], Any] | None = None) -> DataLoader:
    """Detectron2's training loader for ``cfg`` (same datasets, filtering, mapper, batch and workers) with the
    deterministic, resumable stream of the module doc. Set ``loader.batch_sampler.start_iter`` before the
    first batch to resume."""
    from detectron2.data import DatasetMapper
    from detectron2.data.build import _train_loader_from_config, trivial_batch_collator
    from detectron2.data.samplers import RepeatFactorTrainingSampler

    mapper = mapper or DatasetMapper(cfg, True)
    parts = _train_loader_from_config(cfg, mapper, sampler=object())  # dataset dicts, as Detectron2 builds them
    dicts = parts["dataset"]
    name = cfg.DATALOADER.SAMPLER_TRAIN
    repeat = None
    if name == "RepeatFactorTrainingSampler":
        repeat = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
            dicts, cfg.DATALOADER.REPEAT_THRESHOLD, sqrt=cfg.DATALOADER.REPEAT_SQRT).tolist()
    elif name != "TrainingSampler":
        raise ValueError(f"DATALOADER.SAMPLER_TRAIN {name!r} has no resumable version "
                         "(TrainingSampler and RepeatFactorTrainingSampler do)")
    plan = BatchPlan(_aspects(dicts, cfg.DATALOADER.ASPECT_RATIO_GROUPING), cfg.SOLVER.IMS_PER_BATCH, cfg.SEED, repeat)
    sampler = _BatchSampler(plan, comm.get_rank(), comm.get_world_size())
    logger.info(f"resumable training stream: {len(dicts)} images, {name}, global batch {plan.batch_size}, "
                f"{sampler.per_rank} per process, seed {cfg.SEED}")
    # The DataLoader draws a base seed when an iterator starts; its own generator keeps that draw out of
    # the global random state (a resumed run starts its iterator at another iteration).
    return DataLoader(_SeededMap(dicts, mapper, cfg.SEED), batch_sampler=sampler,
                      collate_fn=trivial_batch_collator, num_workers=cfg.DATALOADER.NUM_WORKERS,
                      generator=torch.Generator().manual_seed(cfg.SEED))


class SeedEachStep(HookBase):
    """Reseeds every rank before each iteration from ``(seed, iteration, rank)``."""

    def __init__(self, seed: int) -> None:
        self.seed, self.rank = seed, comm.get_rank()

    def before_step(self) -> None:
        seed_everything(derive_seed(self.seed, self.trainer.iter, self.rank, 0x57E9))
