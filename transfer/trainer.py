"""Fine-tune a backbone with Detectron2 and record the trial: the trainer behind ``transfer/train_net.py``.

    python transfer/train_net.py --config-file transfer/configs/voc/voc_R_50_C4_24k_rgb.yaml \
        [--num-gpus 8 --num-machines 1 --dist-url auto] [--resume] [--seed 1] [--trial 0] \
        [--label "MoCo IN-1M"] [--kind pretrained] [--method "MoCo v2"] [--row-order 2] [--input-format RGB|BGR] \
        MODEL.WEIGHTS ckpt.pkl OUTPUT_DIR output/voc/moco/trial0

Detectron2's ``DefaultTrainer`` and ``launch`` do the training; this adds the suite's modeling pieces
(``transfer/modeling.py``), the evaluator per task (``transfer/tasks/``), on-the-fly conversion of
``.pth`` weights (``transfer/convert.py``) and, before the first iteration:

* weights are read without running code (``transfer/checkpointer.py``), their input format is decided
  from the file (``transfer/weights.py``) and must match the config's;
* after Detectron2 loads them, a load report counts backbone tensors loaded / missing / mis-shaped; a
  missing backbone tensor or a shape mismatch stops the trial (``--allow-partial-weights`` overrides).

Training reads a resumable, seeded data stream (``transfer/train_loader.py``), so a trial resumed from
a checkpoint ends as an uninterrupted one would on a CPU; checkpoints are written atomically. Each trial
leaves one JSON record (``core/records.py``) with metrics, the protocol fingerprint
(``transfer/protocol.py``), the load report, the input-format decision, whether it resumed, timings, and the row:
its label, generic kind (pretrained / supervised / random), method (``transfer/methods.py``) and place in the sweep.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import platform
import random
import signal
import socket
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
import warnings

# fvcore scripts its focal loss at import and torch deprecates torch.jit.script: two lines of someone
# else's noise on every trial's stderr, above the suite's own one-line errors.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

import torch
from detectron2.config import CfgNode
from detectron2.engine import DefaultTrainer, HookBase, default_argument_parser, default_setup, launch
from detectron2.engine.hooks import PeriodicCheckpointer
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import transfer.modeling  # noqa: F401  (registers the extra-norm head, DC5 backbone, FCN head)
from cluster.signals import default_dispositions_in_forks, stop_signals
from core.cli import one_line_errors
from core.process import die_with_parent
from core.records import LEGACY_KINDS, UNKNOWN_METHOD, is_finished, spent_gpu_hours, write_json_atomic, write_record
from transfer import checkpointer, custom_data, identity, vitdet, voc_xml
from transfer.accumulate import AccumulatingTrainer
from transfer.safe_pickle import UnsafePickleError
from transfer.checkpoint_io import ConvertError, load_untrusted, sha256_of
from transfer.checkpointer import SuiteCheckpointer, WeightsError
from transfer.load_report import LoadReport
from transfer.methods import Method, detect_method
from transfer.protocol import detectron2_id, expected_input_values, fingerprint, input_style_values
from transfer.semseg import scale_crop_flip_mapper
from transfer.tasks import evaluator_for, paper_metrics, task_of  # noqa: F401  (task_of: re-exported)
from transfer.config import SetupError, arch_of, load_cfg, schedule_of  # noqa: F401  (re-exported)
from transfer.train_loader import SeedEachStep, build_resumable_train_loader
from transfer.weights import (
    CONVERTIBLE,
    InputFormat,
    WeightsFormatError,
    decide_input_format,
    is_remote,
    remote_problem,
    weights_provenance,
)

checkpointer.install()  # every DetectionCheckpointer reads weights without running code
voc_xml.install()       # Detectron2's VOC loader and evaluator read XML like the dataset check
logger = logging.getLogger("transfer.trainer")
LOAD_REPORT = "weights_load.json"
RESUMES = "resumes.json"


class ForeignTrialError(SetupError):
    """OUTPUT_DIR holds another run's interrupted trial (other weights, seed or data): refused, left as it is."""


class StopRequested(Exception):
    """Training was asked to stop (a stop signal); a checkpoint of the last iteration was saved."""


