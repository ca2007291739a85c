"""Hostile backbone lists, row labels, SLURM flags and result folders (issue 27, cases 2, 5, 6, 11, 12).

Each bad input ends in one line before anything trains: an alias bomb as a weights list, a FIFO or ``/dev/zero``
given as one, labels that print like others (zero-width, NFD), control characters and NULs, YAML booleans and
numbers as labels, duplicate keys, a 5,000-character label, a garbage or negative ``--mem``, a newline in a
SLURM flag; ``python -m results`` on a read-only run folder writes its tables elsewhere and says where.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import backbones, common, run
from cluster import slurm

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

# nine levels of anchors, each repeating the last nine times: 1.6 KB, 9^9 values once expanded
BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


def _parse(*argv: str) -> argparse.Namespace:
    return run.parse("voc", list(argv))[0]


def _usage_error(capsys: pytest.CaptureFixture, *argv: str) -> str:
    """The one stderr line of a refused command line (exit 2): no usage block above it (core/cli.py)."""
    with pytest.raises(SystemExit) as e:
        _parse(*argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2, err
    assert len(err) == 1 and "error:" in err[0] and err[0].endswith("--help for the options)"), err
    return err[0]


def _cli(argv: list[str], timeout: float = 60, prefix: list[str] = ()) -> subprocess.CompletedProcess:
    """The benchmark runner as a user runs it, under a 4 GB address-space cap; a hang fails the test."""
    cmd = [*prefix, "prlimit", "--as=4000000000", "--", PY, "-m", "benchmarks.run", "voc", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=ENV)


def _one_error(res: subprocess.CompletedProcess, says: str) -> None:
    """Exit 2 with one short error line saying ``says`` on stderr; nothing else (no usage block)."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-1500:]
    assert len(lines) == 1 and "error:" in lines[0] and says in lines[0] and len(lines[0]) < 400, lines


# ----------------------------------------------------------------------------- case 5: an alias bomb


def test_an_alias_bomb_as_weights_list_is_one_line_in_seconds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bomb = tmp_path / "backbones.yaml"
    # the file: the bomb's anchors, then a list entry whose input_format is the biggest of them
    bomb.write_text("- path: a.pkl\n  input_format:\n    " + BOMB.replace("\n", "\n    ").rstrip() + "\n"
                    "- path: b.pkl\n  input_format: *i\n")
    assert bomb.stat().st_size < 2000
    t0 = time.perf_counter()
    line = _usage_error(capsys, "--tiny", "--dry-run", "--weights-list", str(bomb))
    assert time.perf_counter() - t0 < 5
    assert "alias" in line and len(line) < 300, line
    # the runner itself: one short line, exit 2, well inside a 4 GB address space
    t0 = time.perf_counter()
    res = _cli(["--tiny", "--dry-run", "--weights-list", str(bomb)])
    assert time.perf_counter() - t0 < 30
    _one_error(res, "alias bomb")
    assert res.stdout == ""


def test_a_bad_value_in_a_list_is_shown_briefly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    f = tmp_path / "list.yaml"
    f.write_text(f"- path: a.pkl\n  input_format: {'Y' * 5000}\n")
    line = _usage_error(capsys, "--weights-list", str(f))
    assert "input_format must be RGB or BGR" in line and len(line) < 300, line[:400]
    f.write_text(f"- path: a.pkl\n  {'k' * 1000}: 1\n")  # YAML's longest plain key
    line = _usage_error(capsys, "--weights-list", str(f))
    assert "unknown key" in line and len(line) < 300, line[:400]


# ----------------------------------------------------------------------------- case 6: a FIFO, /dev/zero


def _hung(*_: object) -> None:
    raise TimeoutError("reading the weights list hung")


def test_a_fifo_or_dev_zero_as_weights_list_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fifo = tmp_path / "list.fifo"
    os.mkfifo(fifo)
    for path, says in ((fifo, "FIFO"), ("/dev/zero", "device")):
        signal.signal(signal.SIGALRM, _hung)
        signal.alarm(20)  # opening a FIFO blocks: fail instead of hanging
        try:
            line = _usage_error(capsys, "--weights-list", str(path))
        finally:
            signal.alarm(0)
        assert "--weights-list" in line and says in line, line
        res = _cli(["--tiny", "--dry-run", "--weights-list", str(path)], timeout=30)
        _one_error(res, says)


# ----------------------------------------------------------------------------- case 11: labels and YAML


