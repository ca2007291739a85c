"""Fine-tune a backbone with Detectron2 and record the trial.

    python transfer/train_net.py --config-file transfer/configs/voc/voc_R_50_C4_24k_moco.yaml \
        [--num-gpus 8 --num-machines 1 --dist-url auto] [--resume] [--seed 1] [--trial 0] \
        [--label "MoCo IN-1M"] MODEL.WEIGHTS ckpt.pkl OUTPUT_DIR output/voc/moco/trial0

Detectron2's ``DefaultTrainer`` and ``launch`` do the training; this adds the suite's modeling pieces
(``transfer/modeling.py``), the evaluator per dataset (``transfer/evaluators.py``), on-the-fly
conversion of ``.pth`` weights (``transfer/convert.py``), a weights/config sanity check, and one JSON
record per trial (``results/records.py``) with final metrics, config, seed, weights hash and timings.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import platform
import socket
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python transfer/train_net.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import CfgNode, get_cfg  # noqa: E402
from detectron2.data import build_detection_train_loader  # noqa: E402
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch  # noqa: E402
from detectron2.engine.hooks import PeriodicCheckpointer  # noqa: E402
from detectron2.utils import comm  # noqa: E402

import transfer.modeling  # noqa: E402,F401  (registers the extra-norm head, DC5 backbone, FCN head)
from results.records import write_record  # noqa: E402
from transfer.checkpoint_io import ConvertError, load_untrusted, sha256_of  # noqa: E402
from transfer.evaluators import build_evaluator, paper_metrics  # noqa: E402
from transfer.modeling import add_suite_config  # noqa: E402
from transfer.semseg import scale_crop_flip_mapper  # noqa: E402

CONVERTIBLE = (".pth", ".pth.tar", ".pt", ".tar", ".ckpt")
logger = logging.getLogger("transfer.train_net")


class SetupError(Exception):
    """A configuration problem reported as one line before any training starts."""


class Trainer(DefaultTrainer):
    """DefaultTrainer with the suite's evaluators and, when the config asks, the scale/crop/flip loader."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_evaluator(cfg, dataset_name, output_folder or os.path.join(cfg.OUTPUT_DIR, "inference"))

    @classmethod
    def build_train_loader(cls, cfg):
        if cfg.INPUT.RANDOM_SCALE.ENABLED:  # semantic segmentation (paper A.4): random scale, crop, flip
            return build_detection_train_loader(cfg, mapper=scale_crop_flip_mapper(cfg))
        return super().build_train_loader(cfg)

    def build_hooks(self):
        hooks = super().build_hooks()
        keep = self.cfg.SOLVER.KEEP_CHECKPOINTS
        for h in hooks:
            if isinstance(h, PeriodicCheckpointer) and keep > 0:
                h.max_to_keep = keep  # fvcore's own pruning: 5 trials x 3 rows of R50 would otherwise fill disks
        return hooks


# ------------------------------------------------------------------------- config and metadata

def load_cfg(config_file: str, opts: list[str]) -> CfgNode:
    """Suite defaults + config file + command-line opts; CPU fallback when no GPU."""
    cfg = add_suite_config(get_cfg())
    if not Path(config_file).is_file():
        raise SetupError(f"config file not found: {config_file}")
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(opts)
    if not torch.cuda.is_available() and cfg.MODEL.DEVICE != "cpu":
        cfg.MODEL.DEVICE = "cpu"
    return cfg


def task_of(cfg: CfgNode) -> str:
    names = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    if all(n.startswith("voc_") for n in names):
        return "voc_det"
    if all(n.startswith("coco_") for n in names):
        return "coco_maskrcnn" if cfg.MODEL.MASK_ON else "coco_det"
    if all(n.startswith("cityscapes_fine_instance_seg_") for n in names):
        return "cityscapes_instance"
    if all(n.startswith("cityscapes_fine_sem_seg_") for n in names):
        return "cityscapes_semseg"
    return "custom"


