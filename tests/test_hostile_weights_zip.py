"""Hostile torch zips and weights paths (issue 27): a second pickle torch may read instead of the scanned one, a
deflated storage that inflates to gigabytes, a symbolic link loop, a ``file://`` URL, the temp file of a killed
conversion. Each ends in one line before torch allocates anything; the crash cases run in a subprocess and must
end by themselves (no signal)."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from tiny_runs import tiny_output
from weights_files import deflate_bomb_pth, deep_tuple_key_pickle, resnet_state, shadowed_pickle_pth

from benchmarks import runner
from transfer import safe_pickle

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "transfer" / "configs" / "tiny" / "voc_R_18_C4_tiny.yaml"


def _env() -> dict[str, str]:
    return {**runner.child_env(None), "OMP_NUM_THREADS": "1", "VENV": str(Path(sys.executable).parents[1])}


def _one_line(res: subprocess.CompletedProcess, prog: str) -> str:
    """The run ended by itself (no signal), non-zero, with exactly one error line of ``prog`` and no traceback."""
    assert res.returncode > 0, (res.returncode, res.stderr[-1500:])
    assert "Traceback" not in res.stderr + res.stdout, res.stderr[-3000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and "cpp_extension" not in ln]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error"), res.stderr[-3000:]
    return lines[0]


def _convert(path: Path | str, tmp: Path, *pre: str) -> subprocess.CompletedProcess:
    return subprocess.run([*pre, sys.executable, str(REPO / "transfer" / "convert.py"), str(path),
                           str(tmp / "out.pkl"), "--no-verify"], capture_output=True, text=True, env=_env(),
                          timeout=300)


def _dry_run(weights: Path | str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "benchmarks" / "run_voc.sh"), "--tiny", "--rows", "moco", "--weights",
                           str(weights), "--output", str(out), "--dry-run"], capture_output=True, text=True,
                          env=_env(), timeout=300)


def _train_net(weights: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "transfer" / "train_net.py"), "--config-file", str(TINY),
                           "MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "1"],
                          capture_output=True, text=True, env=_env(), timeout=300)


def _zip(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        warnings.simplefilter("ignore")  # duplicate names
        for name, data in entries:
            z.writestr(name, data)
    return path


def _refused(path: Path) -> str:
    with pytest.raises(safe_pickle.UnsafePickleError) as e:
        safe_pickle.scan_torch_file(path)
    assert "\n" not in str(e.value)
    return str(e.value)


# ----------------------------------------------------------------------------- case 3: the pickle torch reads

def test_the_scan_reads_the_pickle_torch_reads(tmp_path: Path) -> None:
    said = pickle.dumps("SHADOW", protocol=2)
    # torch's rule, seen from torch itself: names are looked up ignoring case, and of two such names the one it
    # reads depends on their order (a binary search over the sorted names)
    after = shadowed_pickle_pth(tmp_path / "after.pth", pickled=said)
    before = shadowed_pickle_pth(tmp_path / "before.pth", pickled=said, before=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.load(after, weights_only=True) == "SHADOW"
        assert isinstance(torch.load(before, weights_only=True), dict)
        only_upper = _zip(tmp_path / "upper.pth", [("archive/DATA.PKL", said), ("archive/version", b"3\n")])
        assert torch.load(only_upper, weights_only=True) == "SHADOW"
    for path in (after, before):
        line = _refused(path)
        assert "(torch ignores case)" in line and "'archive/data.pkl'" in line and "'archive/DATA.PKL'" in line
    twice = _zip(tmp_path / "twice.pth", [("archive/data.pkl", said), ("archive/data.pkl", deep_tuple_key_pickle()),
                                          ("archive/version", b"3\n")])
    assert "'archive/data.pkl' twice" in _refused(twice)
    nested = _zip(tmp_path / "nested.pth", [("archive/data.pkl", said), ("archive/x/data.pkl", said)])
    assert "holds 2 pickles" in _refused(nested)
    # the one pickle is scanned whatever its case (torch reads it), under the first entry's folder only
    upper_deep = _zip(tmp_path / "deep.pth", [("archive/DATA.PKL", deep_tuple_key_pickle()), ("archive/version", b"3")])
    assert "nests containers more than 64 deep" in _refused(upper_deep)
    elsewhere = _zip(tmp_path / "elsewhere.pth", [("archive/version", b"3"), ("other/data.pkl", said)])
    assert "entries outside its folder 'archive/'" in _refused(elsewhere)
    big_record = _zip(tmp_path / "record.pth", [("archive/data.pkl", said), ("archive/version", b"3" * 5000)])
    assert "record 'archive/version' claims 5,000 bytes" in _refused(big_record)
    torch.save({"state_dict": resnet_state("resnet18")}, tmp_path / "real.pth")  # what torch writes still passes
    safe_pickle.scan_torch_file(tmp_path / "real.pth")


def test_a_second_pickle_cannot_crash_any_entry_point(tmp_path: Path, tiny_root: Path) -> None:
    bad = shadowed_pickle_pth(tmp_path / "w.pth")  # torch reads the 10**6-deep key: it used to segfault
    for res, prog in ((_convert(bad, tmp_path), "convert.py"), (_train_net(bad, tmp_path / "t"), "train_net.py")):
        assert "(torch ignores case)" in _one_line(res, prog)
    res = _dry_run(bad, tiny_output(tmp_path / "out", tiny_root))  # the runner's preflight: its problems, one each
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "1 problem(s) found before training" in res.stderr and "(torch ignores case)" in res.stderr
    assert not (tmp_path / "out.pkl").exists()


# ----------------------------------------------------------------------------- case 4: memory before allocating

_PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")


def test_a_deflate_bomb_is_refused_before_allocating(tmp_path: Path) -> None:
    bomb = deflate_bomb_pth(tmp_path / "bomb.pth")  # one storage: 2 GiB of zeros, deflated
    assert bomb.stat().st_size < 3 << 20
    t0 = time.perf_counter()
    res = _convert(bomb, tmp_path, sys.executable, "-c", _PEAK)  # convert.py used to take 2.6 GB
    *err, peak_kb = res.stderr.strip().splitlines()
    res.stderr = "\n".join(err)
    line = _one_line(res, "convert.py")
    assert "inflates 2,087" in line and "to 2,147,483,648" in line, line
    assert int(peak_kb) < 1_000_000 and time.perf_counter() - t0 < 120, peak_kb
    assert not (tmp_path / "out.pkl").exists()


def _members(state: dict) -> list[tuple[str, bytes]]:
    buf = io.BytesIO()
    torch.save(state, buf)
    with zipfile.ZipFile(buf) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def test_storages_are_bounded_by_what_the_file_holds(tmp_path: Path) -> None:
    members = _members({"w": torch.zeros(4)})
    pkl = dict(members)["archive/data.pkl"]
    claims = pkl.replace(b"K\x04t", b"J\x00\x00\x00\x10t", 1)  # 2**28 floats (1 GiB) over 16 stored bytes
    lying = _zip(tmp_path / "lying.pth", [(n, claims if n.endswith("data.pkl") else d) for n, d in members])
    assert "declares 1,073,741,824 bytes, its entry 'archive/data/0' holds 16" in _refused(lying)
    missing = _zip(tmp_path / "missing.pth", [(n, d) for n, d in members if not n.endswith("data/0")])
    assert "its tensor data archive/data/0 is missing" in _refused(missing)
    # a stored (not deflated) entry whose directory claims more than the file has
    torch.save({"w": torch.zeros(1 << 18)}, tmp_path / "real.pth")
    raw = bytearray((tmp_path / "real.pth").read_bytes())
    with zipfile.ZipFile(tmp_path / "real.pth") as z:
        info = z.getinfo("real/data/0")
    at = raw.find(b"real/data/0", raw.find(b"PK\x01\x02")) - 46  # its central directory record
    raw[at + 20:at + 28] = (16 << 20).to_bytes(4, "little") * 2  # compressed and uncompressed size: 16 MiB
    (tmp_path / "claims.pth").write_bytes(bytes(raw))
    assert info.file_size == 1 << 20
    assert "its tensors would take 16,777," in _refused(tmp_path / "claims.pth")
    # the legacy format: the storages' bytes follow the pickles, so their sizes are bounded by the file's
    torch.save({"w": torch.zeros(4)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    safe_pickle.scan_torch_file(tmp_path / "legacy.pth")
    data = (tmp_path / "legacy.pth").read_bytes()
    (tmp_path / "legacy_bomb.pth").write_bytes(data.replace(b"K\x04Nt", b"J\x00\x00\x00\x10Nt", 1))
    assert data != (tmp_path / "legacy_bomb.pth").read_bytes()
    assert "its tensors declare 1,073,741,824 bytes but the file has" in _refused(tmp_path / "legacy_bomb.pth")


# ----------------------------------------------------------------------------- case 12: weights paths

def test_weights_paths_that_are_not_files_get_one_line(tmp_path: Path, tiny_root: Path) -> None:
    loop = tmp_path / "loop.pth"
    loop.symlink_to(loop.name)
    out = tiny_output(tmp_path / "out", tiny_root)
    assert f"{loop}: a symbolic link loop" in _one_line(_convert(loop, tmp_path), "convert.py")
    res = _dry_run(loop, out)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert f"{loop}: a symbolic link loop" in res.stderr
    # file:// names a local file: read as its path (it used to end in a TypeError or "no such file")
    torch.save({"state_dict": resnet_state("resnet18")}, tmp_path / "ckpt.pth")
    res = _convert(f"file://{tmp_path / 'ckpt.pth'}", tmp_path)
    assert res.returncode == 0 and (tmp_path / "out.pkl").exists(), res.stderr[-2000:]
    res = _dry_run(f"file://{tmp_path / 'out.pkl'}", out)
    assert res.returncode == 0 and "100/100 tensors loaded" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]
    res = _convert("file://elsewhere/x.pth", tmp_path)
    assert "file://elsewhere/x.pth: a file URL of another host" in _one_line(res, "convert.py")


def test_a_killed_conversion_leaves_no_temp_file_behind(tmp_path: Path) -> None:
    from core.atomic import _HOST as host, write_atomic

    out = tmp_path / "ckpt.pkl"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".ckpt.pkl.{dead.pid}@{host}.abc12345.tmp.pkl"  # a conversion killed while writing
    alive = tmp_path / f".ckpt.pkl.{os.getppid()}@{host}.def45678.tmp.pkl"  # one under way (its process lives)
    old_style = tmp_path / ".ckpt.pkl.xyz78901.tmp.pkl"  # no owner (written before): removed once old
    other = tmp_path / ".ckpt.pkl.notes"  # not ours
    for p in (stale, alive, old_style, other):
        p.write_bytes(b"x" * 100)
    write_atomic(out, lambda tmp: tmp.write_bytes(b"new"), suffix=".pkl")
    assert out.read_bytes() == b"new" and not stale.exists()
    assert alive.exists() and old_style.exists() and other.exists()
    hour_ago = time.time() - 2 * 24 * 3600  # older than STALE_AFTER_S
    os.utime(old_style, (hour_ago, hour_ago))
    write_atomic(out, lambda tmp: tmp.write_bytes(b"again"), suffix=".pkl")
    assert not old_style.exists() and alive.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, alive.name, other.name])