class StopOnSignal(HookBase):
    """On a stop signal (``cluster.signals.stop_signals()``: SIGINT, SIGTERM, SIGUSR1 and the signal the
    launcher asks SLURM for before a time limit, SIGUSR2): finish the current iteration, save a checkpoint of
    it and stop, so a resumed trial loses nothing. Every process stops at the same iteration (the request is
    all-reduced). Once the last iteration is done the previous handlers are back, before the final evaluation
    (which runs in ``after_train`` of an earlier hook): there the signals have their usual effect, and the
    evaluation's forked workers (which start with the default dispositions anyway) can be terminated."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict = {}

    def _request(self, signum, frame) -> None:
        self.requested = True

    def before_train(self) -> None:
        if self.trainer.iter >= self.trainer.max_iter:  # a resumed, finished run: only the evaluation is left
            return
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._request) for s in stop_signals()}

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def after_train(self) -> None:
        self.restore()

    def after_step(self) -> None:
        stop = self.requested
        if comm.get_world_size() > 1:
            flag = torch.tensor([int(stop)], device=self.trainer.model.device if hasattr(self.trainer.model, "device")
                                else "cpu")
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            it = self.trainer.iter
            self.trainer.checkpointer.save(f"model_{it:07d}", iteration=it)
            raise StopRequested(f"stopped after iteration {it + 1}; checkpoint saved")
        if self.trainer.iter + 1 >= self.trainer.max_iter:
            self.restore()  # the last iteration is done: the final evaluation runs with the usual signals


class Trainer(DefaultTrainer):
    """DefaultTrainer with the suite's evaluators, resumable data stream and checkpointer."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg)
        steps = cfg.SOLVER.ACCUMULATE_STEPS
        if steps > 1:  # the paper's batch on GPUs that cannot hold it at once (transfer/accumulate.py)
            t = self._trainer
            self._trainer = AccumulatingTrainer(t.model, t.data_loader, t.optimizer, steps, cfg.SOLVER.AMP.ENABLED)
        self.checkpointer.report_source = Path(cfg.MODEL.WEIGHTS).name if cfg.MODEL.WEIGHTS else "weights"

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return evaluator_for(cfg, dataset_name, output_folder or os.path.join(cfg.OUTPUT_DIR, "inference"))

    @classmethod
    def build_optimizer(cls, cfg, model):
        if cfg.SOLVER.OPTIMIZER.upper() == "ADAMW":  # ViTDet: layer-wise lr decay, no wd on norms and pos_embed
            return vitdet.build_adamw(cfg, model)
        return super().build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg):
        mapper = scale_crop_flip_mapper(cfg) if cfg.INPUT.RANDOM_SCALE.ENABLED else None  # semantic segmentation
        if cfg.INPUT.LSJ.ENABLED:  # ViTDet's large-scale jitter
            mapper = vitdet.lsj_mapper(cfg)
        if cfg.MODEL.get("DENSEPOSE_ON", False):
            from transfer.tasks.densepose import train_mapper

            mapper = train_mapper(cfg)
        return build_resumable_train_loader(cfg, mapper)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        if cfg.MODEL.get("DENSEPOSE_ON", False):
            from detectron2.data import build_detection_test_loader

            from transfer.tasks.densepose import test_mapper

            return build_detection_test_loader(cfg, dataset_name, mapper=test_mapper(cfg))
        return super().build_test_loader(cfg, dataset_name)

    def build_hooks(self):
        # DefaultTrainer made a DetectionCheckpointer just before asking for the hooks; the suite's (safe reading,
        # atomic saving, the load report) takes its place, with the same model, folder and state, before any hook
        # holds it.
        made = self.checkpointer
        self.checkpointer = SuiteCheckpointer(made.model, made.save_dir, save_to_disk=made.save_to_disk,
                                              **made.checkpointables)
        hooks = [SeedEachStep(self.cfg.SEED), *super().build_hooks(), StopOnSignal()]
        keep = self.cfg.SOLVER.KEEP_CHECKPOINTS
        for h in hooks:
            if isinstance(h, PeriodicCheckpointer) and keep > 0:
                h.max_to_keep = keep  # fvcore's own pruning: 5 trials x 3 rows of R50 would otherwise fill disks
        return hooks

    def resume_or_load(self, resume: bool = True) -> None:
        super().resume_or_load(resume=resume)
        self.data_loader.batch_sampler.start_iter = self.start_iter  # continue the same data stream
        periodic = [h for h in self._hooks if isinstance(h, PeriodicCheckpointer)]
        if self.start_iter and periodic and periodic[0].max_to_keep:
            # fvcore prunes only what this process saved: hand it the checkpoint we resumed from too
            older = sorted(str(p) for p in Path(self.cfg.OUTPUT_DIR).glob("model_[0-9]*.pth"))
            periodic[0].recent_checkpoints = older

    @property
    def data_loader(self):
        return self._trainer.data_loader


