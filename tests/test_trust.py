"""Numbers you can trust: no code runs from weights files, the input format comes from the weights, a
backbone that did not load stops the trial, every record carries its protocol fingerprint, and VOC XML
is read one way by the check, the loader and the evaluator."""

from __future__ import annotations

import pickle
import re
import shutil
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from weights_files import caffe2_pkl, d2_pkl, evil_pkl, evil_pth, resnet_state

from benchmarks import run, runner
from transfer.tasks.images import image_problem
from core.records import RECORD_NAME, read_record
from transfer import safe_pickle
from transfer.weights import decide_input_format

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "transfer" / "configs" / "tiny" / "voc_R_18_C4_tiny.yaml"
R18 = ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]


def _error_lines(stderr: str, prog: str) -> int:
    """Lines of ``stderr`` that are ours (torch may warn once per process about a missing CUDA runtime)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip() and "cpp_extension" not in ln]
    assert all(ln.startswith(f"{prog}: error") for ln in lines), lines
    return len(lines)


@pytest.fixture(scope="module")
def r18_state() -> dict[str, torch.Tensor]:
    return resnet_state("resnet18")


# ----------------------------------------------------------------------------- no code from weights files

def test_allow_list_reads_weights_and_refuses_everything_else(tmp_path: Path) -> None:
    good = {"model": OrderedDict(w=np.arange(6, dtype=np.float32).reshape(2, 3), s=np.float64(2.5)),
            "__author__": "x", "n": [1, (2, 3)], "b": b"\x00\xff"}
    for proto in (2, 4, 5):
        got = safe_pickle.loads(pickle.dumps(good, protocol=proto))
        assert np.array_equal(got["model"]["w"], good["model"]["w"]) and got["b"] == b"\x00\xff"
    with pytest.raises(safe_pickle.UnsafePickleError, match=r"torch\._utils\._rebuild_tensor"):
        safe_pickle.loads(pickle.dumps({"w": torch.zeros(2)}))  # torch tensors pickled plainly: not admitted
    marker = tmp_path / "ran"
    with pytest.raises(safe_pickle.UnsafePickleError, match=r"refused to load: it names the global (posix|os)\.system"):
        safe_pickle.load(evil_pkl(tmp_path / "evil.pkl", marker))
    assert not marker.exists()
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(good)[:40])
    with pytest.raises(safe_pickle.UnsafePickleError, match="truncated, corrupt or not"):
        safe_pickle.load(tmp_path / "cut.pkl")


def test_malicious_weights_run_nothing_in_runner_trainer_and_converter(tmp_path: Path, tiny_root: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    from transfer import convert, train_net

    marker = tmp_path / "code-ran"
    evil = evil_pkl(tmp_path / "evil.pkl", marker)
    # the runner: one line, before anything is generated or trained
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "run_voc.sh"), "--tiny", "--rows", "moco", "--weights",
                          str(evil), "--output", str(tmp_path / "out")], capture_output=True, text=True,
                         env={**runner.child_env(None), "VENV": str(Path(sys.executable).parents[1])})
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "refused to load" in res.stderr and "system" in res.stderr
    # the trainer
    rc = train_net.cli(["--config-file", str(TINY), "MODEL.WEIGHTS", str(evil), "OUTPUT_DIR", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert rc == 2 and _error_lines(err, "train_net.py") == 1 and "refused to load" in err
    # the converter, with a .pkl and with a .pth
    for bad in (evil, evil_pth(tmp_path / "evil.pth", marker)):
        assert convert.main([str(bad), str(tmp_path / "o.pkl")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "refused to load" in err and "weights_only=False" not in err
    assert not marker.exists() and not (tmp_path / "o.pkl").exists()


# ----------------------------------------------------------------------------- input format from the weights

def test_input_format_is_read_from_the_file(tmp_path: Path, r18_state) -> None:
    cases = {caffe2_pkl(tmp_path / "msra.pkl", r18_state): ("BGR", "Caffe2"),
             d2_pkl(tmp_path / "moco_ref.pkl", r18_state, "MOCO"): ("RGB", "'MOCO'"),
             d2_pkl(tmp_path / "tv.pkl", r18_state, "torchvision"): ("RGB", "'torchvision'")}
    for path, (fmt, why) in cases.items():
        decision = decide_input_format(str(path))
        assert decision.format == fmt and why in decision.reason, decision
    assert decide_input_format("detectron2://ImageNetPretrained/MSRA/R-50.pkl").format == "BGR"
    assert decide_input_format("detectron2://ImageNetPretrained/torchvision/R-50.pkl").format == "RGB"
    assert decide_input_format(str(tmp_path / "ckpt.pth.tar")).format == "RGB"
    assert decide_input_format(str(tmp_path / "tv.pkl"), "BGR").reason == "set by --input-format"


def _dry_run(capsys, *argv: str) -> tuple[int, str]:
    rc = run.main(["voc", "--dry-run", *argv])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def test_dry_run_and_records_use_the_config_the_weights_need(tiny_root: Path, tmp_path: Path, r18_state,
                                                             capsys: pytest.CaptureFixture) -> None:
    msra = caffe2_pkl(tmp_path / "msra.pkl", r18_state)
    moco = d2_pkl(tmp_path / "moco_ref.pkl", r18_state, "MOCO")
    tv = d2_pkl(tmp_path / "tv.pkl", r18_state, "torchvision")
    common = ["--datasets", str(tiny_root), "--output", str(tmp_path / "out"), "--trials", "1"]
    rc, text = _dry_run(capsys, *common, "--supervised-weights", str(msra), "--weights", str(moco), "--", *R18)
    assert rc == 0, text
    assert "voc_R_50_C4_24k.yaml\n" in text and "BGR: msra.pkl: Caffe2/MSRA weights" in text
    assert "voc_R_50_C4_24k_rgb.yaml" in text and "RGB: moco_ref.pkl: torchvision-style" in text
    loaded = re.findall(r"backbone (\d+)/(\d+) tensors loaded, 0 missing, 0 shape-mismatched(, \d+ BN statistics folded)?",
                        text)
    assert len(loaded) == 2 and loaded[0][2] and not loaded[1][2], loaded  # Caffe2 file: BN folded; MoCo: all
    assert loaded[1][0] == loaded[1][1] == str(int(loaded[0][0]) + int(loaded[0][2].split()[1]))
    assert "dry run: nothing was trained" in text and not (tmp_path / "out" / "R50-C4").exists()
    rc, text = _dry_run(capsys, *common, "--rows", "moco", "--weights", str(tv), "--", *R18)
    assert rc == 0 and "voc_R_50_C4_24k_rgb.yaml" in text and "'torchvision'" in text
    rc, text = _dry_run(capsys, *common, "--rows", "moco", "--weights", str(tv), "--weights-format", "BGR", "--", *R18)
    assert "voc_R_50_C4_24k.yaml\n" in text and "set by --input-format" in text
    # the records of real trials (their formats, configs, load reports, fingerprints): tests/test_backbone_rows.py,
    # whose five-row sweep has this supervised Caffe2 row and this reference-MoCo .pkl among its rows


# ----------------------------------------------------------------------------- the load report

def test_mis_prefixed_weights_are_refused_before_training(tiny_root: Path, tmp_path: Path, r18_state,
                                                          capsys: pytest.CaptureFixture) -> None:
    bad = d2_pkl(tmp_path / "prefixed.pkl", r18_state, "someone", prefix="encoder.body.")
    # the prefix hides nothing from Detectron2's suffix matching: rename the stages instead
    with open(bad, "rb") as f:
        data = pickle.load(f)
    data["model"] = {k.replace("res", "stage"): v for k, v in data["model"].items()}
    bad.write_bytes(pickle.dumps(data))
    out = tmp_path / "trial"
    res = subprocess.run([sys.executable, str(REPO / "transfer" / "train_net.py"), "--config-file", str(TINY),
                          "MODEL.WEIGHTS", str(bad), "OUTPUT_DIR", str(out)], capture_output=True, text=True,
                         env={**runner.child_env(tiny_root), "OMP_NUM_THREADS": "1"})
    err = res.stderr
    assert res.returncode == 2 and _error_lines(err, "train_net.py") == 1
    assert re.search(r"only 0/(\d+) backbone tensors loaded: \1 backbone tensors not filled", err), err
    assert "transfer/convert.py" in err
    assert not list(out.glob("model_*.pth"))
    rec = read_record(out / RECORD_NAME)  # a failed record with the refusal, for status views and --wait
    assert rec["status"] == "failed" and "backbone tensors loaded" in rec["error"] and not rec["metrics"]
    assert "Starting training" not in (out / "log.txt").read_text()
    rc, text = _dry_run(capsys, "--tiny", "--rows", "moco", "--weights", str(bad), "--output", str(tmp_path / "o"))
    assert rc == 2 and re.search(r"only 0/\d+ backbone tensors loaded", text)


def test_load_report_counts_shape_mismatches_and_expected_misses() -> None:
    from transfer.load_report import build_report

    model = {"backbone.stem.conv1.weight": (64, 3, 7, 7), "backbone.res2.0.conv1.weight": (64, 64, 3, 3),
             "roi_heads.res5.0.conv1.weight": (512, 256, 3, 3), "roi_heads.res5.norm.weight": (512,),
             "roi_heads.box_predictor.cls_score.weight": (21, 512)}
    file = {"stem.conv1.weight": (64, 3, 7, 7), "res2.0.conv1.weight": (64, 64, 3, 3),
            "res5.0.conv1.weight": (512, 128, 3, 3), "fc.weight": (1000, 512)}
    missing = ["roi_heads.res5.0.conv1.weight", "roi_heads.res5.norm.weight", "roi_heads.box_predictor.cls_score.weight"]
    rep = build_report("w.pkl", model, file, missing, ["fc.weight"], [])
    assert (rep.backbone_total, rep.backbone_loaded) == (3, 2)
    assert rep.shape_mismatch == ["roi_heads.res5.0.conv1.weight"] and not rep.backbone_missing
    assert rep.expected_missing == ["roi_heads.box_predictor", "roi_heads.res5"]
    assert not rep.ok and "1 with another shape" in rep.refusal() and "architecture differs" in rep.refusal()


# ----------------------------------------------------------------------------- fingerprint in the tables

def _record(cfg_file: str, opts: list[str], label: str, trial: int, ap50: float) -> dict:
    from transfer.protocol import fingerprint
    from transfer.config import load_cfg

    cfg = load_cfg(str(REPO / "transfer" / "configs" / cfg_file), opts)
    return {"schema": "moco-transfer-bench/trial-record/1", "task": "voc_det", "arch": "R50-C4", "schedule": "24k",
            "pretrain": {"label": label, "kind": "moco", "sha256": "ab" * 32}, "trial": trial, "seed": trial,
            "status": "finished", "metrics": {"AP50": ap50, "AP": 50.0, "AP75": 55.0}, "trials_requested": 2,
            "fingerprint": fingerprint(cfg, 8, "0.7.2 (compiled ops)"), "_path": f"/x/{label}/{trial}/r.json"}


def test_results_never_average_two_protocols_and_footnote_the_deviating_one() -> None:
    from results.render_md import render_markdown
    from results.tables import build_tables

    paper = [_record("voc/voc_R_50_C4_24k_rgb.yaml", [], "MoCo", t, 80.0 + t) for t in range(2)]
    warm = [_record("voc/voc_R_50_C4_24k_rgb.yaml", ["SOLVER.WARMUP_ITERS", "1000"], "MoCo", t, 70.0 + t)
            for t in range(2)]
    (table,) = build_tables(paper + warm)
    rows = {r.display: r for r in table.rows}
    assert len(rows) == 2 and all(r.finished == 2 for r in rows.values())
    faithful = next(r for r in rows.values() if not r.deviations)
    deviating = next(r for r in rows.values() if r.deviations)
    assert faithful.cells["AP50"].mean == 80.5 and deviating.cells["AP50"].mean == 70.5
    assert deviating.deviations == ["SOLVER.WARMUP_ITERS 1000 (paper 100)"]
    assert deviating.display.endswith("†") and not faithful.display.endswith("†")
    text = render_markdown([table])
    assert "protocol differs from the paper's for this table: SOLVER.WARMUP_ITERS 1000 (paper 100)" in text


def test_every_full_config_matches_the_paper_protocol() -> None:
    from transfer.protocol import deviations, fingerprint, paper_protocol
    from transfer.trainer import arch_of, load_cfg, schedule_of, task_of

    files = sorted(p for p in (REPO / "transfer" / "configs").glob("*/*.yaml")
                   if p.parent.name not in ("tiny", "custom"))  # custom: tests/test_custom_data.py
    assert len(files) == 42  # 24 of Tables 2, 5, 6 (Cityscapes) + 14 of Table 6's other four tasks + 4 ViTDet
    for path in files:
        cfg = load_cfg(str(path), [], read_only=path.parent.name == "densepose")  # DensePose is not installed here
        task = task_of(cfg)
        key = (task, arch_of(cfg), schedule_of(cfg, task))
        kind = ("supervised" if "_frozenbn" in path.stem else "pretrained" if path.stem.endswith("_rgb")
                else "random" if path.stem.endswith("_random") else "supervised" if path.stem.endswith("_supervised")
                else "pretrained" if "_ViTDet_" in path.stem else "supervised")
        # ViTDet published B/L/H only: the ViT-S entry is the suite's reading (ViT-B's recipe, ViT-S's width)
        assert paper_protocol(*key) is not None, key
        # LVIS: the paper's supervised row had BN frozen (protocol.yaml rows:), so the frozen-BN configs of the
        # supervised row match and the BN-tuned supervised config is the deviation
        lvis_tuned = task.startswith("lvis") and kind == "supervised" and "_frozenbn" not in path.stem
        expected = ["MODEL.RESNETS.NORM naiveSyncBN (paper FrozenBN)"] if lvis_tuned else []
        found = deviations(fingerprint(cfg, 8, "x")["values"], *key, kind)
        if path.stem.endswith("_frozenbn_rgb"):  # torchvision-style supervised weights: not the paper's MSRA input
            found = [d for d in found if not d.startswith(("INPUT.FORMAT", "MODEL.PIXEL_", "MODEL.RESNETS.STRIDE"))]
        assert found == expected, path.name
    cfg = load_cfg(str(files[-1]), ["SOLVER.AMP.ENABLED", "True"])  # a deviation is found
    task = task_of(cfg)
    assert "SOLVER.AMP.ENABLED True (paper False)" in deviations(
        fingerprint(cfg, 8, "x")["values"], task, arch_of(cfg), schedule_of(cfg, task), "moco")


# ----------------------------------------------------------------------------- annotations and images

def _copy_voc(tiny_root: Path, dest: Path) -> Path:
    for name in ("VOC2007", "VOC2012"):
        shutil.copytree(tiny_root / name, dest / name)
    return dest


def _labelme_style(xml: Path) -> None:
    """What labelme2voc-style tools write: empty <difficult/>/<truncated/>, float coordinates."""
    import re

    text = xml.read_text()
    text = re.sub(r"<difficult>\d</difficult>", "<difficult />", text)
    text = re.sub(r"<truncated>\d</truncated>", "<truncated></truncated>", text)
    text = re.sub(r"<(xmin|ymin|xmax|ymax)>(\d+)</\1>", r"<\1>\2.0</\1>", text)
    xml.write_text(text)


def test_real_world_voc_xml_trains_and_evaluates(tiny_root: Path, tmp_path: Path) -> None:
    from transfer.tasks.voc import check_voc

    root = _copy_voc(tiny_root, tmp_path / "datasets")
    for xml in (root / "VOC2007" / "Annotations").glob("*.xml"):
        _labelme_style(xml)  # the test split too: the VOC07 evaluator reads it
    notes: list[str] = []
    assert check_voc(root, notes=notes) == []
    assert any("empty or missing <difficult> read as 0" in n and "integral float coordinates" in n for n in notes)
    out = tmp_path / "trial"
    res = subprocess.run([sys.executable, str(REPO / "transfer" / "train_net.py"), "--config-file", str(TINY),
                          "--seed", "1", "SOLVER.MAX_ITER", "2", "TEST.PRECISE_BN.ENABLED", "False",
                          "OUTPUT_DIR", str(out)], capture_output=True, text=True,
                         env={**runner.child_env(root), "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    rec = read_record(out / RECORD_NAME)
    assert rec["status"] == "finished" and set(rec["metrics"]) == {"AP50", "AP", "AP75"}
    assert "forms read leniently" in (out / "log.txt").read_text()


def test_broken_annotations_and_images_stop_the_sweep_before_training(tiny_root: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    from transfer.tasks.voc import check_voc

    root = _copy_voc(tiny_root, tmp_path / "datasets")
    xmls = sorted((root / "VOC2007" / "Annotations").glob("*.xml"))
    text = xmls[0].read_text()
    xmls[0].write_text(text.replace("<xmin>", "<xmin>1", 1).replace("</xmin>", ".5</xmin>", 1))
    xmls[1].write_text(xmls[1].read_text().replace("<difficult>0</difficult>", "<difficult>maybe</difficult>", 1))
    jpeg = root / "VOC2007" / "JPEGImages" / (xmls[2].stem + ".jpg")
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])  # a copy cut in half
    problems = check_voc(root)
    assert any(xmls[0].name in p and "not an integer" in p for p in problems)
    assert any(xmls[1].name in p and "'maybe', not a number" in p for p in problems)
    assert any(jpeg.name in p and "truncated JPEG" in p for p in problems)
    rc, text = _dry_run(capsys, "--datasets", str(root), "--rows", "random", "--output", str(tmp_path / "out"))
    assert rc == 2 and "truncated JPEG" in text and not (tmp_path / "out").exists()
    res = subprocess.run([sys.executable, "-m", "benchmarks.dataset_check", "voc", "--datasets", str(root)],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 1 and "truncated JPEG" in res.stdout


def test_image_problems_found_without_decoding(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "ok.jpg")
    Image.new("RGB", (40, 30)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:-20])
    (tmp_path / "text.jpg").write_text("not an image")
    assert image_problem(tmp_path / "ok.jpg") is None and image_problem(tmp_path / "ok.png", (40, 30)) is None
    assert "annotations say 30x40 but the image is 40x30" in image_problem(tmp_path / "ok.jpg", (30, 40))
    assert "truncated PNG" in image_problem(tmp_path / "cut.png")
    assert "unreadable image" in image_problem(tmp_path / "text.jpg")
    assert "missing" in image_problem(tmp_path / "none.jpg")


def test_offline_supervised_weights_fail_in_one_line_before_the_sweep(tiny_root: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import transfer.weights as w

    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(w, "D2_URL", "http://127.0.0.1:9/detectron2/")  # nothing listens there
    rc, text = _dry_run(capsys, "--datasets", str(tiny_root), "--rows", "supervised", "--output", str(tmp_path / "o"))
    want = tmp_path / "cache" / "detectron2" / "ImageNetPretrained" / "MSRA" / "R-50.pkl"
    assert rc == 2 and f"put the file at {want}" in text and "--supervised-weights" in text
    assert not (tmp_path / "o" / "R50-C4").exists()
