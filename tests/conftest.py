"""Shared test fixtures.

Detectron2 registers its builtin datasets (voc_2007_trainval, coco_2017_train, cityscapes_fine_*)
under $DETECTRON2_DATASETS when ``detectron2.data`` is first imported, so the tiny-dataset root is
chosen here, before any test module imports Detectron2, and generated once per test process.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
import torch

_TINY_ROOT = Path(tempfile.mkdtemp(prefix="tiny_datasets_"))
atexit.register(shutil.rmtree, _TINY_ROOT, ignore_errors=True)
os.environ["DETECTRON2_DATASETS"] = str(_TINY_ROOT)
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_root() -> Path:
    """Root of the tiny datasets in the real layouts (VOC2007/, VOC2012/, coco/, cityscapes/, pretrain/)."""
    from benchmarks.tiny_data import generate

    if not (_TINY_ROOT / ".complete").exists():
        generate(_TINY_ROOT)
    return _TINY_ROOT


def pytest_configure(config):
    # A shell that starts a job in the background (`make test &`, nohup) starts it with SIGINT ignored, and
    # the processes the tests start would inherit that: the Ctrl-C tests need Python's own SIGINT handler.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup``: the file groups of ``xdist_groups`` (xdist's own marker grouping fails on pytest 9)."""
    if config.getvalue("dist") == "loadgroup":
        from xdist_groups import FileGroupScheduling

        return FileGroupScheduling(config, log)
    return None


def pytest_collection_modifyitems(config, items):
    from xdist_groups import order_key

    items.sort(key=lambda item: order_key(item.nodeid))
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device; its CPU twin runs instead")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
