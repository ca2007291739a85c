"""Hostile weights files (issue 22): none may corrupt memory, hang, exhaust memory, train on bad values or show
another run's numbers. Every file is generated here; the cases that used to segfault run in a subprocess and
must end with one line and a non-zero exit status, never a signal."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_runs import FAST, tiny_output
from weights_files import (
    d2_pkl,
    deep_tuple_key_pickle,
    doubling_dicts_pickle,
    doubling_graph,
    object_array_pkl,
    pth_with_pickle,
    resnet_state,
    structured_dtype_pkl,
)

from benchmarks import run, runner
from core.records import RECORD_NAME, read_record
from transfer import safe_pickle

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "transfer" / "configs" / "tiny" / "voc_R_18_C4_tiny.yaml"
TRIAL = [*FAST, "SOLVER.MAX_ITER", "1", "TEST.PRECISE_BN.ENABLED", "False"]


@pytest.fixture(scope="module")
def r18() -> dict[str, torch.Tensor]:
    return resnet_state("resnet18")


def _env(root: Path | None = None) -> dict[str, str]:
    return {**runner.child_env(root), "OMP_NUM_THREADS": "1", "VENV": str(Path(sys.executable).parents[1])}


def _one_line(res: subprocess.CompletedProcess, prog: str) -> str:
    """The run ended by itself (no signal), non-zero, with exactly one error line of ``prog`` on stderr."""
    assert res.returncode > 0, (res.returncode, res.stderr[-1500:])
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and "cpp_extension" not in ln]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error"), res.stderr[-3000:]
    return lines[0]


def _convert(path: Path, tmp: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "transfer" / "convert.py"), str(path), str(tmp / "out.pkl"),
                           "--no-verify"], capture_output=True, text=True, env=_env(), timeout=timeout)


def _train_net(weights: Path, out: Path, root: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "transfer" / "train_net.py"), "--config-file", str(TINY), *extra,
                           "MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(out), *TRIAL],
                          capture_output=True, text=True, env=_env(root), timeout=300)


_MANY = """
import contextlib, io, json, sys
from transfer.trainer import cli
config, out, weights, *trial = sys.argv[1:]
results = {}
for path in json.loads(weights):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli(["--config-file", config, "MODEL.WEIGHTS", path, "OUTPUT_DIR", out, *trial])
    results[path] = [rc, err.getvalue()]