# ------------------------------------------------------------------------- config and metadata

def is_detectron2_checkpoint(path: str) -> bool:
    """A full Detectron2 model (e.g. model_final.pth of a fine-tuning run), not a backbone to convert."""
    if not Path(path).is_file():
        return False
    obj = load_untrusted(path)
    model = obj.get("model") if isinstance(obj, dict) else None
    return isinstance(model, dict) and any(str(k).startswith(("backbone.", "roi_heads.")) for k in model)


def input_format_mismatch(cfg: CfgNode, fmt: InputFormat, prov: dict | None) -> list[str]:
    """Config values that contradict the input format the weights need (empty: consistent)."""
    want = expected_input_values(fmt.format, style=fmt.style)
    if prov and prov.get("pixel_mean"):
        want["MODEL.PIXEL_MEAN"] = list(prov["pixel_mean"])
    if prov and prov.get("pixel_std"):
        want["MODEL.PIXEL_STD"] = list(prov["pixel_std"])
    got = {"INPUT.FORMAT": cfg.INPUT.FORMAT, "MODEL.RESNETS.STRIDE_IN_1X1": cfg.MODEL.RESNETS.STRIDE_IN_1X1,
           "MODEL.PIXEL_MEAN": list(cfg.MODEL.PIXEL_MEAN), "MODEL.PIXEL_STD": list(cfg.MODEL.PIXEL_STD)}
    wrong = []
    for key in got:
        a, b = got[key], want[key]
        same = [round(x, 3) for x in a] == [round(x, 3) for x in b] if isinstance(a, list) else a == b
        if not same:
            wrong.append(f"{key} {a}")
    return wrong


def prepare_weights(cfg: CfgNode, input_format: str | None = None, detect: bool = True) -> dict[str, Any]:
    """Convert .pth weights, decide and check the input format; return the pretrain description (with the weights'
    method read from their layout unless ``detect`` is false: the runner passes it, or the row is not pretrained)."""
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        fmt = decide_input_format("", input_format)
        return {"kind": "random", "weights": None, "sha256": None, **fmt.as_record()}
    prov = None
    method = detect_method(weights) if detect else Method(UNKNOWN_METHOD, "not read")  # a .pth before conversion:
    # its heads still tell
    if weights.endswith(CONVERTIBLE) and not is_detectron2_checkpoint(weights):
        from transfer.convert import convert

        out = Path(cfg.OUTPUT_DIR) / "converted" / (Path(weights).name.split(".")[0] + ".pkl")
        src_sha = sha256_of(weights) if Path(weights).is_file() else None
        prov = weights_provenance(str(out)) if out.exists() else None
        if prov is None or prov.get("sha256") != src_sha:
            prov = convert(weights, out, log=logger.info)
        cfg.MODEL.WEIGHTS = str(out)
    local = cfg.MODEL.WEIGHTS
    if is_remote(local):
        problem = remote_problem(local)
        if problem:
            raise SetupError(problem)
    elif not Path(local).is_file():
        raise SetupError(f"MODEL.WEIGHTS not found: {local}")
    if prov is None and not is_remote(local):
        prov = weights_provenance(local)
    elif prov is not None:  # just converted: bounded and plain like a provenance read from a file
        prov = weights_provenance(local) or prov
    fmt = decide_input_format(local, input_format)
    wrong = input_format_mismatch(cfg, fmt, prov)
    if wrong:
        flavour = ("*_rgb.yaml config" if fmt.format == "RGB" else "supervised (BGR) config with "
                   + " ".join(f"{k} {v}" for k, v in input_style_values(fmt.format, fmt.style).items()) if fmt.style
                   else "supervised (BGR) config")
        raise SetupError(f"{Path(local).name} needs {fmt.format} input ({fmt.reason}) but the config sets "
                         f"{', '.join(wrong)}; use the {flavour} of this benchmark, or --input-format if the "
                         "decision is wrong")
    logger.info(f"input format {fmt.format}: {fmt.reason}")
    kind = "supervised"  # without --kind: pretrained when the file says a self-supervised method made it
    if (prov and str(prov.get("format", "")).startswith("moco")) or (method.known and "supervised" not in method.name):
        kind = "pretrained"
    sha = (prov or {}).get("sha256") or (sha256_of(local) if not is_remote(local) else None)
    return {"kind": kind, "method": method.name, "method_reason": method.reason, "weights": weights, "sha256": sha,
            "converted": local if local != weights else None, "provenance": prov, **fmt.as_record()}


