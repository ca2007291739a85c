"""Assertions the full-protocol config tests share (VOC, COCO/Cityscapes, Table 6)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

MSRA = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
MOCO_MEAN, MOCO_STD = [123.675, 116.280, 103.530], [58.395, 57.120, 57.375]


def check_flavour(cfg, flavour: str) -> None:
    """``""``: supervised MSRA weights (caffe-style BGR, stride in the 1x1 conv); ``_rgb``/``_random``:
    torchvision-style RGB input with ImageNet pixel statistics and no weights in the file."""
    if flavour == "":
        assert cfg.MODEL.WEIGHTS == MSRA and cfg.INPUT.FORMAT == "BGR" and cfg.MODEL.RESNETS.STRIDE_IN_1X1
    else:
        assert cfg.MODEL.WEIGHTS == "" and cfg.INPUT.FORMAT == "RGB" and not cfg.MODEL.RESNETS.STRIDE_IN_1X1
        assert list(cfg.MODEL.PIXEL_MEAN) == MOCO_MEAN and list(cfg.MODEL.PIXEL_STD) == MOCO_STD


def count_cited_values(files: Iterable[Path], keys: Iterable[str], sources: str) -> int:
    """Assert every config line setting one of ``keys`` has a comment naming a source (regex ``sources``);
    return how many such lines there are."""
    keys = tuple(keys)
    seen = 0
    for f in files:
        for line in f.read_text().splitlines():
            if any(re.match(rf"\s*{re.escape(k)}", line) for k in keys):
                seen += 1
                assert "#" in line and re.search(sources, line), f"{f.name}: {line.strip()}"
    return seen