def test_duplicate_keys_in_a_list_are_refused_with_their_lines(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    f = tmp_path / "list.yaml"
    f.write_text("- path: a.pkl\n  label: First\n  label: Second\n")
    line = _usage_error(capsys, "--weights-list", str(f))
    assert "given twice" in line and "lines 2 and 3" in line, line


@pytest.mark.parametrize("value, kind", [("no", "bool"), ("1.10", "float"), ("7", "int"), ("[a]", "list")])
def test_a_label_that_yaml_reads_as_no_text_asks_for_quotes(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                            value: str, kind: str) -> None:
    f = tmp_path / "list.yaml"
    f.write_text(f"- path: a.pkl\n  label: {value}\n")
    line = _usage_error(capsys, "--weights-list", str(f))
    assert "entry 1" in line and f"not {kind}" in line and "quote" in line, line
    f.write_text(f"- path: a.pkl\n  label: '{value}'\n")  # quoted, it is the text as written
    assert backbones.specs_of(_parse("--weights-list", str(f)))[0].label == value


@pytest.mark.parametrize("label, says", [
    ("Mo\u200bCo", "U+200B"),          # zero-width space: prints as "MoCo"
    ("Mo\x1b[31mCo", "U+001B"),        # a terminal escape
    ("Mo\nCo", "U+000A"),
    ("Mo\0Co", "U+0000"),              # Popen would refuse it after the dry run
    ("\u202eoCoM", "U+202E"),          # right-to-left override
])
def test_labels_that_do_not_print_as_themselves_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                            label: str, says: str) -> None:
    line = _usage_error(capsys, "--weights", f"{label}=a.pkl")
    assert line.startswith("run_voc.sh: error: --weights: ") and says in line, line
    line = _usage_error(capsys, "--weights", "a.pkl", "--label", label)
    assert "--label" in line and says in line, line
    f = tmp_path / "list.yaml"
    f.write_text("- path: a.pkl\n  label: " + json.dumps(label) + "\n")
    line = _usage_error(capsys, "--weights-list", str(f))
    assert "entry 1" in line and says in line, line
    f.write_text("- " + json.dumps(f"{label}=a.pkl") + "\n")
    line = _usage_error(capsys, "--weights-list", str(f))
    assert "entry 1" in line and says in line, line


def test_a_nul_label_never_passes_the_dry_run(tmp_path: Path) -> None:
    # argv cannot carry a NUL: a list can
    f = tmp_path / "list.yaml"
    f.write_text('- path: a.pkl\n  label: "Mo\\0Co"\n')
    res = _cli(["--tiny", "--dry-run", "--output", str(tmp_path / "out"), "--weights-list", str(f)], timeout=60)
    _one_error(res, "U+0000")
    assert not (tmp_path / "out").exists()


def test_a_5000_character_label_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    line = _usage_error(capsys, "--weights", f"{'L' * 5000}=a.pkl")
    assert "5,000 characters" in line and len(line) < 300, line[:400]
    f = tmp_path / "list.yaml"
    f.write_text(f"- path: a.pkl\n  label: {'L' * 5000}\n")
    line = _usage_error(capsys, "--weights-list", str(f))
    assert "5,000 characters" in line and len(line) < 300, line[:400]


