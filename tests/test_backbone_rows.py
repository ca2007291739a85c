"""Backbones as rows (issue 19): ``--weights`` repeatable as ``LABEL=PATH`` or ``PATH`` and ``--weights-list``; each
pretrained row with its own method, input format, preflight and trials; one supervised and one random-init row per
sweep; rows in the order given; records with a generic kind and the method; output of older versions still read.

The done-when: one ``run_voc.sh`` command with three pretrained files (this suite's ``.pth``, a reference-MoCo-converter
``.pkl``, a torchvision-converted ``.pkl``) plans with ``--dry-run`` and produces one table of five rows through
``--parallel-trials 2`` (real trials: ResNet-18, one iteration) and through ``--launcher slurm`` (submitit's debug
executor, the runner's real command lines, a stand-in ``train_net.py``). A ``--tiny`` sweep of two methods (MoCo v2,
PixPro) with the tiny supervised and random-init rows (a stand-in ``train_net.py``) gives one table of four rows, the
baselines trained once; clashing labels are refused in one line before anything is written."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_runs import FAST, install_fake_train_net, read_calls, run_voc, tiny_output
from weights_files import (caffe2_pkl, d2_pkl, reference_moco_pkl, resnet_state, torchvision_d2_pkl,
                          with_mlp_head)

from benchmarks import backbones, run, sweep_checks
from benchmarks.plan import Row
from core.records import RECORD_NAME, read_record, write_record
from transfer.methods import shown

REPO = Path(__file__).resolve().parents[1]
R18 = ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]
# the full VOC protocol made small enough for one CPU iteration (as tests/test_trust.py)
SMALL_R18 = [*R18, "SOLVER.MAX_ITER", "1", *FAST, "SOLVER.WARMUP_ITERS", "0", "TEST.PRECISE_BN.ENABLED", "False",
             "DATALOADER.NUM_WORKERS", "0", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64"]


def _parse(*argv: str) -> argparse.Namespace:
    return run.parse("voc", list(argv))[0]


# ----------------------------------------------------------------------------- the command line

def test_weights_repeat_as_label_path_or_path_and_lists_keep_their_place(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    listed = tmp_path / "ckpt" / "backbones.yaml"
    listed.write_text("- path: densecl.pkl\n  label: DenseCL 200ep\n  input_format: RGB\n"
                      "- SwAV=swav.pth\n"
                      "- /abs/byol.pkl\n")
    args = _parse("--weights", str(tmp_path / "a.pth"), "--weights-list", str(listed), "--weights",
                  f"My MoCo={tmp_path / 'b.pkl'}")
    specs = backbones.specs_of(args)
    assert [(s.label, Path(s.path).name, s.input_format, s.origin) for s in specs] == [
        (None, "a.pth", None, "--weights 1"),
        ("DenseCL 200ep", "densecl.pkl", "RGB", "backbones.yaml entry 1"),
        ("SwAV", "swav.pth", None, "backbones.yaml entry 2"),
        (None, "byol.pkl", None, "backbones.yaml entry 3"),
        ("My MoCo", "b.pkl", None, "--weights 2")]
    assert specs[1].path == str(tmp_path / "ckpt" / "densecl.pkl")  # relative to the list's folder
    assert specs[3].path == "/abs/byol.pkl"
    # a path that contains "=" and exists is a path; a URL too
    odd = tmp_path / "lr=0.03.pkl"
    odd.write_bytes(b"")
    assert backbones.specs_of(_parse("--weights", str(odd)))[0].path == str(odd)
    assert backbones.split_label("detectron2://x/y.pkl?a=b") == (None, "detectron2://x/y.pkl?a=b")
    # --label still names a single --weights; with several it is refused in one line
    assert backbones.specs_of(_parse("--weights", "x.pkl", "--label", "Mine"))[0].label == "Mine"
    with pytest.raises(backbones.BackboneError, match="LABEL=PATH"):
        backbones.specs_of(_parse("--weights", "x.pkl", "--weights", "y.pkl", "--label", "Mine"))


@pytest.mark.parametrize("text, error", [
    ("- label: no path\n", "entry 1: no path"),
    ("- path: a.pkl\n  input_format: YUV\n", "input_format must be RGB or BGR"),
    ("- path: a.pkl\n  lable: typo\n", "unknown key 'lable'"),
    ("- 3\n", "expected a mapping"),
    ("{}\n", "expected a list"),
    ("- path: [a\n", "not valid YAML"),
])
def test_a_weights_list_that_cannot_be_read_is_one_usage_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                               text: str, error: str) -> None:
    bad = tmp_path / "list.yaml"
    bad.write_text(text)
    with pytest.raises(SystemExit) as e:
        _parse("--weights-list", str(bad))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err[-1].startswith("run_voc.sh: error: --weights-list: ") and error in err[-1]


def test_labels_stay_distinct_and_never_take_a_baseline_folder() -> None:
    cfg = Path("c.yaml")
    # two files with one default label: their folders' names tell them apart
    assert backbones.distinct_defaults(["MoCo v2 ckpt", "MoCo v2 ckpt", "SwAV x"], [False, False, False],
                                       ["/runA/ckpt.pth", "/runB/ckpt.pth", "/s/x.pth"]) == \
        ["MoCo v2 ckpt (runA)", "MoCo v2 ckpt (runB)", "SwAV x"]
    assert backbones.default_label("unknown", "/w/resnet50.pth") == "resnet50"
    assert backbones.default_label("DenseCL", "/w/densecl_200ep.pth.tar") == "DenseCL densecl_200ep"
    rows = [Row("random init", "random", cfg), Row("A", "pretrained", cfg, "a.pkl", origin="--weights 1"),
            Row("a", "pretrained", cfg, "b.pkl", origin="backbones.yaml entry 2"),
            Row("Random-Init", "pretrained", cfg, "c.pkl", origin="--weights 2")]
    problems = sweep_checks.label_problems(rows)
    assert any("rows 'A' (--weights 1) and 'a' (backbones.yaml entry 2) would share the folder a/" in p
               for p in problems), problems
    assert any("row 'Random-Init' (--weights 2) names the folder of the 'random init' row" in p for p in problems)
    assert len(problems) == 3  # the random-init row shares its folder with 'Random-Init' too
    assert sweep_checks.label_problems(rows[:2]) == []


# ----------------------------------------------------------------------------- the tables

def _rec(label: str, kind: str, ap50: float, trial: int, method: str | None = None, order: int | None = None,
         legacy: bool = False) -> dict:
    pre = {"label": label, "kind": kind, "sha256": None if kind == "random" else label * 4}
    if not legacy:
        pre.update(method=method, order=order)
    return {"task": "voc_det", "arch": "R50-C4", "schedule": "24k", "pretrain": pre, "trial": trial, "seed": trial,
            "status": "finished", "metrics": {"AP50": ap50 + trial, "AP": 50.0, "AP75": 55.0}, "trials_requested": 2}


def test_tables_keep_the_given_order_and_show_each_rows_method(tmp_path: Path) -> None:
    from results.render_md import render_markdown
    from results.tables import build_tables, tables_frame

    recs = []
    for t in range(2):  # given order: Zeta, then Alpha (not alphabetical), baselines first
        recs += [_rec("Zeta", "pretrained", 70.0, t, "SwAV", 2), _rec("random init", "random", 60.0, t, None, 0),
                 _rec("Alpha", "pretrained", 75.0, t, "DenseCL", 3), _rec("supervised IN-1M", "supervised", 80.0, t,
                                                                           None, 1)]
    (table,) = build_tables([{**r, "_path": f"/x/{i}/r.json"} for i, r in enumerate(recs)])
    assert [r.label for r in table.rows] == ["random init", "supervised IN-1M", "Zeta", "Alpha"]
    assert [r.method for r in table.rows] == ["", "", "SwAV", "DenseCL"]
    assert table.reference.label == "supervised IN-1M"  # every row's gap is to the supervised row
    assert table.row("Alpha").cells["AP50"].gap == -5.0 and table.row("Zeta").cells["AP50"].gap == -10.0
    text = render_markdown([table])
    assert "| pre-train | method | trials |" in text and re.search(r"\| Zeta \| SwAV \| 2/2 \|", text)
    frame = tables_frame([table])
    assert set(frame[frame.label == "Alpha"].method) == {"DenseCL"}


def test_an_output_folder_of_the_current_release_still_tabulates(tmp_path: Path) -> None:
    """Records as the release before this change wrote them: kind "moco", no method, no order."""
    from results.collect import collect
    from results.tables import build_tables

    runs = tmp_path / "output" / "voc" / "R50-C4"
    for t in range(2):
        for label, kind, ap in (("supervised IN-1M", "supervised", 80.0), ("MoCo v2 checkpoint_0199", "moco", 81.0),
                                ("mine", "moco", 79.0), ("random init", "random", 60.0)):
            write_record(runs / label.replace(" ", "-") / f"trial{t}", _rec(label, kind, ap, t, legacy=True))
    got = collect([tmp_path / "output"])
    assert got.skipped == [] and len(got.records) == 8
    (table,) = build_tables(got.records)
    rows = {r.label: r for r in table.rows}
    assert rows["MoCo v2 checkpoint_0199"].kind == rows["mine"].kind == "pretrained"
    assert rows["MoCo v2 checkpoint_0199"].method == "MoCo v2" and rows["mine"].method == "unknown"
    assert [r.label for r in table.rows][:2] == ["random init", "supervised IN-1M"]
    assert rows["mine"].cells["AP50"].gap == -1.0
    res = subprocess.run([sys.executable, "-m", "results", "--runs", str(tmp_path / "output")], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode == 0 and "| MoCo v2 checkpoint_0199 | MoCo v2 |" in res.stdout, res.stdout + res.stderr


# ----------------------------------------------------------------------------- five rows, one table (the done-when)

@pytest.fixture(scope="module")
def three_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """This suite's MoCo v2 .pth, a reference-MoCo-converter .pkl, a torchvision-converted .pkl (listed in a
    --weights-list with its label), and a Caffe2 file for the supervised row (BGR: its own config flavour)."""
    d = tmp_path_factory.mktemp("weights")
    torch.save({"epoch": 200, "arch": "resnet18",
                "suite": {"name": "moco-transfer-bench", "format": 1, "moco_version": "v2",
                          "args": {"mechanism": "moco", "mlp": True}},
                "state_dict": {f"module.encoder_q.{k}": v for k, v in with_mlp_head(resnet_state("resnet18", 0)).items()}},
               d / "checkpoint_0199.pth.tar")
    reference_moco_pkl(d / "moco_v2_800ep.pkl", resnet_state("resnet18", 1), mlp=True)
    torchvision_d2_pkl(d / "r18_imagenet.pkl", resnet_state("resnet18", 2))
    (d / "backbones.yaml").write_text("- label: torchvision R18\n  path: r18_imagenet.pkl\n")
    caffe2_pkl(d / "msra.pkl", resnet_state("resnet18", 3))
    return {"pth": d / "checkpoint_0199.pth.tar", "moco": d / "moco_v2_800ep.pkl", "list": d / "backbones.yaml",
            "msra": d / "msra.pkl"}


ROWS = ["random init", "supervised IN-1M", "MoCo v2 checkpoint_0199", "MoCo v2 moco_v2_800ep", "torchvision R18"]
METHODS = {"MoCo v2 checkpoint_0199": "MoCo v2", "MoCo v2 moco_v2_800ep": "MoCo v2",
           "torchvision R18": "torchvision supervised"}  # as recorded; the plan and tables show transfer.methods.shown


def _argv(files: dict[str, Path], tiny_root: Path, out: Path, *extra: str) -> list[str]:
    return ["--datasets", str(tiny_root), "--output", str(out), "--trials", "1",
            "--supervised-weights", str(files["msra"]), "--weights", str(files["pth"]), "--weights", str(files["moco"]),
            "--weights-list", str(files["list"]), *extra]


def _plan_blocks(text: str) -> dict[str, tuple[str, str, str]]:
    """The plan's rows in order: label -> (kind, where given, its detail lines)."""
    blocks: dict[str, list] = {}
    current = None
    for line in text.splitlines():
        head = re.match(r"\[[\w-]+\]   (\S.*?) \((random|supervised|pretrained)(?:, ([^)]*))?\): 1 trial\(s\)", line)
        if head:
            current = head.group(1)
            blocks[current] = [head.group(2), head.group(3) or "", ""]
        elif current and re.match(r"\[[\w-]+\]       \S", line):
            blocks[current][2] += line.split("]", 1)[1].strip() + "\n"
        else:
            current = None
    return {k: tuple(v) for k, v in blocks.items()}


