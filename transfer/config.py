"""Reading a fine-tuning config: the suite's defaults, the config file and its overrides (one place for the
trainer, the runners and the checks), and the table keys a config belongs to (architecture, schedule)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from detectron2.config import CfgNode, get_cfg

from transfer.config_files import ConfigFileError, load_config_dict, merge_config_dict, one_line_reason, \
    overrides_shape_problem


class SetupError(Exception):
    """A configuration problem reported as one line before any training starts."""


def load_cfg(config_file: str, opts: list[str], read_only: bool = False) -> CfgNode:
    """Suite defaults + config file + command-line opts; CPU fallback when no GPU. A config of a Detectron2
    project (DensePose) gets the project's keys first, or stops in one line when the project is not
    installed (``read_only``: read its values anyway)."""
    from transfer.tasks import densepose
    from transfer.modeling import add_suite_config

    from transfer import tasks

    tasks.register_datasets(os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets")))
    cfg = add_suite_config(get_cfg())
    if not os.path.lexists(config_file):
        raise SetupError(f"config file not found: {config_file}")
    try:  # never Detectron2's merge_from_file: it may run code or download (transfer/config_files.py)
        values = load_config_dict(config_file)
        if densepose.needs_densepose(values):
            try:
                densepose.add_config(cfg, read_only=read_only)
            except densepose.DensePoseMissing as e:
                raise SetupError(str(e)) from None
            if densepose.available():
                densepose.register_datasets(os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets")))
        merge_config_dict(cfg, values, config_file)
    except ConfigFileError as e:
        raise SetupError(str(e)) from None
    merge_overrides(cfg, opts)
    if not torch.cuda.is_available() and cfg.MODEL.DEVICE != "cpu":
        cfg.MODEL.DEVICE = "cpu"
    return cfg


def merge_overrides(cfg: CfgNode, opts: list[str]) -> None:
    """``cfg.merge_from_list(opts)`` with every problem (odd count, ``_BASE_``, unknown key, wrong type) as a
    :class:`SetupError` of one line."""
    opts = [str(x) for x in opts]
    problem = overrides_shape_problem(opts)
    if problem:
        raise SetupError(problem)
    try:
        cfg.merge_from_list(opts)
    except (KeyError, ValueError, AssertionError, TypeError) as e:
        raise SetupError(f"config override: {one_line_reason(e)}") from None


def arch_of(cfg: CfgNode) -> str:
    if cfg.MODEL.BACKBONE.NAME == "build_vitdet_backbone":
        from transfer.vitdet import arch_name

        return arch_name(cfg)  # ViTDet-B, ViTDet-S, ...
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
    if task.startswith(("coco", "lvis")) and it in (90000, 180000):
        return {90000: "1x", 180000: "2x"}[it]
    if task == "coco_densepose" and it == 130000:
        return "s1x"  # DensePose's "s1x" schedule (130k iterations)
    if task == "cityscapes_instance" and it == 24000:
        return "d2-cityscapes"  # Detectron2's Cityscapes Mask R-CNN schedule
    return f"{it // 1000}k" if it % 1000 == 0 else f"{it}it"
