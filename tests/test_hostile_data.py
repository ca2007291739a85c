"""Hostile and real-world data and run folders (issue 22): annotations, images and trial folders that used to
hang a check, crash with a traceback, or give a wrong number; and real annotation-tool exports that used to
be refused. Every input is generated here."""

from __future__ import annotations

import ctypes
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_runs import FAST, SMALL, alive, train_net_pids

from benchmarks import runner
from benchmarks.tiny_custom import write_custom
from core.records import RECORD_NAME, read_record

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "transfer" / "configs" / "tiny" / "voc_R_18_C4_tiny.yaml"
CUSTOM_FAST = SMALL


def _coco_paths(coco: Path) -> list[str]:
    return ["--train", f"{coco}/annotations/train.json:{coco}/images/train",
            "--test", f"{coco}/annotations/test.json:{coco}/images/test"]


# ----------------------------------------------------------------------------- your own COCO json

def test_coco_boxes_areas_and_ids_are_checked_against_the_image(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import run

    monkeypatch.setattr(runner, "TRAIN_NET", tmp_path / "never_run.py")
    coco = write_custom(tmp_path / "data", ["widget"], train=10, test=6)["coco"]
    path = coco / "annotations" / "test.json"
    doc = json.loads(path.read_text())
    w, h = doc["images"][0]["width"], doc["images"][0]["height"]
    bad_boxes = {1: [math.nan, 5, 10, 10], 2: [5, 5, math.inf, 10], 3: [-50, 5, 10, 10], 4: [5, 5, 1e30, 10],
                 5: [w + 100, h + 100, 10, 10]}  # the last one entirely outside its image
    anns = doc["annotations"]
    for i, box in bad_boxes.items():
        anns[i - 1]["bbox"] = box
    anns.append({**anns[0], "id": 100, "bbox": [2, 2, 4, 4], "area": -5.0})
    anns.append({**anns[0], "id": 101, "bbox": [2, 2, 4, 4], "area": 1e20})
    for a in anns[-2:]:
        a["image_id"] = doc["images"][0]["id"]
    path.write_text(json.dumps(doc))  # NaN and Infinity as JSON tokens, as Python writes them
    rc = run.main(["custom", *_coco_paths(coco), "--output", str(tmp_path / "out"), "--dry-run"])
    err = capsys.readouterr().err
    lines = [ln.strip() for ln in err.splitlines()[1:]]
    assert rc == 2 and "Traceback" not in err
    for i in (1, 2, 4):
        assert any(f"annotation id {i}: bbox" in ln and "4 finite numbers" in ln for ln in lines) or \
            any(f"annotation id {i}: bbox" in ln and "outside" in ln for ln in lines), (i, lines)
    for i in (3, 5):
        assert any(f"annotation id {i}: bbox" in ln and "lies outside the" in ln for ln in lines), (i, lines)
    assert any("annotation id 100: area -5.0 is not a finite number >= 0" in ln for ln in lines), lines
    assert any("annotation id 101: area 1e+20 is larger than the" in ln for ln in lines), lines


def test_unusable_coco_ids_and_deep_json_get_one_line(tmp_path: Path) -> None:
    from transfer.tasks.checks import Problems, check_coco_json

    coco = write_custom(tmp_path / "data", ["widget"], train=4, test=2)["coco"]
    src = json.loads((coco / "annotations" / "train.json").read_text())
    cases = {"unhashable": lambda d: d["images"][0].update(id=[1]), "mixed": lambda d: d["images"][0].update(id="1"),
             "bool": lambda d: d["annotations"][0].update(category_id=True)}
    for name, change in cases.items():
        doc = json.loads(json.dumps(src))
        change(doc)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        problems = Problems()
        assert check_coco_json(path, coco / "images" / "train", problems, [], custom=True) is None
        assert any("ids are integers" in ln or "mixes integer and string" in ln for ln in problems.lines()), name
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    problems = Problems()
    assert check_coco_json(deep, coco / "images" / "train", problems, [], custom=True) is None
    assert problems.lines() == [f"{deep}: JSON nested too deeply to be an annotation file"]
    res = subprocess.run([sys.executable, "-m", "benchmarks.run", "custom", "--train", f"{deep}:{coco}/images/train",
                          "--test", f"{coco}/annotations/test.json:{coco}/images/test", "--dry-run", "--output",
                          str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO, timeout=300,
                         env={**runner.child_env(None), "OMP_NUM_THREADS": "1"})
    assert res.returncode == 2 and "Traceback" not in res.stderr and "nested too deeply" in res.stderr, res.stderr


# ----------------------------------------------------------------------------- your own VOC layout

def _labelme(xml: Path, k: int) -> None:
    """What labelme/CVAT exports look like: non-integral float boxes, an empty <difficult/>, 0-based boxes."""
    text = xml.read_text()
    text = re.sub(r"<difficult>\d</difficult>", "<difficult />", text)
    text = re.sub(r"<xmin>(\d+)</xmin>", lambda m: f"<xmin>{int(m.group(1)) - 1}.369140625</xmin>"
                  if k % 2 else "<xmin>0.0</xmin>", text)
    text = re.sub(r"<ymax>(\d+)</ymax>", lambda m: f"<ymax>{int(m.group(1)) - 1}.56</ymax>", text)
    xml.write_text(text)


def test_a_labelme_voc_export_trains_and_evaluates_through_run_custom(tmp_path: Path) -> None:
    voc = write_custom(tmp_path / "data", ["widget", "gadget"], train=6, test=3)["voc"]
    for k, xml in enumerate(sorted((voc / "Annotations").glob("*.xml"))):
        _labelme(xml, k)
    assert "<difficult />" in xml.read_text() and ".369140625</xmin>" in \
        (sorted((voc / "Annotations").glob("*.xml"))[1]).read_text()
    out = tmp_path / "out"
    cmd = ["bash", str(REPO / "benchmarks" / "run_custom.sh"), "--tiny", "--voc", str(voc), "--rows", "random",
           "--output", str(out), "--max-iter", "2", "--", *CUSTOM_FAST]
    env = {**runner.child_env(None), "VENV": str(Path(sys.executable).parents[1]), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "non-integral coordinates read as they are" in res.stdout
    (path,) = out.rglob(RECORD_NAME)
    rec = read_record(path)
    assert rec["status"] == "finished" and set(rec["metrics"]) >= {"AP50", "AP", "AP75", "APbb"}
    assert all(math.isfinite(rec["metrics"][k]) for k in ("AP50", "AP", "AP75", "APbb"))
    # the real VOC benchmark stays strict: the same file there is one line naming it
    from transfer.voc_xml import VocXmlError, read_voc_xml

    with pytest.raises(VocXmlError, match="not an integer"):
        read_voc_xml(sorted((voc / "Annotations").glob("*.xml"))[1], float_boxes=False)


def test_float_boxes_are_evaluated_exactly_and_classes_the_metric_cannot_count_are_left_out(tmp_path: Path) -> None:
    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.structures import Boxes, Instances

    from benchmarks.own_data import check_voc_dir
    from transfer import custom_data, voc_xml
    from transfer.evaluators import VOCAndCOCOEvaluator

    voc_xml.install()  # as train_net.py does: the evaluator reads XML like the loader

    classes = ["widget", "gadget", "gizmo"]
    voc = write_custom(tmp_path / "data", classes, train=6, test=3)["voc"]
    test_ids = (voc / "ImageSets" / "Main" / "test.txt").read_text().split()
    for k, xml in enumerate(sorted((voc / "Annotations").glob("*.xml"))):
        _labelme(xml, k)
        if xml.stem in test_ids:  # every gizmo of the test split is difficult: the VOC metric counts none
            xml.write_text(re.sub(r"(<name>gizmo</name>.*?)<difficult />", r"\1<difficult>1</difficult>",
                                  xml.read_text(), flags=re.S))
    notes: list[str] = []
    problems, data = check_voc_dir(voc, classes, "widgets", notes)
    assert problems == [] and data is not None
    assert any(n.startswith("WARNING: class(es) gizmo have no test instance") for n in notes), notes
    for entry in data.entries:
        custom_data.register({**entry, "name": entry["name"] + "_ideal"})
    name = data.test_name + "_ideal"
    ev = VOCAndCOCOEvaluator(name, str(tmp_path / "eval"))
    ev.reset()
    for d in DatasetCatalog.get(name):  # an ideal detector: exactly the annotated (float) boxes
        inst = Instances((d["height"], d["width"]))
        inst.pred_boxes = Boxes(torch.tensor([a["bbox"] for a in d["annotations"]], dtype=torch.float64).float())
        inst.scores = torch.ones(len(d["annotations"]))
        inst.pred_classes = torch.tensor([a["category_id"] for a in d["annotations"]])
        ev.process([{k: d[k] for k in ("image_id", "file_name", "height", "width")}], [{"instances": inst}])
    result = ev.evaluate()
    assert set(result["bbox_per_class_AP50"]) == {"widget", "gadget"}  # gizmo left out (it used to be 0 in the mean)
    assert result["bbox"]["AP50"] == pytest.approx(100.0) and result["bbox"]["AP75"] == pytest.approx(100.0)


def test_duplicate_class_names_and_unreadable_files_are_named_first(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from benchmarks import run
    from benchmarks.own_data import check_voc_dir

    voc = write_custom(tmp_path / "data", ["widget", "gadget"], train=4, test=2)["voc"]
    with pytest.raises(SystemExit) as stop:
        run.main(["custom", "--voc", str(voc), "--classes", "widget,widget,gadget", "--dry-run", "--output",
                         str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "--classes names widget more than once" in err
    for xml in (voc / "Annotations").glob("*.xml"):  # no annotation readable: say why, not "no <object>"
        xml.write_text(re.sub(r"<xmin>\d+</xmin>", "<xmin>left</xmin>", xml.read_text()))
    problems, _ = check_voc_dir(voc, None, None, [])
    assert problems and "not a number" in problems[0] and not any("no <object>" in p for p in problems), problems


# ----------------------------------------------------------------------------- files that are not files

def test_fifos_and_devices_are_refused_not_waited_for(tmp_path: Path, tiny_root: Path) -> None:
    import shutil

    root = tmp_path / "datasets"
    for name in ("VOC2007", "VOC2012"):
        shutil.copytree(tiny_root / name, root / name)
    xml = sorted((root / "VOC2007" / "Annotations").glob("*.xml"))[0]
    xml.unlink()
    os.mkfifo(xml)  # nothing ever writes to it: opening it for reading blocks
    jpeg = sorted((root / "VOC2012" / "JPEGImages").glob("*.jpg"))[0]
    jpeg.unlink()
    os.mkfifo(jpeg)
    res = subprocess.run([sys.executable, "-m", "benchmarks.dataset_check", "voc", "--datasets", str(root)],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 1
    assert f"{xml}: cannot be read (is a FIFO (named pipe), not a regular file)" in res.stdout
    assert f"{jpeg}: is a FIFO (named pipe), not a regular file" in res.stdout
    coco = write_custom(tmp_path / "data", ["widget"], train=4, test=2)["coco"]
    (coco / "annotations" / "test.json").unlink()
    os.mkfifo(coco / "annotations" / "test.json")
    weights = tmp_path / "w.pkl"
    os.mkfifo(weights)
    code = ("import sys; from pathlib import Path; from transfer.tasks.checks import Problems, _load_json\n"
            "from transfer import safe_pickle\np = Problems(); _load_json(Path(sys.argv[1]), p); print(p.lines()[0])\n"
            "for w in (sys.argv[2], '/dev/zero'):\n"
            " try: safe_pickle.load(w)\n except safe_pickle.UnsafePickleError as e: print(e)")
    res = subprocess.run([sys.executable, "-c", code, str(coco / "annotations" / "test.json"), str(weights)],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        f"{coco / 'annotations' / 'test.json'}: cannot read (is a FIFO (named pipe), not a regular file)",
        f"{weights}: is not a regular file (a FIFO, socket or device), expected a weights file",
        "/dev/zero: is not a regular file (a FIFO, socket or device), expected a weights file"]


def _bomb_jpeg(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A small JPEG whose header claims ``width`` x ``height`` pixels (PIL refuses more than ~179 Mpixel)."""
    from PIL import Image

    Image.new("RGB", (16, 16), (10, 200, 10)).save(path)
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return path


def test_a_decompression_bomb_header_is_one_line(tmp_path: Path, tiny_root: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    import shutil

    from benchmarks import run
    from transfer.tasks.images import image_problem

    assert "20000x20000 pixels, more than PIL" in image_problem(_bomb_jpeg(tmp_path / "b.jpg"))
    root = tmp_path / "datasets"
    for name in ("VOC2007", "VOC2012"):
        shutil.copytree(tiny_root / name, root / name)
    jpeg = sorted((root / "VOC2007" / "JPEGImages").glob("*.jpg"))[0]
    _bomb_jpeg(jpeg)
    rc = run.main(["voc", "--datasets", str(root), "--rows", "random", "--output", str(tmp_path / "out"), "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2 and f"{jpeg}: 20000x20000 pixels" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- trial folders and processes

def test_a_heartbeat_in_the_future_does_not_hold_a_trial_for_ever(tmp_path: Path) -> None:
    from benchmarks.locks import OWNER_NAME, TrialLock, is_locked

    tmp_path.joinpath(OWNER_NAME).write_text(json.dumps({"host": "node-b", "pid": 1, "heartbeat": time.time() + 86400,
                                                         "active": True}))
    assert not is_locked(tmp_path)
    lock = TrialLock(tmp_path)
    assert lock.acquire()  # it used to be refused until the clock reached tomorrow
    lock.release()
    for text in (json.dumps({"host": "node-b", "heartbeat": "soon"}), "[" * 100_000):  # unreadable: no live holder
        tmp_path.joinpath(OWNER_NAME).write_text(text)
        lock = TrialLock(tmp_path)
        assert lock.acquire()
        lock.release()


def test_periodic_checkpoints_of_a_finished_trial_are_removed_on_the_next_run(tmp_path: Path) -> None:
    from core.records import write_record

    out = tmp_path / "trial0"
    out.mkdir()
    write_record(out, {"task": "voc_det", "arch": "R18-C4", "schedule": "tiny", "pretrain": {"label": "random init"},
                       "trial": 0, "seed": 0, "status": "finished", "metrics": {"AP50": 1.0}})
    (out / "model_0000099.pth").write_bytes(b"x" * 1000)  # the runner was killed right after the record
    (out / "model_final.pth").write_bytes(b"y" * 1000)
    trial = runner.Trial(runner.Row("random init", "random", TINY), 0, 0, out)
    lines: list[str] = []
    assert runner.run_trial(trial, trials_requested=1, env={}, log=lines.append) == "skipped"
    assert not (out / "model_0000099.pth").exists() and (out / "model_final.pth").exists()
    assert "periodic checkpoints deleted" in lines[0]


_PR_SET_CHILD_SUBREAPER = 36


def test_a_trial_never_trains_as_an_orphan_even_while_importing(tmp_path: Path, tiny_root: Path) -> None:
    """The runner is SIGKILLed while its trial is still importing, under a child subreaper (as with ``tini -s`` or
    ``systemd --user``: the orphan is re-parented to the subreaper, not to init)."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0  # this test process adopts orphans
    out = tmp_path / "trial0"
    stub = tmp_path / "stub_runner.py"
    stub.write_text(f"import sys\nsys.path.insert(0, {str(REPO)!r})\nfrom pathlib import Path\n"
                    "from benchmarks import runner\n"
                    f"trial = runner.Trial(runner.Row('random init', 'random', Path({str(TINY)!r})), 0, 0, "
                    f"Path({str(out)!r}), ['SOLVER.MAX_ITER', '100000', *{FAST!r}])\n"
                    f"runner.run_trial(trial, trials_requested=1, env=runner.child_env(Path({str(tiny_root)!r})))\n")
    proc = subprocess.Popen([sys.executable, str(stub)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids: list[int] = []
    try:
        deadline = time.time() + 120
        while not pids and time.time() < deadline:
            pids = train_net_pids(out)
            time.sleep(0.01)
        assert pids, "the trial never started"
        proc.kill()  # the runner dies while its trial is importing torch and Detectron2
        proc.wait()
        deadline = time.time() + 60
        while any(alive(p) for p in pids) and time.time() < deadline:
            time.sleep(0.2)
        survivors = [p for p in pids if alive(p)]
        assert not survivors, "the trial kept running as an orphan"
        log = out / "log.txt"
        assert not log.exists() or "Starting training" not in log.read_text()
    finally:
        for p in train_net_pids(out):
            os.kill(p, signal.SIGKILL)
        for p in pids:
            try:
                os.waitpid(p, 0)  # adopted by this process: reap it
            except ChildProcessError:
                pass
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
