"""Adding a downstream task = one module + its config: a toy task registered from this test file alone (through
``$MOCO_BENCH_TASKS``, no file of the suite touched) runs end to end on tiny data -- its runner entry, its
dataset check, its tiny writer, its datasets in the trial process, its evaluator, and its table title and metric
order in the results -- and shows in the registry that the checks and the doctor read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.runner import REPO

TOY_MODULE = '''
"""A toy detection task: the tiny VOC scenes under their own folder and dataset names."""
from pathlib import Path

from transfer.tasks import Benchmark, RunSpec, Task, register
from transfer.tasks.voc import check_voc, write_voc

CONFIG = Path(__file__).with_name("toy_R_18_C4.yaml")


def _folder(root):
    return Path(root) / "toy"


def register_datasets(root):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets.pascal_voc import CLASS_NAMES, load_voc_instances

    base = _folder(root) / "VOC2007"
    for name, split in (("toy_train", "trainval"), ("toy_test", "test")):
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        DatasetCatalog.register(name, lambda s=split: load_voc_instances(str(base), s, CLASS_NAMES))
        MetadataCatalog.get(name).set(thing_classes=list(CLASS_NAMES), dirname=str(base), year=2007, split=split)


def evaluator(cfg, name, out):
    from transfer.evaluators import VOCDetectionEvaluator

    return VOCDetectionEvaluator(name)


def check(root, notes=None, **options):
    return check_voc(_folder(root), splits=(("VOC2007", "trainval"), ("VOC2007", "test")), notes=notes)


def write_tiny(root, seed, sizes):
    write_voc(_folder(root), 2007, {"trainval": sizes["toy_train"], "test": sizes["toy_test"]}, seed)
    return f"toy train {sizes['toy_train']}, test {sizes['toy_test']}"


def tiny_data(out, tag):
    root = Path(out) / "datasets"
    write_tiny(root, 0, {"toy_train": 12, "toy_test": 8})
    return root


def spec(args):
    return RunSpec(name="toy", prog="run_toy.sh", table="no paper table", dataset="toy scenes",
                   has_data=lambda root: (_folder(root) / "VOC2007").is_dir(),
                   check=lambda root, notes: check(root, notes), config=CONFIG, run_dir="R18-C4",
                   tiny_config=CONFIG, tiny_run_dir="R18-C4", tiny_data=tiny_data)


TOY = Task("toy_det", ("toy_",), evaluator, lambda r: {"AP75": r["bbox"]["AP75"], "AP50": r["bbox"]["AP50"]},
           title="Toy shape detection", metrics=("AP75", "AP50"))
register(Benchmark(name="toy", summary="toy shapes detection (a test's task)", tasks=(TOY,), dataset="toy scenes",
                   has_data=lambda root: (_folder(root) / "VOC2007").is_dir(), check=check, needs=("toy/VOC2007",),
                   spec=spec, write_tiny=write_tiny, tiny_sizes={"toy_train": 12, "toy_test": 8}, tiny_dirs=("toy",),
                   register_datasets=register_datasets))
'''

TOY_CONFIG = f'''_BASE_: "{REPO / "transfer" / "configs" / "tiny" / "voc_R_18_C4_tiny.yaml"}"
DATASETS:
  TRAIN: ("toy_train",)
  TEST: ("toy_test",)
SOLVER:
  MAX_ITER: 4
  STEPS: (3,)
  WARMUP_ITERS: 1
  CHECKPOINT_PERIOD: 4
TEST:
  PRECISE_BN:
    NUM_ITER: 2
MODEL:
  RPN:
    POST_NMS_TOPK_TEST: 5
INPUT:
  MIN_SIZE_TRAIN: (96,)
  MIN_SIZE_TEST: 96
'''


def _env(module: Path) -> dict[str, str]:
    return {**os.environ, "MOCO_BENCH_TASKS": str(module), "OMP_NUM_THREADS": "1",
            "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}


def _toy(tmp_path: Path) -> Path:
    module = tmp_path / "toy_task.py"
    module.write_text(TOY_MODULE)
    (tmp_path / "toy_R_18_C4.yaml").write_text(TOY_CONFIG)
    return module


def _py(args: list[str], env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_a_task_registered_from_a_test_file_runs_end_to_end(tmp_path: Path) -> None:
    env = _env(_toy(tmp_path))
    out = tmp_path / "out"
    res = _py(["-m", "benchmarks.run", "toy", "--tiny", "--rows", "random", "--trials", "1", "--output", str(out)], env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    records = sorted(out.rglob("trial_record.json"))
    assert len(records) == 1
    for path in records:
        rec = json.loads(path.read_text())
        assert rec["task"] == "toy_det" and rec["status"] == "finished"  # its evaluator, its metric names
        assert set(rec["metrics"]) == {"AP75", "AP50"} and all(0 <= v <= 100 for v in rec["metrics"].values())
    assert (out / "datasets" / "toy" / "VOC2007" / "ImageSets" / "Main" / "test.txt").is_file()  # its tiny writer
    table = [ln for ln in res.stdout.splitlines() if ln.startswith(("### ", "| pre-train"))]
    assert table[0].startswith("### Toy shape detection: R18-C4")  # its title ...
    assert table[1].startswith("| pre-train | trials | AP75 | AP50 |")  # ... and its metric order


def test_a_registered_task_is_in_the_check_the_doctor_and_the_runner_list(tmp_path: Path) -> None:
    env = _env(_toy(tmp_path))
    data = tmp_path / "data"
    code = ("import sys; from transfer.tasks import benchmark; b = benchmark('toy'); "
            "print(b.write_tiny(__import__('pathlib').Path(sys.argv[1]), 0, b.tiny_sizes))")
    assert _py(["-c", code, str(data)], env).returncode == 0
    ok = _py(["-m", "benchmarks.dataset_check", "toy", "--datasets", str(data)], env)
    assert ok.returncode == 0 and "toy: layout under" in ok.stdout and "OK" in ok.stdout
    (data / "toy" / "VOC2007" / "Annotations" / "000001.xml").write_text("<annotation><object>")
    bad = _py(["-m", "benchmarks.dataset_check", "toy", "--datasets", str(data)], env)
    assert bad.returncode == 1 and "000001.xml" in bad.stdout
    listing = _py(["-m", "benchmarks.run", "--help"], env)
    assert listing.returncode == 0 and "toy shapes detection (a test's task)" in listing.stdout
    doctor = _py(["-m", "transfer.doctor"], {**env, "DETECTRON2_DATASETS": str(data)})
    assert "toy (run_toy.sh): ready" in doctor.stdout
    without = _py(["-m", "benchmarks.run", "toy", "--tiny"], {k: v for k, v in env.items() if k != "MOCO_BENCH_TASKS"})
    assert without.returncode == 2 and without.stderr.strip().startswith("run.py: error: unknown task 'toy'")
