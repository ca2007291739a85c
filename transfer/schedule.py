"""The epoch rule: a fine-tuning schedule sized from the number of training images.

The paper fine-tunes VOC for 24k iterations at batch 16 over trainval07+12 (16,551 images): ~23.2 epochs,
with the lr divided by 10 at 75% and ~91.7% of training. A training set of ``N`` images gets the same number
of epochs, ``epochs * N / batch`` iterations (rounded half up), and its lr steps at the same fractions of
training; the warm-up too keeps its share of training (100 of 24k iterations), so the lr follows the paper's
curve over the course of training, whatever the data size. Another batch scales the lr linearly and the
iterations inversely, as Detectron2's ``DefaultTrainer.auto_scale_workers`` does.

The reference (which protocol entry, how many images it trains on) is ``epoch_rule`` in
``transfer/configs/protocol.yaml``, and its values are that entry's; nothing here restates them.
``--train-fraction`` on the standard benchmarks applies the same rule to their own schedule: a subset of
``k`` of the ``N`` training images trains ``k / N`` of the iterations (:func:`rescale`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from transfer.protocol import paper_protocol, protocol_document


@dataclass(frozen=True)
class Schedule:
    """The solver values the epoch rule sets."""

    max_iter: int
    steps: tuple[int, ...]
    warmup: int
    batch: int
    base_lr: float

    def epochs(self, images: int) -> float:
        """Passes over ``images`` training images."""
        return self.max_iter * self.batch / images if images else float("inf")

    def opts(self) -> list[str]:
        """Detectron2 overrides setting this schedule."""
        return ["SOLVER.MAX_ITER", str(self.max_iter), "SOLVER.STEPS", "(" + "".join(f"{s}," for s in self.steps) + ")",
                "SOLVER.WARMUP_ITERS", str(self.warmup), "SOLVER.IMS_PER_BATCH", str(self.batch),
                "SOLVER.BASE_LR", f"{self.base_lr:.6g}"]

    def describe(self, images: int) -> str:
        steps = ", ".join(str(s) for s in self.steps) or "none"
        return (f"{self.max_iter} iterations x batch {self.batch} over {images} images = {self.epochs(images):.1f} "
                f"epochs; lr {self.base_lr:.6g} x0.1 at {steps}; warm-up {self.warmup}")


def _half_up(x: Fraction | float) -> int:
    return int(math.floor(Fraction(x) + Fraction(1, 2)))


def iterations_label(iters: int) -> str:
    """``24000`` -> ``24k``, ``840`` -> ``840it`` (as ``train_net.schedule_of`` names schedules)."""
    return f"{iters // 1000}k" if iters % 1000 == 0 else f"{iters}it"


def reference(path: str | Path | None = None) -> tuple[Schedule, int]:
    """(the paper's VOC schedule, the number of images it trains on), from ``protocol.yaml``."""
    rule = protocol_document(path)["epoch_rule"]
    values = paper_protocol(*rule["reference"].split("/"), path=path)
    if values is None:
        raise KeyError(f"epoch_rule.reference {rule['reference']!r} is not a benchmark of {path or 'protocol.yaml'}")
    return from_values(values), int(rule["train_images"])


def from_values(values: Any) -> Schedule:
    """The schedule of a config (a Detectron2 ``CfgNode``) or of a flat ``{"SOLVER.MAX_ITER": ..}`` dict."""
    def get(key: str) -> Any:
        if isinstance(values, dict) and key in values:  # flat protocol values (a CfgNode is a dict too)
            return values[key]
        node = values
        for part in key.split("."):
            node = getattr(node, part)
        return node

    return Schedule(int(get("SOLVER.MAX_ITER")), tuple(int(s) for s in get("SOLVER.STEPS")),
                    int(get("SOLVER.WARMUP_ITERS")), int(get("SOLVER.IMS_PER_BATCH")), float(get("SOLVER.BASE_LR")))


def rescale(ref: Schedule, ref_images: int, images: int, *, batch: int | None = None, epochs: float | None = None,
            max_iter: int | None = None) -> Schedule:
    """``ref`` (which trains on ``ref_images`` images) sized for ``images`` images: the same epochs (or
    ``epochs``), or exactly ``max_iter`` iterations; ``batch`` (default the reference's) scales the lr linearly.

    Steps and warm-up keep their fractions of training; a step that would fall on or past the end, or on the
    previous step, is dropped (Detectron2's scheduler refuses both).
    """
    if images < 1:
        raise ValueError("the epoch rule needs at least one training image")
    batch = int(batch or ref.batch)
    if batch < 1:
        raise ValueError(f"batch must be positive, not {batch}")
    if max_iter is None:
        passes = Fraction(epochs) if epochs is not None else Fraction(ref.max_iter * ref.batch, ref_images)
        max_iter = max(1, _half_up(passes * images / batch))
    if max_iter < 1:
        raise ValueError(f"max_iter must be positive, not {max_iter}")
    steps: list[int] = []
    for s in ref.steps:
        at = _half_up(Fraction(max_iter * s, ref.max_iter))
        if 0 < at < max_iter and (not steps or at > steps[-1]):
            steps.append(at)
    warmup = _half_up(Fraction(max_iter * ref.warmup, ref.max_iter))
    lr = float(Fraction(ref.base_lr) * batch / ref.batch)
    return Schedule(max_iter, tuple(steps), min(warmup, max_iter), batch, float(f"{lr:.6g}"))


def epoch_rule_schedule(images: int, *, batch: int | None = None, epochs: float | None = None,
                        max_iter: int | None = None, path: str | Path | None = None) -> Schedule:
    """The paper's VOC schedule sized for ``images`` training images (see the module doc)."""
    ref, ref_images = reference(path)
    return rescale(ref, ref_images, images, batch=batch, epochs=epochs, max_iter=max_iter)
