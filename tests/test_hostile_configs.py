"""Configs are untrusted input: a ``_BASE_`` chain is read as plain data from local regular files only (no Python
tags, no URLs or ``scheme:`` paths, no FIFOs or devices, bounded depth, no cycles), merged as fvcore merges it,
and the runners refuse the keys that define a row after ``--`` (one line each, naming the flag to use)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from transfer.config import SetupError, load_cfg
from transfer.config_files import MAX_DEPTH, load_config_dict

REPO = Path(__file__).resolve().parents[1]
TRAIN_NET = REPO / "transfer" / "train_net.py"
CONFIGS = REPO / "transfer" / "configs"
TAG = '!!python/object/apply:os.system ["touch {marker}"]'


def _chain(folder: Path, n: int, last: str) -> Path:
    """``n`` configs c0 -> c1 -> ... (``_BASE_``); the last one holds ``last``. Returns c0."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n - 1):
        (folder / f"c{i}.yaml").write_text(f'_BASE_: "c{i + 1}.yaml"\nSOLVER:\n  BASE_LR: 0.0{i + 1}\n')
    (folder / f"c{n - 1}.yaml").write_text(last)
    return folder / "c0.yaml"


def _our_lines(stderr: str) -> list[str]:
    """Non-empty stderr lines that are not torch's one-time CUDA-runtime warning."""
    return [ln for ln in stderr.splitlines() if ln.strip() and "cpp_extension" not in ln]