def check_identity(cfg: CfgNode, args, pretrain: dict[str, Any]) -> dict[str, Any]:
    """This trial's identity (``transfer/identity.py``), written to OUTPUT_DIR before training. Resuming a
    checkpoint of other weights, another seed or other data is refused (it is another run's state); resuming
    with another config (e.g. a longer MAX_ITER) is said in a note. The runners refuse both."""
    weights = pretrain.get("sha256") or pretrain.get("weights")
    ident = identity.trial_identity(args.config_file, args.opts, weights, args.seed, args.datasets_spec)
    out = Path(cfg.OUTPUT_DIR)
    before = identity.read(out)
    if args.resume and before is not None and (out / "last_checkpoint").exists():
        state = {k: before[k] for k in ("weights", "seed", "data_sha256") if k in before}
        changed = identity.changes(state, ident)
        if changed:
            raise ForeignTrialError(f"{out} holds an interrupted trial made with {'; '.join(changed)}: resuming it would "
                             "mix two runs; use another OUTPUT_DIR, or remove that folder to start over")
        for note in identity.changes(before, ident):
            logger.warning(f"resuming with {note}")
    if comm.is_main_process():
        identity.write(out, ident)
    return ident


def apply_precision(cfg: CfgNode) -> None:
    """Set TF32 for convolutions and matmuls as ``SOLVER.TF32`` says (off: the paper's fp32), in every process."""
    torch.backends.cudnn.allow_tf32 = bool(cfg.SOLVER.TF32)
    torch.backends.cuda.matmul.allow_tf32 = bool(cfg.SOLVER.TF32)


NORM_TYPES = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)


def norm_classes(model: torch.nn.Module) -> list[str]:
    """The normalization classes the model holds (e.g. ``NaiveSyncBatchNorm``, ``FrozenBatchNorm2d``): what
    a config's "SyncBN"/"naiveSyncBN" actually built in this Detectron2."""
    return sorted({type(m).__name__ for m in model.modules()
                   if isinstance(m, NORM_TYPES) or type(m).__name__ == "FrozenBatchNorm2d"})


def check_amp(cfg: CfgNode) -> None:
    """Detectron2's AMPTrainer (SOLVER.AMP.ENABLED) needs CUDA: say so before building anything."""
    if cfg.SOLVER.AMP.ENABLED and cfg.MODEL.DEVICE == "cpu":
        raise SetupError("SOLVER.AMP.ENABLED True (--amp) needs a CUDA GPU (Detectron2's AMPTrainer); "
                         "on the CPU run without --amp")


def setup(args) -> tuple[CfgNode, dict[str, Any]]:
    cfg = load_cfg(args.config_file, args.opts)
    try:  # the sweep's own datasets (run_custom.sh, --train-fraction), registered in this process
        custom_data.apply_spec(cfg, args.datasets_spec)
    except custom_data.DatasetSpecError as e:
        raise SetupError(str(e)) from None
    check_amp(cfg)
    apply_precision(cfg)
    if args.seed is not None:
        cfg.SEED = args.seed
    if cfg.SEED < 0:  # the data stream and the record need a concrete seed
        cfg.SEED = random.SystemRandom().randrange(2**31)
    # the suite's own messages (input format, load report, lenient VOC XML) go to the console and log.txt
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="transfer", abbrev_name="transfer")
    kind = LEGACY_KINDS.get(args.kind, args.kind)
    pretrain = prepare_weights(cfg, args.input_format, detect=not args.method and kind in (None, "pretrained"))
    # a ViT-L file: a ViT-L detector with ViTDet's ViT-L recipe for this row's kind (what the command line set stays)
    for line in vitdet.apply_checkpoint_size(cfg, pretrain.get("provenance"), kind or pretrain.get("kind"),
                                             given=list(args.opts)[::2]):
        logger.info(f"ViT size: {line}")
    pretrain["identity"] = check_identity(cfg, args, pretrain)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg, pretrain