def _check_plan(text: str) -> None:
    """Five rows, one each; every pretrained row with its method, its own format decision and its load report."""
    assert "plan: 5 row(s) x 1 trial(s)" in text, text[-3000:]
    blocks = _plan_blocks(text)
    assert list(blocks) == ["supervised IN-1M", *METHODS, "random init"], list(blocks)
    assert [blocks[k][:2] for k in METHODS] == [("pretrained", "--weights 1"), ("pretrained", "--weights 2"),
                                                ("pretrained", "backbones.yaml entry 1")]
    for label, method in METHODS.items():
        details = blocks[label][2]
        assert f"method   {shown(method)}:" in details and "voc_R_50_C4_24k_rgb.yaml" in details, details
        assert re.search(r"loading  backbone (\d+)/\1 tensors loaded, 0 missing", details), details
    assert "input    RGB: checkpoint_0199.pth.tar: PyTorch checkpoint" in blocks["MoCo v2 checkpoint_0199"][2]
    assert "input    RGB: moco_v2_800ep.pkl: torchvision-style Detectron2 pickle (__author__ 'MOCO')" in \
        blocks["MoCo v2 moco_v2_800ep"][2]
    assert "input    RGB: r18_imagenet.pkl: torchvision-style Detectron2 pickle (__author__ 'torchvision')" in \
        blocks["torchvision R18"][2]
    supervised = blocks["supervised IN-1M"][2]
    assert "input    BGR: msra.pkl: Caffe2/MSRA weights" in supervised and "voc_R_50_C4_24k.yaml\n" in supervised
    assert "method" not in supervised and "_random.yaml" in blocks["random init"][2]


