"""Shared test fixtures.

Detectron2 registers its builtin datasets (voc_2007_trainval, coco_2017_train, cityscapes_fine_*)
under $DETECTRON2_DATASETS when ``detectron2.data`` is first imported, so the tiny-dataset root is
chosen here, before any test module imports Detectron2, and generated once per test process.
"""

from __future__ import annotations

import atexit
import os
import shutil
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


# Files whose module-scoped fixtures are expensive (a reference sweep, a Slurm job chain, generated data): their
# tests stay on one xdist worker (`--dist loadgroup`); every other test is handed out on its own, so the two
# workers end together instead of one waiting for the other's longest file.
GROUPED_FILES = {"test_cluster_on_slurm", "test_sweep_resume", "test_ablation_sweep", "test_hostile_weights",
                 "test_backbone_rows", "test_trust", "test_pretrain_cli", "test_data_backends", "test_methods",
                 "test_pretrain_mechanisms", "test_results_browser", "test_tiny_data", "test_pretrain_data",
                 "test_results_render", "test_gpu_path"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if name in GROUPED_FILES:
            item.add_marker(pytest.mark.xdist_group(name))
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device; its CPU twin runs instead")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