# ------------------------------------------------------------------------- record

def _versions() -> dict[str, str]:
    import detectron2
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "detectron2": detectron2.__version__}


def demonstrates(args) -> dict[str, str] | None:
    """``{"arch", "schedule"}`` of ``--demonstrates ARCH/SCHEDULE`` on a tiny run, else None."""
    said = getattr(args, "demonstrates", None)
    if not args.tiny or not said or "/" not in said:
        return None
    arch, schedule = said.split("/", 1)
    return {"arch": arch, "schedule": schedule}


def make_record(cfg: CfgNode, args, pretrain: dict[str, Any], status: str, metrics: dict[str, float],
                timings: dict[str, float], error: str | None = None, raw: dict | None = None,
                load: dict | None = None, resumes: list[int] | None = None) -> dict[str, Any]:
    task = args.task or task_of(cfg)
    kind = LEGACY_KINDS.get(args.kind, args.kind) or pretrain["kind"]
    method = (args.method or pretrain.get("method") or UNKNOWN_METHOD) if kind == "pretrained" else None
    default_label = {"random": "random init", "supervised": "supervised", "pretrained": method}.get(kind, kind)
    return {
        "task": task,
        "arch": args.arch_name or arch_of(cfg),
        "schedule": args.schedule or schedule_of(cfg, task),
        "pretrain": {"label": args.label or default_label, "kind": kind, "method": method,
                     "method_reason": pretrain.get("method_reason") if method and not args.method else None,
                     "order": args.row_order, "weights": pretrain.get("weights"),
                     "sha256": pretrain.get("sha256"), "converted": pretrain.get("converted"),
                     "input_format": pretrain.get("input_format"),
                     "input_format_reason": pretrain.get("input_format_reason"),
                     "load_report": load,
                     "precision": (pretrain.get("provenance") or {}).get("pretrain_precision")},
        "identity": pretrain.get("identity"),
        "trial": args.trial, "seed": cfg.SEED, "trials_requested": args.trials_requested,
        "status": status, "error": error, "metrics": metrics, "raw_results": raw or {},
        "fingerprint": fingerprint(cfg, comm.get_world_size(), detectron2_id(),
                                   extra={**custom_data.fingerprint_extra(args.datasets_spec),
                                          **({"norm_classes": pretrain["norm_classes"]}
                                             if pretrain.get("norm_classes") else {})}),
        "resumed": {"count": len(resumes or []), "from_iters": list(resumes or [])},
        "dataset": {"train": list(cfg.DATASETS.TRAIN), "test": list(cfg.DATASETS.TEST),
                    "root": os.environ.get("DETECTRON2_DATASETS", "datasets"),
                    **custom_data.dataset_record(args.datasets_spec)},
        "config_file": str(args.config_file), "config": cfg.dump(),
        "timings": timings, "tiny": bool(args.tiny), "demonstrates": demonstrates(args),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(), "world_size": comm.get_world_size(), "versions": _versions(),
        "gpu_hours": spent_gpu_hours(timings.get("train_and_eval_s", timings.get("train_s")), comm.get_world_size(),
                                     str(cfg.MODEL.DEVICE)),  # this run's time only (not a resumed run's before)
    }


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=float))


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def check_load(trainer: Trainer, cfg: CfgNode, allow_partial: bool) -> dict | None:
    """The weights' load report (kept in OUTPUT_DIR for resumed runs); stop before training when the
    backbone was not fully loaded."""
    path = Path(cfg.OUTPUT_DIR) / LOAD_REPORT
    report: LoadReport | None = trainer.checkpointer.last_load_report
    if trainer.start_iter > 0 or not cfg.MODEL.WEIGHTS or report is None:
        return _read_json(path, None) if trainer.start_iter > 0 else None
    logger.info(f"weights load report: {report.summary()}; new layers: {', '.join(report.expected_missing)}")
    if not report.ok:
        if not allow_partial:
            raise SetupError(report.refusal() + " (--allow-partial-weights trains anyway)")
        logger.warning(f"training with a partially loaded backbone (--allow-partial-weights): {report.refusal()}")
    record = report.as_record()
    if comm.is_main_process():
        write_json_atomic(path, record)
    return record