def _main_table(text: str) -> list[list[str]]:
    """The cells of the comparison table's rows (not the differences below it)."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| pre-train | method |"))
    rows = []
    for ln in lines[start + 2:]:
        if not ln.startswith("| "):
            break
        rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
    return rows


def _check_table(text: str) -> None:
    cells = _main_table(text)
    assert [c[0] for c in cells] == ROWS, text[-3000:]  # baselines first, then the backbones in the order given
    assert [c[1] for c in cells] == ["", ""] + [shown(METHODS[label]) for label in ROWS[2:]]
    assert "supervised, or re-saved with its fc" in [c[1] for c in cells]
    assert all(c[2] == "1/1" for c in cells)
    assert "In brackets: gap to supervised IN-1M" in text


def test_five_rows_plan_and_run_as_one_table(three_files, tiny_root: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    # plan
    rc = run.main(["voc", "--dry-run", *_argv(three_files, tiny_root, tmp_path / "plan"), "--", *R18])
    text = capsys.readouterr()
    assert rc == 0, text.err
    _check_plan(text.out)
    assert "dry run: nothing was trained" in text.out and not (tmp_path / "plan" / "R50-C4").exists()
    # run: one run_voc.sh command, real trials (ResNet-18, one iteration), two at a time
    out = tmp_path / "run"
    res = run_voc(*_argv(three_files, tiny_root, out, "--parallel-trials", "2"), "--", *SMALL_R18)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-3000:]
    _check_plan(res.stdout)
    assert "[slot 0]" in res.stdout and "[slot 1]" in res.stdout
    _check_table(res.stdout)
    recs = {r["pretrain"]["label"]: r for r in map(read_record, out.rglob(RECORD_NAME))}
    assert sorted(recs) == sorted(ROWS)  # one supervised and one random-init trial serve the three backbones
    assert {label: r["pretrain"]["kind"] for label, r in recs.items()} == {
        "random init": "random", "supervised IN-1M": "supervised", **{label: "pretrained" for label in METHODS}}
    assert {label: recs[label]["pretrain"]["method"] for label in METHODS} == METHODS
    assert [recs[label]["pretrain"]["order"] for label in ["supervised IN-1M", *METHODS, "random init"]] == [0, 1, 2, 3, 4]
    for label in METHODS:  # each backbone: its own format decision, config flavour and weights
        assert recs[label]["pretrain"]["input_format"] == "RGB"
        assert recs[label]["config_file"].endswith("voc_R_50_C4_24k_rgb.yaml")
    assert recs["supervised IN-1M"]["pretrain"]["input_format"] == "BGR"
    assert recs["supervised IN-1M"]["config_file"].endswith("voc_R_50_C4_24k.yaml")
    for rec in recs.values():  # every row: the fingerprint of what ran, the load report of its weights
        fp = rec["fingerprint"]["values"]
        assert fp["SOLVER.MAX_ITER"] == 1 and fp["MODEL.RESNETS.DEPTH"] == 18 and fp["world_size"] == 1
        assert fp["INPUT.FORMAT"] == rec["pretrain"]["input_format"]
        assert fp["precision"] == "fp32" and "NaiveSyncBatchNorm" in fp["norm_classes"]  # what actually ran
        assert rec["resumed"] == {"count": 0, "from_iters": []}
        report = rec["pretrain"]["load_report"]
        if rec["pretrain"]["kind"] == "random":
            assert report is None
            continue
        assert report["backbone_missing_count"] == report["shape_mismatch_count"] == 0
        assert report["backbone_loaded"] + report["folded_stats"] == report["backbone_total"] > 90
    assert recs["supervised IN-1M"]["pretrain"]["load_report"]["folded_stats"] > 0  # Caffe2: BN folded
    assert recs["supervised IN-1M"]["pretrain"]["method"] is None and recs["random init"]["pretrain"]["method"] is None
    assert len({recs[label]["pretrain"]["sha256"] for label in METHODS}) == 3
    assert sorted(p.name for p in (out / "R50-C4").iterdir() if p.is_dir()) == sorted(
        ["random-init", "supervised-in-1m", "moco-v2-checkpoint-0199", "moco-v2-moco-v2-800ep", "torchvision-r18"])


FAKE = '''
import json, sys
from pathlib import Path
argv = sys.argv[1:]
get = lambda flag: argv[argv.index(flag) + 1] if flag in argv else None
out = Path(get("OUTPUT_DIR"))
with open(Path(sys.argv[0]).with_name("calls.jsonl"), "a") as f:
    f.write(json.dumps({"argv": argv}) + "\\n")
sys.path.insert(0, REPO)
from core.records import write_record
order = get("--row-order")
write_record(out, {"task": "voc_det", "arch": "R18-C4", "schedule": "24k", "seed": int(get("--seed")),
             "trial": int(get("--trial")), "trials_requested": 1, "status": "finished",
             "pretrain": {"label": get("--label"), "kind": get("--kind"), "method": get("--method"),
                          "order": None if order is None else int(order), "sha256": get("MODEL.WEIGHTS") or None,
                          "input_format": get("--input-format")},
             "tiny": "--tiny" in argv, "metrics": {"AP50": 50.0 + len(get("--label")), "AP": 30.0, "AP75": 25.0}})
'''


def test_five_rows_as_slurm_jobs_give_the_same_table(three_files, tiny_root: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    """--launcher slurm: a job per trial (submitit's debug executor runs them here, with a stand-in train_net.py;
    tests/test_cluster.py runs real trials through its local executor), the same five rows and table."""
    calls = install_fake_train_net(tmp_path, monkeypatch, FAKE)
    rc = run.main(["voc", *_argv(three_files, tiny_root, tmp_path / "out", "--launcher", "slurm", "--cluster",
                                     "debug"), "--", *R18])
    text = capsys.readouterr()
    assert rc == 0, text.out[-3000:] + text.err[-2000:]
    _check_plan(text.out)
    assert text.out.count("submitted as job") == 5
    _check_table(text.out)
    argvs = {c["argv"][c["argv"].index("--label") + 1]: c["argv"] for c in read_calls(calls)}
    assert sorted(argvs) == sorted(ROWS) and len(read_calls(calls)) == 5  # one trial per row, baselines once

    def flag(label: str, name: str) -> str | None:
        argv = argvs[label]
        return argv[argv.index(name) + 1] if name in argv else None

    for label, method in METHODS.items():
        assert flag(label, "--kind") == "pretrained" and flag(label, "--method") == method
        assert flag(label, "--input-format") == "RGB" and flag(label, "--config-file").endswith("_rgb.yaml")
    assert flag("MoCo v2 checkpoint_0199", "MODEL.WEIGHTS").endswith(".pkl")  # the .pth converted once, for the sweep
    assert flag("supervised IN-1M", "--input-format") == "BGR" and flag("supervised IN-1M", "--method") is None
    assert flag("random init", "--config-file").endswith("_random.yaml")
    assert [flag(label, "--row-order") for label in ["supervised IN-1M", *METHODS, "random init"]] == \
        ["0", "1", "2", "3", "4"]
    sweep = json.loads((tmp_path / "out" / "R50-C4" / "sweep.json").read_text())
    assert len(sweep["trials"]) == 5 and sweep["launcher"] == "slurm"


# ----------------------------------------------------------------------------- a tiny sweep of two methods

@pytest.fixture(scope="module")
def two_methods(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A reference-converter MoCo v2 .pkl (--weights) and a PixPro .pkl listed with its label (--weights-list)."""
    d = tmp_path_factory.mktemp("two_methods")
    reference_moco_pkl(d / "moco_v2_800ep.pkl", resnet_state("resnet18", 4), mlp=True)
    d2_pkl(d / "pixpro_100ep.pkl", resnet_state("resnet18", 5), "PixPro")
    (d / "list.yaml").write_text("- label: PixPro 100ep\n  path: pixpro_100ep.pkl\n  input_format: RGB\n")
    return {"moco": d / "moco_v2_800ep.pkl", "pixpro": d / "pixpro_100ep.pkl", "list": d / "list.yaml"}