print(json.dumps(results))
"""


def _train_net_many(paths: list[Path], out: Path, root: Path) -> dict[Path, subprocess.CompletedProcess]:
    """train_net.py's ``cli`` for each of ``paths`` in one process (one start-up instead of one per file):
    {path: its return code and stderr}."""
    res = subprocess.run([sys.executable, "-c", _MANY, str(TINY), str(out), json.dumps([str(p) for p in paths]),
                          *TRIAL], capture_output=True, text=True, env=_env(root), timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    found = json.loads(res.stdout.strip().splitlines()[-1])
    return {Path(p): subprocess.CompletedProcess([], rc, "", err) for p, (rc, err) in found.items()}


def _dry_run(weights: Path, out: Path, root: Path) -> subprocess.CompletedProcess:
    tiny_output(out, root)
    return subprocess.run(["bash", str(REPO / "benchmarks" / "run_voc.sh"), "--tiny", "--rows", "moco", "--weights",
                           str(weights), "--output", str(out), "--dry-run"], capture_output=True, text=True,
                          env=_env(), timeout=300)


# ----------------------------------------------------------------------------- memory safety

def test_a_structured_dtype_build_cannot_corrupt_memory_in_any_entry_point(tmp_path: Path, tiny_root: Path) -> None:
    bad = structured_dtype_pkl(tmp_path / "w.pkl")
    assert bad.stat().st_size < 300  # only allow-listed globals (numpy.dtype, _reconstruct)
    for res, prog in ((_convert(bad, tmp_path), "convert.py"),
                      (_dry_run(bad, tmp_path / "out", tiny_root), "run_voc.sh"),
                      (_train_net(bad, tmp_path / "t", tiny_root), "train_net.py")):
        line = _one_line(res, prog)
        assert "refused to load" in line and "only plain numeric arrays" in line, line
    assert not (tmp_path / "out.pkl").exists()


def test_deep_tuple_keys_are_refused_before_anything_hashes_them(tmp_path: Path, tiny_root: Path) -> None:
    pkl = tmp_path / "deep.pkl"
    pkl.write_bytes(deep_tuple_key_pickle())
    pth = pth_with_pickle(tmp_path / "deep.pth", deep_tuple_key_pickle())  # torch's weights_only loader crashed here
    for res, prog in ((_convert(pkl, tmp_path), "convert.py"), (_convert(pth, tmp_path), "convert.py"),
                      (_train_net(pth, tmp_path / "t", tiny_root), "train_net.py")):
        assert "nests containers more than 64 deep" in _one_line(res, prog)


def test_shared_reference_blowups_are_refused_quickly(tmp_path: Path, r18) -> None:
    for levels, why in ((64, "more than 64 deep"), (40, "more than 4,000,000 entries")):
        pkl = tmp_path / f"graph{levels}.pkl"
        pkl.write_bytes(doubling_dicts_pickle(levels))
        assert pkl.stat().st_size < 2500
        t0 = time.perf_counter()
        res = _convert(pkl, tmp_path, timeout=60)  # convert.py used to walk it for ever
        assert why in _one_line(res, "convert.py") and time.perf_counter() - t0 < 60
    # the same graph as a .pth's pretraining facts: it used to train, then expand while writing the record
    pth = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.encoder_q.{k}": v for k, v in r18.items()},
                "suite": {"precision": doubling_graph(40)}}, pth)
    assert "more than 4,000,000 entries" in _one_line(_convert(pth, tmp_path, timeout=60), "convert.py")
    assert not (tmp_path / "out.pkl").exists()


def test_an_object_array_claim_is_refused_without_allocating(tmp_path: Path) -> None:
    bad = object_array_pkl(tmp_path / "o.pkl")
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
            "from transfer import safe_pickle\ntry:\n safe_pickle.load(sys.argv[1])\n"
            "except safe_pickle.UnsafePickleError as e:\n print(e); sys.exit(2)")
    res = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 2 and "numpy dtype 'O'" in res.stdout and not res.stderr, res.stdout + res.stderr


def test_the_loader_reads_what_weights_files_hold(tmp_path: Path) -> None:
    arrays = {"f32": np.arange(6, dtype=np.float32).reshape(2, 3), "f64be": np.ones(3, ">f8"),
              "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "empty": np.zeros((0, 4), np.float32),
              "count": np.array(7, np.int64)}
    for proto in range(6):
        got = safe_pickle.loads(pickle.dumps({"model": arrays, "n": [1, (2, 3)], "s": np.float64(2.5)}, protocol=proto))
        for k, v in arrays.items():
            assert got["model"][k].dtype == v.dtype and np.array_equal(got["model"][k], v), (proto, k)
            assert got["model"][k].flags.writeable
        assert got["n"] == [1, (2, 3)] and got["s"] == 2.5
    cycle = b"\x80\x04]\x94h\x00a."  # a list that holds itself
    with pytest.raises(safe_pickle.UnsafePickleError, match="holds itself"):
        safe_pickle.loads(cycle)
    with pytest.raises(safe_pickle.UnsafePickleError, match="opcode NEWOBJ"):
        safe_pickle.loads(b"\x80\x02cnumpy\nndarray\n)\x81.")  # an instance of an allowed class, made directly


# ----------------------------------------------------------------------------- values

def _with(state: dict, key: str, value) -> dict:
    return {**state, key: value}


def test_weight_values_are_checked_before_training(tmp_path: Path, tiny_root: Path, r18,
                                                   capsys: pytest.CaptureFixture) -> None:
    from transfer.checkpointer import WeightsError, read_pkl_for_detectron2

    var = "layer4.1.bn2.running_var"  # res5 in Detectron2's names
    nan_var = r18[var].clone()
    nan_var[3] = float("nan")
    inf_conv = r18["layer1.0.conv1.weight"].clone()
    inf_conv[0, 0, 0, 0] = float("inf")
    cases = {"nan_bn": (_with(r18, var, nan_var), "NaN or infinite values (res5.1.conv2.norm.running_var (1 of"),
             "inf": (_with(r18, "layer1.0.conv1.weight", inf_conv), "NaN or infinite"),
             "zero": ({k: torch.zeros_like(v) for k, v in r18.items()}, "all zero"),
             "int64": ({k: v.long() for k, v in r18.items()}, "not floating point"),
             "bool": (_with(r18, "conv1.weight", r18["conv1.weight"] > 0), "not floating point (stem.conv1.weight (bool)"),
             "complex": (_with(r18, "conv1.weight", r18["conv1.weight"].to(torch.complex64)), "complex64"),
             "negvar": (_with(r18, var, -r18[var]), "BatchNorm variances are negative")}
    for name, (state, why) in cases.items():
        path = d2_pkl(tmp_path / f"{name}.pkl", state, "torchvision")
        with pytest.raises(WeightsError, match=re.escape(why)):
            read_pkl_for_detectron2(str(path))
    half = d2_pkl(tmp_path / "half.pkl", {k: v.half() for k, v in r18.items()}, "torchvision")
    notes: list[str] = []
    data = read_pkl_for_detectron2(str(half), notes)
    assert all(v.dtype == np.float32 for v in data["model"].values()) and "widened to float32" in notes[0]
    # the dry run says so per row (it used to show "100/100 tensors loaded" for every one of them) ...
    out = tiny_output(tmp_path / "out", tiny_root)
    for name, (_, why) in cases.items():
        rc = run.main(["voc", "--tiny", "--rows", "moco", "--weights", str(tmp_path / f"{name}.pkl"), "--output",
                           str(out), "--dry-run"])
        text = capsys.readouterr()
        assert rc == 2 and "PROBLEM" in text.out and why in text.out and "tensors loaded" not in text.out, name
    rc = run.main(["voc", "--tiny", "--rows", "moco", "--weights", str(half), "--output", str(out), "--dry-run"])
    text = capsys.readouterr().out
    assert rc == 0 and "100/100 tensors loaded" in text and "widened to float32" in text
    # ... and a trial stops before its first iteration instead of recording AP 0 as finished
    res = _train_net(tmp_path / "nan_bn.pkl", tmp_path / "t", tiny_root)
    assert "NaN or infinite values" in _one_line(res, "train_net.py")
    rec = read_record(tmp_path / "t" / RECORD_NAME)  # failed before training: a failed record, never a finished one
    assert rec["status"] == "failed" and "NaN or infinite values" in rec["error"] and not rec["metrics"]
    # convert.py checks the backbone of a checkpoint the same way
    torch.save({"state_dict": _with(r18, var, nan_var)}, tmp_path / "nan.pth")
    assert "NaN or infinite" in _one_line(_convert(tmp_path / "nan.pth", tmp_path), "convert.py")


def test_files_that_are_not_weights_get_one_line_in_every_entry_point(tmp_path: Path, tiny_root: Path, r18,
                                                                      capsys: pytest.CaptureFixture) -> None:
    from transfer import convert

    state_dict = tmp_path / "state_dict.pkl"  # a pretraining checkpoint saved as .pkl: convert.py's input
    with open(state_dict, "wb") as f:
        pickle.dump({"state_dict": {f"module.encoder_q.{k}": v.numpy() for k, v in r18.items()}}, f)
    listed = tmp_path / "list.pkl"
    listed.write_bytes(pickle.dumps([1, 2, 3]))
    strings = tmp_path / "strings.pkl"
    strings.write_bytes(pickle.dumps({"model": {"stem.conv1.weight": "not a tensor"}, "__author__": "x"}))
    whole = tmp_path / "whole.pth"
    torch.save({"state_dict": r18}, whole)
    cut = []
    for kb in (5, 30, 66):  # a download or copy cut short
        cut.append(tmp_path / f"cut{kb}.pth")
        cut[-1].write_bytes(whole.read_bytes()[: kb * 1024])
    assert convert.main([str(state_dict), str(tmp_path / "sd_out.pkl"), "--no-verify"]) == 0  # converted, as before
    capsys.readouterr()
    out = tiny_output(tmp_path / "out", tiny_root)
    wants = {state_dict: "a pretraining checkpoint saved as .pkl", listed: "top level is a list",
             strings: "not tensors", **{c: "truncated or corrupt checkpoint" for c in cut}}
    # train_net.py as a script for the first file, its cli for the others in one process (the same one-line path)
    trainer = {state_dict: _train_net(state_dict, tmp_path / "t", tiny_root),
               **_train_net_many([p for p in wants if p is not state_dict], tmp_path / "t", tiny_root)}
    for path, want in wants.items():
        rc = run.main(["voc", "--tiny", "--rows", "moco", "--weights", str(path), "--output", str(out), "--dry-run"])
        text = capsys.readouterr()
        assert rc == 2 and want in text.out + text.err, (path.name, text.out[-1500:], text.err)
        assert "Traceback" not in text.err
        assert want in _one_line(trainer[path], "train_net.py"), path.name
        if path is not state_dict:
            assert convert.main([str(path), str(tmp_path / "o.pkl"), "--no-verify"]) == 2
            assert capsys.readouterr().err.count("\n") == 1


def test_provenance_that_reaches_a_record_is_plain_and_bounded(tmp_path: Path, r18) -> None:
    from transfer.weights import weights_provenance

    path = d2_pkl(tmp_path / "w.pkl", r18, "x")
    data = pickle.loads(path.read_bytes())
    deep: dict = {}
    for _ in range(30):
        deep = {"d": deep}
    data["provenance"] = {"sha256": {"not": "a digest"}, "pixel_mean": ["a", "b", "c"], "input_format": "RGB",
                          "pretrain_precision": {"mode": "x" * 10**6, "deep": deep, "many": list(range(10**5))},
                          "format": "moco"}
    path.write_bytes(pickle.dumps(data))
    prov = weights_provenance(str(path))
    text = json.dumps(prov)
    assert len(text) < 20000 and prov["sha256"] is None and prov["pixel_mean"] is None
    from transfer.weights import weights_sha256

    assert weights_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()  # not the file's claim


# ----------------------------------------------------------------------------- trial identity

def test_a_trial_is_what_ran_not_its_label(tmp_path: Path, tiny_root: Path, capsys: pytest.CaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    weights = {}
    for folder, seed in (("runA", 0), ("runB", 1)):  # two pretraining runs, one file name: one default label
        (tmp_path / folder).mkdir()
        weights[folder] = d2_pkl(tmp_path / folder / "checkpoint_0199.pkl", resnet_state("resnet18", seed), "MOCO")
    out = tiny_output(tmp_path / "out", tiny_root)

    def sweep(which: str, *extra: str, opts: list[str] = TRIAL) -> tuple[int, str]:
        rc = run.main(["voc", "--tiny", "--rows", "moco", "--weights", str(weights[which]), "--output", str(out), *extra,
                           "--", *opts])
        text = capsys.readouterr()
        return rc, text.out + text.err

    rc, text = sweep("runA")
    assert rc == 0, text[-3000:]
    (record,) = out.rglob(RECORD_NAME)
    first = read_record(record)
    assert first["identity"]["weights"] == first["pretrain"]["sha256"] and first["identity"]["seed"] == 0
    # B under the same label: refused, naming the weights (it used to skip the trial and show A's numbers)
    rc, text = sweep("runB")
    assert rc == 2 and "holds a finished trial made with other weights" in text and str(record.parent) in text
    # other Detectron2 overrides: refused, naming them (they used to be skipped as finished)
    rc, text = sweep("runA", opts=[*TRIAL, "SOLVER.MAX_ITER", "3"])
    assert rc == 2 and "other Detectron2 overrides (SOLVER.MAX_ITER: 1 then, 3 now)" in text
    rc, text = sweep("runA")  # the same trial: skipped, as before
    assert rc == 0 and "already finished, skipped" in text and read_record(record)["created"] == first["created"]
    # interrupted with A, rerun with B: never resumed from A's checkpoint
    record.unlink()
    assert (record.parent / "last_checkpoint").exists()
    rc, text = sweep("runB")
    assert rc == 2 and "holds an interrupted trial made with other weights" in text
    res = _train_net(weights["runB"], record.parent, tiny_root, "--resume")
    assert "interrupted trial made with other weights" in _one_line(res, "train_net.py")
    assert not record.exists()
    # a label cannot take a baseline row's folder
    rc, text = sweep("runB", "--label", "Random init")
    assert rc == 2 and "names the folder of the 'random init' row" in text
