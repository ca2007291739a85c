"""Readable progress: a Detectron2-style logger, per-iteration / per-epoch CSV files and TensorBoard.

On resume the CSV files are cut back to the checkpoint (rows a killed run wrote after its last
checkpoint, and a partial last line, are dropped), so they always show one curve.
"""

from __future__ import annotations

import csv
import io
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("pretrain")
_OURS = "_pretrain_handler"


def setup_logging(output_dir: Path | None, rank: int = 0, name: str = "pretrain") -> logging.Logger:
    """INFO to stdout (and ``output_dir/log.txt``) on rank 0, warnings only on other ranks. Idempotent."""
    logger = logging.getLogger(name)
    for h in list(logger.handlers):
        if getattr(h, _OURS, False):
            logger.removeHandler(h)
            h.close()
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False
    fmt = logging.Formatter(f"[%(asctime)s {name}{'' if rank == 0 else f' r{rank}'}]: %(message)s", "%m/%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if output_dir is not None and rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(output_dir / "log.txt"))
    for h in handlers:
        h.setFormatter(fmt)
        setattr(h, _OURS, True)
        logger.addHandler(h)
    return logger


def format_seconds(s: float) -> str:
    s = max(0, int(s))
    days, s = divmod(s, 86400)
    text = f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{days}d {text}" if days else text


def _truncate_csv(path: Path, keep: Any) -> None:
    """Keep the header and the complete rows for which ``keep(row)`` is true."""
    if not path.exists():
        return
    text = path.read_text()
    if not text.endswith("\n"):  # a partial last line from a killed run
        text = text[: text.rfind("\n") + 1]
    if not text:
        path.unlink()
        return
    rows = list(csv.DictReader(io.StringIO(text)))
    header = text.splitlines()[0].split(",")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        for row in rows:
            try:
                if keep(row):
                    w.writerow(row)
            except (KeyError, ValueError, TypeError):
                pass


class CsvLog:
    """Append rows with fixed columns to a CSV file (header written once)."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path, self.columns = path, columns
        new = not path.exists() or path.stat().st_size == 0
        self._f = open(path, "a", newline="")
        self._w = csv.DictWriter(self._f, fieldnames=columns, extrasaction="ignore")
        if new:
            self._w.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        self._w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class MetricsLog:
    """``metrics.csv`` (one row per iteration), ``epochs.csv`` (one per epoch) and optional TensorBoard."""

    STEP_COLUMNS = ["step", "epoch", "iter", "loss", "acc1", "acc5", "lr"]
    EPOCH_COLUMNS = ["epoch", "loss", "acc1", "acc5", "lr", "images_per_s", "skipped_images", "knn_top1", "seconds"]

    def __init__(self, output_dir: Path, resume_step: int | None, resume_epoch: int = 0, tensorboard: bool = True) -> None:
        output_dir.mkdir(parents=True, exist_ok=True)
        steps, epochs = output_dir / "metrics.csv", output_dir / "epochs.csv"
        if resume_step is None:
            steps.unlink(missing_ok=True)
            epochs.unlink(missing_ok=True)
        else:
            _truncate_csv(steps, lambda r: int(r["step"]) <= resume_step)
            _truncate_csv(epochs, lambda r: int(r["epoch"]) <= resume_epoch)
        self.steps = CsvLog(steps, self.STEP_COLUMNS)
        self.epochs = CsvLog(epochs, self.EPOCH_COLUMNS)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(output_dir / "tb"), purge_step=None if resume_step is None else resume_step + 1)
            except ImportError:
                log.warning("tensorboard is not installed: TensorBoard logging is off")

    def step(self, row: dict[str, Any]) -> None:
        self.steps.write(row)

    def scalars(self, step: int, values: dict[str, float], prefix: str = "train/") -> None:
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(prefix + k, v, step)

    def epoch(self, row: dict[str, Any], step: int) -> None:
        self.epochs.write(row)
        self.epochs.flush()
        self.scalars(step, {k: v for k, v in row.items() if isinstance(v, float) and k != "seconds"}, "epoch/")

    def flush(self) -> None:
        self.steps.flush()
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        self.steps.close()
        self.epochs.close()
        if self.tb is not None:
            self.tb.close()