TINY_ROWS = ["random init", "supervised (tiny labels)", "MoCo v2 moco_v2_800ep", "PixPro 100ep"]


def _legacy_record(like: dict, label: str) -> dict:
    """``like`` as a release before rows had a method wrote it: kind "moco", no method, no order."""
    rec = {k: v for k, v in like.items() if k != "schema"}
    rec["pretrain"] = {"label": label, "kind": "moco", "weights": "/old/ckpt.pkl", "sha256": "cd" * 32}
    rec["metrics"] = {k: v + 1.0 for k, v in like["metrics"].items()}
    return rec


def test_a_tiny_sweep_of_two_methods_is_one_table_with_the_baselines_trained_once(two_methods, tiny_root: Path,
                                                                                  tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                                  capsys: pytest.CaptureFixture) -> None:
    """The --tiny runner with given backbones (preflight, plan, rows, records, table) around a stand-in train_net.py
    (real trials of given backbones: test_five_rows_plan_and_run_as_one_table)."""
    calls = install_fake_train_net(tmp_path, monkeypatch, FAKE)
    out = tiny_output(tmp_path / "out", tiny_root)
    sup = out / "pretrain" / "supervised-seed0" / "checkpoint_0007.pth.tar"  # the tiny supervised counterpart, made before
    sup.parent.mkdir(parents=True)
    torch.save({"state_dict": resnet_state("resnet18", 6), "arch": "resnet18", "epoch": 8}, sup)
    rc = run.main(["voc", "--tiny", "--trials", "1", "--output", str(out), "--weights", str(two_methods["moco"]),
                   "--weights-list", str(two_methods["list"]), "--parallel-trials", "2", "--", "SOLVER.MAX_ITER", "2"])
    text = capsys.readouterr()
    stdout = text.out
    assert rc == 0, stdout[-4000:] + text.err[-3000:]
    trials = read_calls(calls)
    assert len(trials) == 4 and all("--tiny" in c["argv"] for c in trials)
    # the plan: each backbone with its method, where it was given, and its own input-format decision
    assert "MoCo v2 moco_v2_800ep (pretrained, --weights 1): 1 trial(s)" in stdout
    assert "PixPro 100ep (pretrained, list.yaml entry 1): 1 trial(s)" in stdout
    assert "method   MoCo v2: " in stdout and "method   PixPro: " in stdout
    assert "input    RGB: set by --input-format" in stdout  # the list entry's input_format
    assert "input    RGB: moco_v2_800ep.pkl: torchvision-style Detectron2 pickle (__author__ 'MOCO')" in stdout
    assert "MoCo v2 (tiny pretraining)" not in stdout  # given backbones replace the tiny MoCo pretraining
    # one table, four rows in the given order, each backbone with its method and its gap to the supervised row
    cells = _main_table(stdout)
    assert [c[0] for c in cells] == TINY_ROWS and [c[1] for c in cells] == ["", "", "MoCo v2", "PixPro"]
    assert "In brackets: gap to supervised (tiny labels)" in stdout
    assert all(re.search(r"\(([+-]|−)?\d+\.\d( [▲▼])?\)", cell) for c in cells[2:] for cell in c[3:]), cells
    # the supervised and random-init rows ran once for the sweep: one record each, four in all
    recs = [read_record(p) for p in out.rglob(RECORD_NAME)]
    assert sorted(r["pretrain"]["label"] for r in recs) == sorted(TINY_ROWS)
    by = {r["pretrain"]["label"]: r["pretrain"] for r in recs}
    assert [by[label]["kind"] for label in TINY_ROWS] == ["random", "supervised", "pretrained", "pretrained"]
    assert [by[label]["method"] for label in TINY_ROWS] == [None, None, "MoCo v2", "PixPro"]
    assert [by[label]["order"] for label in TINY_ROWS] == [0, 1, 2, 3]
    assert by["PixPro 100ep"]["input_format"] == "RGB" and by["PixPro 100ep"]["sha256"] != by["MoCo v2 moco_v2_800ep"][
        "sha256"]
    # a record an earlier version wrote beside them (kind "moco") still tabulates, after the rows of this sweep
    like = next(r for r in recs if r["pretrain"]["kind"] == "random")
    write_record(out / "R18-C4" / "moco-v1-old" / "trial0", _legacy_record(like, "MoCo v1 old"))
    shown = subprocess.run([sys.executable, "-m", "results", "--runs", str(out)], cwd=REPO, capture_output=True,
                           text=True)
    assert shown.returncode == 0, shown.stderr[-2000:]
    cells = _main_table(shown.stdout)
    assert [c[0] for c in cells] == [*TINY_ROWS, "MoCo v1 old"] and cells[-1][1] == "MoCo v1", cells


def test_clashing_labels_are_refused_in_one_line_before_anything_trains(two_methods, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    moco, pixpro = str(two_methods["moco"]), str(two_methods["pixpro"])
    for weights, says in (([f"Mine={moco}", f"mine={pixpro}"], "rows 'Mine' (--weights 1) and 'mine' (--weights 2) "
                                                                "would share the folder mine/"),
                          ([f"Random Init={moco}"], "row 'Random Init' (--weights 1) names the folder of the "
                                                    "'random init' row"),
                          ([moco, moco], "would share the folder moco-v2-moco-v2-800ep/")):
        out = tmp_path / f"out{len(says)}"
        argv = ["voc", "--tiny", "--output", str(out)]
        for w in weights:
            argv += ["--weights", w]
        assert run.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("run_voc.sh: error: ") and says in err[0], err
        assert not out.exists()  # refused before the tiny data, the tiny pretraining or a trial