def note_resume(cfg: CfgNode, start_iter: int) -> list[int]:
    """Append ``start_iter`` to the trial's resume history when it resumed; return the history."""
    path = Path(cfg.OUTPUT_DIR) / RESUMES
    history = [int(i) for i in _read_json(path, [])]
    if start_iter > 0:
        history.append(start_iter)
        if comm.is_main_process():
            write_json_atomic(path, history)
    return history


def record_failure_before_training(args, e: BaseException) -> None:
    """A failed record for a trial that stopped before its first iteration (bad weights, a load report refusal,
    a dataset that cannot be built), so that status views and ``--wait`` show it as failed with the reason.
    A configuration that cannot be read at all (a sweep-level error the runners' preflight reports), a folder
    that holds another run's trial, a finished record and disk errors are left as they are."""
    if not comm.is_main_process() or _is_disk_error(e) or isinstance(e, (StopRequested, ForeignTrialError)):
        return  # ForeignTrialError: the folder is another run's, its state is not this run's to mark
    try:
        cfg = load_cfg(args.config_file, args.opts)
        custom_data.apply_spec(cfg, args.datasets_spec)
    except Exception:  # noqa: BLE001
        return
    if is_finished(cfg.OUTPUT_DIR):  # a finished trial's record is never replaced
        return
    if args.seed is not None:
        cfg.SEED = args.seed
    line = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    pretrain = {"kind": args.kind or "random", "weights": cfg.MODEL.WEIGHTS or None}
    try:
        write_record(cfg.OUTPUT_DIR, make_record(cfg, args, pretrain, "failed", {}, {}, error=line))
    except Exception:  # noqa: BLE001  (the runner leaves a record when this one cannot)
        pass


def main(args) -> dict | None:
    die_with_parent()  # a worker never outlives the process that launched it
    default_dispositions_in_forks()  # pools and loader workers this process forks start with default signals
    try:
        cfg, pretrain = setup(args)
        if args.eval_only:
            model = Trainer.build_model(cfg)
            SuiteCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
            return Trainer.test(cfg, model)
        trainer = Trainer(cfg)
        pretrain["norm_classes"] = norm_classes(trainer.model)
        trainer.resume_or_load(resume=args.resume)
        start_iter = trainer.start_iter
        load = check_load(trainer, cfg, args.allow_partial_weights)
        resumes = note_resume(cfg, start_iter)
    except Exception as e:
        if not args.eval_only:
            record_failure_before_training(args, e)
        raise
    t0 = time.perf_counter()
    try:
        trainer.train()
        # DefaultTrainer.train() returns results only when TEST.EXPECTED_RESULTS is set; the final
        # evaluation (EvalHook) stores them here. A resumed, already finished run evaluates anew.
        results = getattr(trainer, "_last_eval_results", None) or Trainer.test(cfg, trainer.model)
    except Exception as e:
        if comm.is_main_process() and not _is_disk_error(e) and not isinstance(e, StopRequested):
            timings = {"train_s": time.perf_counter() - t0}
            line = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            write_record(cfg.OUTPUT_DIR, make_record(cfg, args, pretrain, "failed", {}, timings, error=line,
                                                     load=load, resumes=resumes))
            (Path(cfg.OUTPUT_DIR) / "error.txt").write_text(traceback.format_exc())
        raise
    train_s = time.perf_counter() - t0
    if not comm.is_main_process():
        return None
    iters = cfg.SOLVER.MAX_ITER - start_iter
    timings = {"train_and_eval_s": round(train_s, 2), "iterations_run": iters, "resumed_from_iter": start_iter,
               "s_per_iter": round(train_s / iters, 4) if iters > 0 else None}
    task = args.task or task_of(cfg)
    metrics = paper_metrics(task, results)
    record = make_record(cfg, args, pretrain, "finished", metrics, timings, raw=_jsonable(results), load=load,
                         resumes=resumes)
    path = write_record(cfg.OUTPUT_DIR, record)
    logger.info(f"trial record written: {path} ({', '.join(f'{k} {v:.1f}' for k, v in metrics.items())})")
    return results