def arch_of(cfg: CfgNode) -> str:
    depth = f"R{cfg.MODEL.RESNETS.DEPTH}"
    if cfg.MODEL.META_ARCHITECTURE == "SemanticSegmentor" and cfg.MODEL.SEM_SEG_HEAD.NAME == "FCNDilatedHead":
        return f"{depth}-dilated-FCN16s"
    if cfg.MODEL.BACKBONE.NAME == "build_resnet_dc5_reduce_backbone" or cfg.MODEL.RESNETS.RES5_DILATION == 2:
        return f"{depth}-dilated-C5"
    if "fpn" in cfg.MODEL.BACKBONE.NAME:
        return f"{depth}-FPN"
    return f"{depth}-C4"


def schedule_of(cfg: CfgNode, task: str) -> str:
    it = cfg.SOLVER.MAX_ITER
    if task.startswith("coco") and it in (90000, 180000):
        return {90000: "1x", 180000: "2x"}[it]
    if task == "cityscapes_instance" and it == 24000:
        return "d2-cityscapes"  # Detectron2's Cityscapes Mask R-CNN schedule
    return f"{it // 1000}k" if it % 1000 == 0 else f"{it}it"


def weights_provenance(path: str) -> dict[str, Any] | None:
    """The provenance block that transfer/convert.py stores in a .pkl, if any."""
    if not path.endswith(".pkl") or not Path(path).is_file():
        return None
    with open(path, "rb") as f:
        data = pickle.load(f, encoding="latin1")  # Detectron2 reads the same file this way when loading
    return data.get("provenance") if isinstance(data, dict) else None


def is_detectron2_checkpoint(path: str) -> bool:
    """A full Detectron2 model (e.g. model_final.pth of a fine-tuning run), not a backbone to convert."""
    if not Path(path).is_file():
        return False
    obj = load_untrusted(path)
    model = obj.get("model") if isinstance(obj, dict) else None
    return isinstance(model, dict) and any(str(k).startswith(("backbone.", "roi_heads.")) for k in model)


def prepare_weights(cfg: CfgNode) -> dict[str, Any]:
    """Convert .pth weights, check that the input format fits them; return the pretrain description."""
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        return {"kind": "random", "weights": None, "sha256": None}
    prov = None
    if weights.endswith(CONVERTIBLE) and not is_detectron2_checkpoint(weights):
        from transfer.convert import convert

        out = Path(cfg.OUTPUT_DIR) / "converted" / (Path(weights).name.split(".")[0] + ".pkl")
        src_sha = sha256_of(weights) if Path(weights).is_file() else None
        prov = weights_provenance(str(out)) if out.exists() else None
        if prov is None or prov.get("sha256") != src_sha:
            prov = convert(weights, out, log=logger.info)
        cfg.MODEL.WEIGHTS = str(out)
    local = cfg.MODEL.WEIGHTS
    if "://" not in local and not Path(local).is_file():
        raise SetupError(f"MODEL.WEIGHTS not found: {local}")
    if prov is None and "://" not in local:
        prov = weights_provenance(local)
    if prov and prov.get("input_format") == "RGB":
        wrong = []
        if cfg.INPUT.FORMAT != "RGB":
            wrong.append(f"INPUT.FORMAT {cfg.INPUT.FORMAT}")
        if cfg.MODEL.RESNETS.STRIDE_IN_1X1:
            wrong.append("MODEL.RESNETS.STRIDE_IN_1X1 True")
        if [round(v, 3) for v in cfg.MODEL.PIXEL_MEAN] != [round(v, 3) for v in prov["pixel_mean"]]:
            wrong.append(f"MODEL.PIXEL_MEAN {list(cfg.MODEL.PIXEL_MEAN)}")
        if wrong:
            raise SetupError(
                f"{Path(local).name} holds torchvision-style (RGB) weights but the config sets {', '.join(wrong)}; "
                "use the *_moco.yaml config of this benchmark"
            )
    kind = "supervised"
    if prov and str(prov.get("format", "")).startswith("moco"):
        kind = "moco"
    sha = prov["sha256"] if prov else (sha256_of(local) if "://" not in local else None)
    return {"kind": kind, "weights": weights, "sha256": sha, "converted": local if local != weights else None,
            "provenance": prov}


def check_amp(cfg: CfgNode) -> None:
    """Detectron2's AMPTrainer (SOLVER.AMP.ENABLED) needs CUDA: say so before building anything."""
    if cfg.SOLVER.AMP.ENABLED and cfg.MODEL.DEVICE == "cpu":
        raise SetupError("SOLVER.AMP.ENABLED True (--amp) needs a CUDA GPU (Detectron2's AMPTrainer); "
                         "on the CPU run without --amp")