def test_nfd_and_nfc_labels_are_one_label_and_clash(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    nfc, nfd = "Caf\u00e9 MoCo", "Cafe\u0301 MoCo"
    args = _parse("--weights", f"{nfd}=a.pkl")
    assert backbones.specs_of(args)[0].label == nfc  # typed either way, it is the same text
    args = _parse("--weights", f"{nfc}=a.pkl", "--weights", f"{nfd}=b.pkl")
    with pytest.raises(backbones.BackboneError) as e:
        common.check_backbone_labels(args, "run_voc.sh")
    assert "would share the folder" in str(e.value) and str(e.value).count(repr(nfc)) == 2, str(e.value)
    # two labels that differ only in case or spacing still print differently, but share a folder: refused too
    args = _parse("--weights", "Caf\u00e9=a.pkl", "--weights", "CAF\u00c9=b.pkl")
    with pytest.raises(backbones.BackboneError, match="would share the folder"):
        common.check_backbone_labels(args, "run_voc.sh")


def test_a_nul_or_empty_path_is_refused(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    f = tmp_path / "list.yaml"
    f.write_text('- path: "a\\0.pkl"\n')
    line = _usage_error(capsys, "--weights-list", str(f))
    assert "entry 1" in line and "NUL" in line, line


# ----------------------------------------------------------------------------- case 12: --mem


@pytest.mark.parametrize("text, sbatch", [("400G", "400G"), ("400g", "400G"), ("400GB", "400G"), ("512", "512M"),
                                          ("2T", "2T"), ("1500M", "1500M")])
def test_mem_in_slurms_forms_reaches_the_job_script(tmp_path: Path, text: str, sbatch: str) -> None:
    args = _parse("--launcher", "slurm", "--mem", text)
    assert args.mem == sbatch
    script = slurm.sbatch_script(slurm.SlurmSpec.from_args(args, gpus_per_node=1), tmp_path)
    assert f"#SBATCH --mem={sbatch}\n" in script


@pytest.mark.parametrize("text", ["abc", "-5G", "0", "0G", "5X", "1.5G", "", "9" * 40])
def test_bad_mem_is_one_argparse_line(capsys: pytest.CaptureFixture, text: str) -> None:
    line = _usage_error(capsys, "--launcher", "slurm", f"--mem={text}")
    assert "argument --mem" in line and "400G" in line and len(line) < 300, line


def test_mem_gb_is_exact_for_submitit() -> None:
    assert slurm._mem_gb("400G") == 400 and slurm._mem_gb("2T") == 2048 and slurm._mem_gb("512M") == 0.5
    with pytest.raises(ValueError):
        slurm._mem_gb("-5G")


def test_mem_from_the_cli_is_refused_before_anything_runs(tmp_path: Path) -> None:
    res = _cli(["--tiny", "--dry-run", "--launcher", "slurm", "--mem=-5G", "--output", str(tmp_path / "o")])
    _one_error(res, "argument --mem")


# ----------------------------------------------------------------------------- case 2: newlines in SLURM flags


@pytest.mark.parametrize("flag", ["--partition", "--constraint", "--job-dir", "--account", "--qos"])
def test_a_control_character_in_a_slurm_flag_is_refused_at_parse_time(capsys: pytest.CaptureFixture,
                                                                     flag: str) -> None:
    for bad, code in (("learnfair\n#SBATCH --x", "U+000A"), ("a\rb", "U+000D"), ("a\u2028b", "U+2028")):
        line = _usage_error(capsys, "--launcher", "slurm", flag, bad)
        assert f"argument {flag}" in line and code in line, line
    assert getattr(_parse("--launcher", "slurm", flag, "volta32gb"), flag[2:].replace("-", "_")) == "volta32gb"


def test_the_pretraining_entry_refuses_them_too(capsys: pytest.CaptureFixture) -> None:
    from pretrain import slurm as pretrain_slurm

    for argv in (["--constraint", "v\nx"], ["--name", "moco\n#SBATCH --qos=high"], ["--mem", "abc"]):
        with pytest.raises(SystemExit) as e:
            pretrain_slurm.build_parser().parse_args([*argv, "--", "data"])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and f"argument {argv[0]}" in err[-1], err


def test_the_job_spec_is_a_last_guard(tmp_path: Path) -> None:
    for spec in (slurm.SlurmSpec(constraint="volta\n#SBATCH --qos=high"), slurm.SlurmSpec(name="a\nb"),
                 slurm.SlurmSpec(partition="p", extra={"comment": "x\ny"}), slurm.SlurmSpec(mem="-5G")):
        with pytest.raises(slurm.LaunchError) as e:
            spec.sbatch_parameters()
        assert "\n" not in str(e.value) and len(str(e.value)) < 300, str(e.value)
    with pytest.raises(slurm.LaunchError, match="job folder"):
        slurm.sbatch_script(slurm.SlurmSpec(), tmp_path / "logs\n#SBATCH --qos=high")
    good = slurm.sbatch_script(slurm.SlurmSpec(partition="learnfair", constraint="volta32gb"), tmp_path)
    assert "#SBATCH --constraint=volta32gb\n" in good


def test_a_newline_in_constraint_from_the_cli_is_one_line(tmp_path: Path) -> None:
    res = _cli(["--tiny", "--dry-run", "--launcher", "slurm", "--constraint", "v\n#SBATCH --qos=high",
                "--output", str(tmp_path / "o")])
    _one_error(res, "U+000A")
    assert "argument --constraint" in res.stderr.strip().splitlines()[-1]


# ----------------------------------------------------------------------------- case 12: results, read-only run


def test_results_on_a_read_only_run_folder_writes_elsewhere_and_says_where(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _write_a_record(runs)
    work = tmp_path / "work"
    work.mkdir()
    # a read-only bind of the run folder in a mount namespace of its own: EROFS as on a read-only share
    script = (f"mount --bind -o ro {runs} {runs} && exec prlimit --as=4000000000 -- {PY} -m results "
              f"--runs {runs} --formats md")
    res = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=work, env={**ENV, "TMPDIR": str(tmp_path / "tmp")})
    assert res.returncode == 0, res.stderr[-1500:]
    assert "Traceback" not in res.stderr and not (runs / "tables").exists()
    said = [ln for ln in res.stderr.splitlines() if "read-only" in ln.lower() or "cannot write" in ln]
    assert len(said) == 1 and "--out" in said[0], res.stderr
    written = list(work.rglob("*.md")) + list((tmp_path / "tmp").rglob("*.md"))
    assert written and any(str(w.parent) in said[0] for w in written), (said, written)


def _write_a_record(runs: Path) -> None:
    from results.fixtures import make_record, write_trial

    for label in ("supervised IN-1M", "MoCo IN-1M"):
        write_trial(runs, make_record(label=label, trial=0, trials_requested=1,
                                      metrics={"AP50": 81.0, "AP": 55.0, "AP75": 60.0}))