EXIT_DISK, EXIT_STOPPED = 3, 4  # exit statuses the runner acts on
DISK_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
               errno.EACCES: "permission denied", errno.EDQUOT: "the disk quota is exceeded"}


def _is_disk_error(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in DISK_ERRNOS


def disk_error_line(e: OSError) -> str:
    """``disk full writing /path: free space there and rerun the same command (it resumes)``."""
    where = e.filename or "the output directory"
    return (f"cannot write {where}: {DISK_ERRNOS[e.errno]}; free space or fix the permissions there, then rerun "
            "the same command: finished trials are kept and this one resumes from its last checkpoint")


def build_parser():
    parser = one_line_errors(default_argument_parser())  # Detectron2's flags; an error is one line
    parser.add_argument("--seed", type=int, help="random seed of this trial (cfg.SEED)")
    parser.add_argument("--trial", type=int, default=0, help="trial index, recorded")
    parser.add_argument("--trials-requested", type=int, default=1, help="how many trials the benchmark asked for")
    parser.add_argument("--label", help="pre-train row label in tables, e.g. 'MoCo IN-1M'")
    parser.add_argument("--kind", choices=["pretrained", "supervised", "random", *LEGACY_KINDS],
                        help="pre-train kind (default: inferred; 'moco' is read as 'pretrained')")
    parser.add_argument("--method", help="pretraining method of the weights, recorded (default: read from the weights' "
                                         "layout, transfer/methods.py)")
    parser.add_argument("--row-order", type=int, help="the row's place in its sweep, recorded (tables keep that order)")
    parser.add_argument("--task", help="task name in records (default: inferred from datasets)")
    parser.add_argument("--arch-name", help="architecture name in records (default: inferred, e.g. R50-C4)")
    parser.add_argument("--schedule", help="schedule name in records (default: inferred, e.g. 24k)")
    parser.add_argument("--tiny", action="store_true", help="mark the record as a small-scale demonstration")
    parser.add_argument("--demonstrates", metavar="ARCH/SCHEDULE",
                        help="with --tiny: the full-scale benchmark it stands in for, recorded (e.g. ViTDet-B/table11: "
                             "results --with-paper shows that benchmark's published rows beside, for orientation)")
    parser.add_argument("--input-format", choices=["RGB", "BGR"],
                        help="input format the weights need (default: decided from the weights file)")
    parser.add_argument("--allow-partial-weights", action="store_true",
                        help="train even when backbone tensors of the weights were not loaded (experts)")
    parser.add_argument("--datasets-spec", metavar="FILE",
                        help="JSON dataset spec of the sweep (transfer/custom_data.py): datasets to register and "
                             "use for DATASETS.TRAIN/TEST, and runner-level values for the record")
    return parser


def cli(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,))
    except (SetupError, ConvertError, WeightsError, WeightsFormatError, UnsafePickleError) as e:
        print(f"train_net.py: error: {e}", file=sys.stderr)
        return 2
    except StopRequested as e:
        print(f"train_net.py: error: {e}; rerun the same command with --resume to continue from it", file=sys.stderr)
        return EXIT_STOPPED
    except KeyboardInterrupt:
        print("train_net.py: interrupted; rerun the same command with --resume to continue from the last checkpoint",
              file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("TRANSFER_DEBUG"):
            raise
        if _is_disk_error(e):
            print(f"train_net.py: error: {disk_error_line(e)}", file=sys.stderr)
            return EXIT_DISK
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"train_net.py: error: {type(e).__name__}: {msg} (traceback in OUTPUT_DIR/log.txt; "
              "TRANSFER_DEBUG=1 shows it here)", file=sys.stderr)
        return 1
    return 0