def setup(args) -> tuple[CfgNode, dict[str, Any]]:
    cfg = load_cfg(args.config_file, args.opts)
    check_amp(cfg)
    if args.seed is not None:
        cfg.SEED = args.seed
    pretrain = prepare_weights(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg, pretrain


# ------------------------------------------------------------------------- record

def _versions() -> dict[str, str]:
    import detectron2
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "detectron2": detectron2.__version__}


def make_record(cfg: CfgNode, args, pretrain: dict[str, Any], status: str, metrics: dict[str, float],
                timings: dict[str, float], error: str | None = None, raw: dict | None = None) -> dict[str, Any]:
    task = args.task or task_of(cfg)
    kind = args.kind or pretrain["kind"]
    default_label = {"random": "random init", "supervised": "supervised", "moco": "MoCo"}.get(kind, kind)
    return {
        "task": task,
        "arch": args.arch_name or arch_of(cfg),
        "schedule": args.schedule or schedule_of(cfg, task),
        "pretrain": {"label": args.label or default_label, "kind": kind, "weights": pretrain.get("weights"),
                     "sha256": pretrain.get("sha256"), "converted": pretrain.get("converted"),
                     "precision": (pretrain.get("provenance") or {}).get("pretrain_precision")},
        "trial": args.trial, "seed": cfg.SEED, "trials_requested": args.trials_requested,
        "status": status, "error": error, "metrics": metrics, "raw_results": raw or {},
        "dataset": {"train": list(cfg.DATASETS.TRAIN), "test": list(cfg.DATASETS.TEST),
                    "root": os.environ.get("DETECTRON2_DATASETS", "datasets")},
        "config_file": str(args.config_file), "config": cfg.dump(),
        "timings": timings, "tiny": bool(args.tiny),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(), "world_size": comm.get_world_size(), "versions": _versions(),
    }


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=float))


def main(args) -> dict | None:
    cfg, pretrain = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    start_iter = trainer.start_iter
    t0 = time.perf_counter()
    try:
        trainer.train()
        # DefaultTrainer.train() returns results only when TEST.EXPECTED_RESULTS is set; the final
        # evaluation (EvalHook) stores them here. A resumed, already finished run evaluates anew.
        results = getattr(trainer, "_last_eval_results", None) or Trainer.test(cfg, trainer.model)
    except Exception as e:
        if comm.is_main_process():
            timings = {"train_s": time.perf_counter() - t0}
            line = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            write_record(cfg.OUTPUT_DIR, make_record(cfg, args, pretrain, "failed", {}, timings, error=line))
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
    record = make_record(cfg, args, pretrain, "finished", metrics, timings, raw=_jsonable(results))
    path = write_record(cfg.OUTPUT_DIR, record)
    logger.info(f"trial record written: {path} ({', '.join(f'{k} {v:.1f}' for k, v in metrics.items())})")
    return results


def build_parser():
    parser = default_argument_parser()
    parser.add_argument("--seed", type=int, help="random seed of this trial (cfg.SEED)")
    parser.add_argument("--trial", type=int, default=0, help="trial index, recorded")
    parser.add_argument("--trials-requested", type=int, default=1, help="how many trials the benchmark asked for")
    parser.add_argument("--label", help="pre-train row label in tables, e.g. 'MoCo IN-1M'")
    parser.add_argument("--kind", choices=["moco", "supervised", "random"], help="pre-train kind (default: inferred)")
    parser.add_argument("--task", help="task name in records (default: inferred from datasets)")
    parser.add_argument("--arch-name", help="architecture name in records (default: inferred, e.g. R50-C4)")
    parser.add_argument("--schedule", help="schedule name in records (default: inferred, e.g. 24k)")
    parser.add_argument("--tiny", action="store_true", help="mark the record as a small-scale demonstration")
    return parser


def cli(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,))
    except (SetupError, ConvertError) as e:
        print(f"train_net.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("train_net.py: interrupted; rerun the same command with --resume to continue from the last checkpoint",
              file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("TRANSFER_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"train_net.py: error: {type(e).__name__}: {msg} (traceback in OUTPUT_DIR/log.txt; "
              "TRANSFER_DEBUG=1 shows it here)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