def _train_net(*argv: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("TRANSFER_DEBUG", None)
    return subprocess.run([sys.executable, str(TRAIN_NET), *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _one_line_setup_error(config: Path, opts: list[str] | None = None) -> str:
    with pytest.raises(SetupError) as e:
        load_cfg(str(config), opts or [])
    msg = str(e.value)
    assert msg and "\n" not in msg, msg
    return msg


# ----------------------------------------------------------------------------- case 1: code in a _BASE_ chain

def test_python_tag_in_the_13th_file_of_a_chain_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    top = _chain(tmp_path / "cfg", 13, f"MODEL:\n  META_ARCHITECTURE: {TAG.format(marker=marker)}\n")
    msg = _one_line_setup_error(top)
    assert "c12.yaml" in msg and not marker.exists(), msg
    proc = _train_net("--config-file", str(top), "--eval-only", cwd=tmp_path)
    lines = _our_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("train_net.py: error:") and "c12.yaml" in lines[0], lines
    assert not marker.exists()


def test_densepose_probe_reads_the_chain_safely(tmp_path: Path) -> None:
    from transfer.tasks import densepose

    marker = tmp_path / "MARKER"
    top = _chain(tmp_path / "cfg", 3, f"MODEL:\n  DENSEPOSE_ON: {TAG.format(marker=marker)}\n")
    with pytest.raises(ValueError, match="c2.yaml"):
        densepose.is_densepose_config(top)
    assert not marker.exists()
    assert densepose.is_densepose_config(_chain(tmp_path / "dp", 3, "MODEL:\n  DENSEPOSE_ON: True\n"))


@pytest.mark.parametrize("base", ["a://b.yaml", "http://127.0.0.1:9/x.yaml", "https://example.invalid/x.yaml",
                                  "file:/etc/passwd", "detectron2://COCO-Detection/x.yaml"])
def test_base_that_is_not_a_local_path_is_refused(tmp_path: Path, base: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f'_BASE_: "{base}"\n')
    msg = _one_line_setup_error(cfg)
    assert base in msg and "local" in msg, msg


# ----------------------------------------------------------------------------- case 6: FIFOs, depth, cycles

def test_fifo_as_base_or_as_config_is_one_line_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    cfg = tmp_path / "c.yaml"
    cfg.write_text('_BASE_: "pipe.yaml"\n')
    assert "FIFO" in _one_line_setup_error(cfg)
    assert "FIFO" in _one_line_setup_error(fifo)
    for config in (cfg, fifo):
        proc = _train_net("--config-file", str(config), "--eval-only", cwd=tmp_path, timeout=120)
        lines = _our_lines(proc.stderr)
        assert proc.returncode == 2 and len(lines) == 1 and "FIFO" in lines[0], proc.stderr


def test_device_as_base_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text('_BASE_: "/dev/zero"\n')
    assert "device" in _one_line_setup_error(cfg)


def test_depth_limit_and_cycles(tmp_path: Path) -> None:
    ok = _chain(tmp_path / "ok", MAX_DEPTH, "SOLVER:\n  MAX_ITER: 7\n")
    assert load_cfg(str(ok), []).SOLVER.MAX_ITER == 7
    deep = _chain(tmp_path / "deep", MAX_DEPTH + 1, "SOLVER:\n  MAX_ITER: 7\n")
    assert f"more than {MAX_DEPTH}" in _one_line_setup_error(deep)
    (tmp_path / "a.yaml").write_text('_BASE_: "b.yaml"\n')
    (tmp_path / "b.yaml").write_text('_BASE_: "./a.yaml"\n')
    assert "cycle" in _one_line_setup_error(tmp_path / "a.yaml")
    (tmp_path / "self.yaml").write_text('_BASE_: ["self.yaml"]\n')
    assert "cycle" in _one_line_setup_error(tmp_path / "self.yaml")


@pytest.mark.parametrize("text,words", [("- 1\n- 2\n", "mapping"), ("_BASE_: 3\n", "_BASE_"),
                                        ("MODEL: {DEVICE: cpu}\nMODEL: {DEVICE: cuda}\n", "twice"),
                                        ("SOLVER:\n  NOT_A_KEY: 1\n", "NOT_A_KEY"),
                                        ("SOLVER:\n  BASE_LR: [1, 2]\n", "BASE_LR")])
def test_other_bad_configs_are_one_line(tmp_path: Path, text: str, words: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert words in _one_line_setup_error(cfg)


def test_base_paths_follow_fvcore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative to the including file, ``~`` expanded, a list merged in order, the child's keys win."""
    from fvcore.common.config import CfgNode as FvCfgNode

    home = tmp_path / "home"
    (home / "sub").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    (home / "sub" / "b1.yaml").write_text("A: {X: 1, Y: 1, L: [1]}\nB: 1\n")
    (home / "b2.yaml").write_text('_BASE_: "sub/b1.yaml"\nA: {Y: 2, Z: 2}\nC: {D: 2}\n')
    (tmp_path / "b3.yaml").write_text("A: {Z: 3}\nC: 3\n")
    top = tmp_path / "top.yaml"
    top.write_text('_BASE_: ["~/b2.yaml", "b3.yaml"]\nA: {X: 4}\nE: 4\n')
    want = FvCfgNode.load_yaml_with_base(str(top), allow_unsafe=False)
    assert load_config_dict(top) == want == {"A": {"X": 4, "Y": 2, "Z": 3, "L": [1]}, "B": 1, "C": 3, "E": 4}
    (tmp_path / "bad.yaml").write_text('_BASE_: "b3.yaml"\nC: {D: 1}\n')  # a mapping over a scalar of the base
    with pytest.raises(ValueError, match="'C'"):
        load_config_dict(tmp_path / "bad.yaml")


def test_suite_configs_load_as_detectron2_loads_them() -> None:
    """Every config of the suite gives the same values through the safe reader as through Detectron2's own
    ``merge_from_file`` (DensePose ones with their keys allowed, as ``read_only`` does)."""
    from detectron2.config import get_cfg

    from transfer.config_files import merge_config_file
    from transfer.modeling import add_suite_config
    from transfer.tasks import densepose

    files = sorted(p for p in CONFIGS.rglob("*.yaml") if p.name != "protocol.yaml")
    assert len(files) > 40
    for f in files:
        ours, theirs = add_suite_config(get_cfg()), add_suite_config(get_cfg())
        if "densepose" in f.name:
            densepose.add_config(ours, read_only=True)
            densepose.add_config(theirs, read_only=True)
        merge_config_file(ours, f)
        theirs.merge_from_file(str(f), allow_unsafe=False)
        assert ours.dump() == theirs.dump(), f


def test_old_version_config_is_upgraded_as_detectron2_does(tmp_path: Path) -> None:
    from detectron2.config import get_cfg

    from transfer.config_files import merge_config_file

    cfg = tmp_path / "v1.yaml"
    cfg.write_text("VERSION: 1\nMODEL:\n  RPN:\n    HEAD_NAME: StandardRPNHead\n  WEIGHT: ''\n")
    ours, theirs = get_cfg(), get_cfg()
    merge_config_file(ours, cfg)
    theirs.merge_from_file(str(cfg), allow_unsafe=False)
    assert ours.dump() == theirs.dump()
    newer = tmp_path / "v9.yaml"
    newer.write_text("VERSION: 9\n")
    with pytest.raises(ValueError, match="VERSION 9"):
        merge_config_file(get_cfg(), newer)


# ----------------------------------------------------------------------------- overrides (opts)

@pytest.mark.parametrize("opts,words", [(["_BASE_", "x.yaml"], "_BASE_"), (["SOLVER.BASE_LR"], "pairs"),
                                        (["SOLVER.NOT_A_KEY", "1"], "SOLVER.NOT_A_KEY"),
                                        (["SOLVER.BASE_LR", "[1, 2]"], "SOLVER.BASE_LR")])
def test_bad_overrides_are_one_line(opts: list[str], words: str) -> None:
    assert words in _one_line_setup_error(CONFIGS / "tiny" / "voc_R_18_C4_tiny.yaml", opts)


def test_train_net_base_in_opts_is_one_line(tmp_path: Path) -> None:
    proc = _train_net("--config-file", str(CONFIGS / "tiny" / "voc_R_18_C4_tiny.yaml"), "--eval-only",
                      "_BASE_", "x.yaml", cwd=tmp_path)
    lines = _our_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1 and "_BASE_" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- case 7: reserved keys after --

@pytest.mark.parametrize("opts,flag", [(["MODEL.WEIGHTS", "x.pkl"], "--weights"),
                                       (["OUTPUT_DIR", "elsewhere"], "--output"),
                                       (["_BASE_", "y.yaml"], "--arch"),
                                       (["SEED", "3"], "--seed"),
                                       (["DATASETS.TRAIN", "('a',)"], "dataset"),
                                       (["MODEL.PIXEL_MEAN", "[1,2,3]"], "--weights-format"),
                                       (["SOLVER.AMP.ENABLED", "True"], "--amp"),
                                       (["SOLVER.BASE_LR", "0.1", "SOLVER.BASE_LR"], "pairs")])
def test_runner_refuses_row_keys_after_dashes(tmp_path: Path, capsys: pytest.CaptureFixture, opts: list[str],
                                              flag: str) -> None:
    from benchmarks import run

    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        run.main(["voc", "--tiny", "--dry-run", "--output", str(out), "--", *opts])
    err = capsys.readouterr().err
    lines = _our_lines(err)
    assert e.value.code == 2 and len(lines) == 1 and flag in lines[0], err
    assert lines[0].startswith("run_voc.sh: error:") and not out.exists(), lines


def test_runner_script_refuses_model_weights_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "run_voc.sh"), "--tiny", "--dry-run", "--output",
                           str(out), "--", "MODEL.WEIGHTS", "x.pkl"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = _our_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "MODEL.WEIGHTS" in lines[0] and "--weights" in lines[0] and not out.exists(), lines


def test_runner_refuses_an_unknown_override_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from benchmarks import run

    out = tmp_path / "out"
    rc = run.main(["voc", "--tiny", "--dry-run", "--output", str(out), "--", "SOLVER.NOT_A_KEY", "1"])
    lines = _our_lines(capsys.readouterr().err)
    assert rc == 2 and len(lines) == 1 and "SOLVER.NOT_A_KEY" in lines[0], lines
    assert lines[0].startswith("run_voc.sh: error:") and not (out / "R18-C4").exists()


def test_base_lists_cannot_multiply_reads(tmp_path: Path) -> None:
    """Each file naming the next one twice: 2**15 reads without a bound on files read."""
    from transfer.config_files import MAX_FILES

    for i in range(15):
        (tmp_path / f"c{i}.yaml").write_text(f'_BASE_: ["c{i + 1}.yaml", "c{i + 1}.yaml"]\n')
    (tmp_path / "c15.yaml").write_text("SOLVER:\n  MAX_ITER: 7\n")
    assert f"more than {MAX_FILES} files" in _one_line_setup_error(tmp_path / "c0.yaml")
    (tmp_path / "d.yaml").write_text('_BASE_: ["c14.yaml", "c15.yaml"]\n')
    assert load_cfg(str(tmp_path / "d.yaml"), []).SOLVER.MAX_ITER == 7
