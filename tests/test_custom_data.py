"""Your own data (``run_custom.sh``) and low-data variants (``--train-fraction``): the epoch rule, the subset draw,
the dataset spec, bad inputs stopped before training, and end-to-end sweeps on tiny generated data with
non-VOC class names (records, fingerprints, tables)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import runner
from benchmarks.tiny_custom import write_custom
from core.records import RECORD_NAME, read_record
from tiny_runs import SMALL
from weights_files import d2_pkl, resnet_state

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "transfer" / "configs"
FAST = [*SMALL, "SOLVER.CHECKPOINT_PERIOD", "100"]


def _records(out: Path) -> list[dict]:
    return [read_record(p) for p in sorted(out.rglob(RECORD_NAME))]


# ----------------------------------------------------------------------------- the epoch rule

def test_epoch_rule_reproduces_the_paper_voc_schedule_and_scales_with_data_and_batch() -> None:
    from transfer.schedule import epoch_rule_schedule, reference

    ref, images = reference()  # read from protocol.yaml: the VOC entry, trainval07+12
    assert (ref.max_iter, ref.steps, ref.warmup, ref.batch, ref.base_lr, images) == (24000, (18000, 22000), 100,
                                                                                      16, 0.02, 16551)
    assert round(ref.epochs(images), 1) == 23.2
    assert epoch_rule_schedule(16551) == ref  # VOC itself gets exactly the paper's schedule
    tenth = epoch_rule_schedule(1655)
    assert (tenth.max_iter, tenth.steps, tenth.warmup, tenth.base_lr) == (2400, (1800, 2200), 10, 0.02)
    half_batch = epoch_rule_schedule(16551, batch=8)  # Detectron2's linear scaling: lr and iterations
    assert (half_batch.max_iter, half_batch.steps, half_batch.warmup, half_batch.base_lr) == (48000, (36000, 44000),
                                                                                              200, 0.01)
    assert epoch_rule_schedule(580, epochs=10).max_iter == 363  # 10 x 580 / 16 = 362.5, rounded half up
    short = epoch_rule_schedule(12, max_iter=3)  # steps on or past the end are dropped
    assert (short.max_iter, short.steps, short.warmup) == (3, (2,), 0)


def test_custom_c4_configs_are_the_paper_voc_protocol_at_voc_size() -> None:
    from transfer.protocol import deviations, fingerprint
    from transfer.schedule import epoch_rule_schedule
    from transfer.config import load_cfg

    opts = [*epoch_rule_schedule(16551).opts(), "MODEL.ROI_HEADS.NUM_CLASSES", "20"]
    for flavour, kind in (("", "supervised"), ("_rgb", "pretrained"), ("_random", "random")):
        cfg = load_cfg(str(CONFIGS / "custom" / f"custom_R_50_C4{flavour}.yaml"), opts)
        assert deviations(fingerprint(cfg, 8, "x")["values"], "voc_det", "R50-C4", "24k", kind) == [], flavour
    fpn = load_cfg(str(CONFIGS / "custom" / "custom_R_50_FPN_rgb.yaml"), [])
    assert (fpn.MODEL.RESNETS.NORM, fpn.MODEL.FPN.NORM, fpn.MODEL.ROI_BOX_HEAD.NORM) == ("naiveSyncBN",) * 3


# ----------------------------------------------------------------------------- the subset and the spec

def test_subset_draw_is_fixed_nested_and_differs_across_seeds() -> None:
    from benchmarks.sweep_data import draw_subset

    ids = [("voc_2007_trainval", f"{i:06d}") for i in range(200)] + [("voc_2012_trainval", f"2008_{i:06d}")
                                                                     for i in range(200)]
    quarter = draw_subset(ids, 0.25, 0)
    assert len(quarter) == 100 and quarter == draw_subset(list(ids), 0.25, 0)  # fixed
    assert {d for d, _ in quarter} == {"voc_2007_trainval", "voc_2012_trainval"}
    assert set(draw_subset(ids, 0.1, 0)) < set(quarter)  # a smaller fraction of one seed is inside a larger one
    assert set(draw_subset(ids, 0.25, 1)) != set(quarter)
    assert len(draw_subset(ids, 0.001, 0)) == 1


def test_a_sweep_folder_never_takes_another_spec(tmp_path: Path) -> None:
    from benchmarks.sweep_data import SweepDataError, write_spec

    spec = {"version": 1, "datasets": [], "train": [], "fingerprint": {"train_subset_sha256": "a", "train_images": 4}}
    path = write_spec(tmp_path, spec)
    write_spec(tmp_path, {**spec, "record": {"moved": True}})  # same data: rewritten (e.g. data moved)
    assert json.loads(path.read_text())["record"] == {"moved": True}
    with pytest.raises(SweepDataError, match="train_subset_sha256 differ.*another --output"):
        write_spec(tmp_path, {**spec, "fingerprint": {"train_subset_sha256": "b", "train_images": 4}})


# ----------------------------------------------------------------------------- bad input

def test_bad_custom_inputs_get_one_line_each_before_training(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import run

    monkeypatch.setattr(runner, "TRAIN_NET", tmp_path / "never_run.py")
    paths = write_custom(tmp_path / "data", ["widget"], train=4, test=2)
    coco = paths["coco"]
    train = json.loads((coco / "annotations" / "train.json").read_text())
    train["images"][0]["file_name"] = "gone.jpg"                 # a json naming an image that is not there
    train["annotations"][0]["category_id"] = 7                   # a category id not in 'categories'
    train["annotations"][1]["bbox"][3] = 0                       # a zero-area box
    (coco / "annotations" / "train.json").write_text(json.dumps(train))
    out = tmp_path / "out"
    rc = run.main(["custom", "--train", f"{coco}/annotations/train.json:{coco}/images/train",
                          "--test", f"{coco}/annotations/test.json:{coco}/images/test", "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [line.strip() for line in err.splitlines()[1:]]
    assert lines == [
        f"{coco}/images/train/gone.jpg: missing (image id 1 in {coco}/annotations/train.json)",
        f"{coco}/annotations/train.json: annotation id 1: category_id 7 is not in 'categories'",
        f"{coco}/annotations/train.json: annotation id 2: bbox {train['annotations'][1]['bbox']!r} has zero area "
        "(width or height 0); fix or remove the annotation"], err
    voc = paths["voc"]
    xml = sorted((voc / "Annotations").glob("*.xml"))[0]
    xml.write_text(xml.read_text().replace("<name>widget</name>", "<name>gizmo</name>", 1))
    rc = run.main(["custom", "--voc", str(voc), "--classes", "widget", "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and [line.strip() for line in err.splitlines()[1:]] == [
        f"{xml}: object 0 ('gizmo'): unknown class name (not one of the 1 class names)"], err
    assert not out.exists()  # nothing was started, not even the output folder


# ----------------------------------------------------------------------------- end to end

def test_run_custom_coco_json_single_class_end_to_end(tmp_path: Path) -> None:
    coco = write_custom(tmp_path / "data", ["widget"], train=6, test=3)["coco"]
    out = tmp_path / "out"
    cmd = ["bash", str(REPO / "benchmarks" / "run_custom.sh"), "--tiny", "--arch", "FPN", "--rows", "random",
           "--name", "widgets", "--train", f"{coco}/annotations/train.json:{coco}/images/train",
           "--test", f"{coco}/annotations/test.json:{coco}/images/test", "--output", str(out), "--max-iter", "2",
           "--", *FAST]
    env = {**runner.child_env(None), "VENV": str(Path(sys.executable).parents[1]), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "WARNING: tiny dataset (6 training images" in res.stdout and "results are noise-dominated" in res.stdout
    assert "test: 3 images" in res.stdout
    (rec,) = _records(out)
    assert rec["status"] == "finished" and rec["task"] == "custom_coco_maskrcnn" and rec["arch"] == "R18-FPN"
    assert set(rec["metrics"]) >= {"APbb", "APbb50", "APmk", "APmk50"}
    assert "NUM_CLASSES: 1\n" in rec["config"] and rec["dataset"]["classes"] == ["widget"]
    assert rec["dataset"]["loaded"]["custom_coco_widgets_train"]["images"] == 6
    assert rec["dataset"]["loaded"]["custom_coco_widgets_test"]["images"] == 3
    fp = rec["fingerprint"]["values"]
    assert (fp["data"], fp["train_images"], fp["SOLVER.MAX_ITER"], fp["MODEL.MASK_ON"]) == ("widgets", 6, 2, True)
    assert fp["SOLVER.BASE_LR"] == 0.02 and fp["epoch_rule_epochs"] == round(2 * 4 / 6, 3)
    assert rec["schedule"] == "2it (1.3 ep) on widgets"
    assert "### Your data (COCO json), detection and instance segmentation (Mask R-CNN): R18-FPN, 2it (1.3 ep) " \
           "on widgets" in res.stdout and "| random init | 1/1 |" in res.stdout


def test_run_custom_voc_layout_with_own_class_names_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import run

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    voc = write_custom(tmp_path / "data", ["widget", "gadget"], train=6, test=3)["voc"]
    out = tmp_path / "out"
    rc = run.main(["custom", "--tiny", "--voc", str(voc), "--classes", "widget,gadget", "--rows", "random",
                          "--output", str(out), "--max-iter", "2", "--", *FAST])
    text = capsys.readouterr().out
    assert rc == 0, text[-3000:]
    (rec,) = _records(out)
    assert rec["task"] == "custom_voc" and set(rec["metrics"]) >= {"AP50", "AP", "AP75", "APbb", "APbb50"}
    assert rec["dataset"]["classes"] == ["widget", "gadget"] and "NUM_CLASSES: 2\n" in rec["config"]
    assert set(rec["raw_results"]["bbox_per_class_AP50"]) == {"widget", "gadget"}  # VOC07 metric per class
    assert rec["dataset"]["loaded"]["custom_voc_voc_trainval"]["images"] == 6
    assert "Your data (VOC layout), detection" in text and "| random init | 1/1 |" in text
    assert run.main(["custom", "--tiny", "--voc", str(voc), "--classes", "widget,gadget", "--rows", "random",
                            "--output", str(out), "--max-iter", "2", "--", *FAST]) == 0  # the same sweep: skipped
    assert "already finished, skipped" in capsys.readouterr().out and len(_records(out)) == 1
    assert run.main(["custom", "--tiny", "--voc", str(voc), "--classes", "widget,gadget", "--rows", "random",
                            "--output", str(out), "--max-iter", "2"]) == 2  # other overrides: not this trial
    assert "finished trial made with other Detectron2 overrides (TEST.PRECISE_BN.NUM_ITER: 1 then, not set now;" \
        in capsys.readouterr().err and len(_records(out)) == 1
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n000002\n000003\n")  # the data changed
    assert run.main(["custom", "--tiny", "--voc", str(voc), "--classes", "widget,gadget", "--rows", "random",
                            "--output", str(out), "--max-iter", "2", "--", *FAST]) == 2
    assert "were set up for other data" in capsys.readouterr().err  # the finished trial is not mixed with new ones


def test_train_fraction_tiny_voc_uses_the_recorded_subset_for_every_row(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import run
    from benchmarks.tiny_data import generate
    from transfer.custom_data import ids_sha256

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "out"
    generate(out / "datasets", voc2007_trainval=8, voc2007_test=3, voc2012_trainval=8, coco_train=2, coco_val=2,
             cityscapes_train=2, cityscapes_val=2, pretrain_train=8, pretrain_val=8)
    weights = d2_pkl(tmp_path / "r18.pkl", resnet_state("resnet18"), author="torchvision")
    rc = run.main(["voc", "--tiny", "--rows", "random,moco", "--weights", str(weights), "--output", str(out),
                       "--train-fraction", "0.25", "--", "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "(1,)", *FAST])
    text = capsys.readouterr().out
    assert rc == 0, text[-3000:]
    spec = json.loads((out / "R18-C4-frac0.25-seed0" / "datasets_spec.json").read_text())
    drawn = [(e["of"], i) for e in spec["datasets"] for i in e["image_ids"]]
    assert len(drawn) == 4 and spec["fingerprint"]["train_subset_sha256"] == ids_sha256(drawn)  # 25% of 16
    assert spec["fingerprint"]["epoch_rule_epochs"] == 25.0  # the tiny config's 100 it x 4 / 16 images, kept
    assert "SOLVER.MAX_ITER 25 SOLVER.STEPS (20,)" in text  # ... by a quarter of the iterations (then overridden)
    records = _records(out)
    assert len(records) == 2 and {r["pretrain"]["kind"] for r in records} == {"random", "pretrained"}
    for rec in records:  # every row trained on exactly the recorded list, loaded in its own process
        assert rec["dataset"]["train"] == spec["train"]
        for entry in spec["datasets"]:
            loaded = rec["dataset"]["loaded"][entry["name"]]
            assert (loaded["images"], loaded["ids_sha256"]) == (len(entry["image_ids"]), ids_sha256(entry["image_ids"]))
        assert rec["fingerprint"]["values"]["train_subset_sha256"] == ids_sha256(drawn)
        assert rec["schedule"] == "tiny, 25% train (draw 0)"
    assert "R18-C4, tiny, 25% train (draw 0)" in text
    assert "Every row: trained on 4 of 16 training images (25%, draw seed 0" in text


def test_run_coco_train_fraction_scales_the_schedule_and_passes_the_spec(
        tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import shutil

    from benchmarks import run

    fake = tmp_path / "fake" / "train_net.py"  # records its command line, trains nothing
    fake.parent.mkdir()
    fake.write_text("import json, sys\nfrom pathlib import Path\n"
                    "with open(Path(sys.argv[0]).with_name('calls.jsonl'), 'a') as f:\n"
                    "    f.write(json.dumps(sys.argv[1:]) + '\\n')\nsys.exit(1)\n")
    monkeypatch.setattr(runner, "TRAIN_NET", fake)
    root = tmp_path / "datasets"
    shutil.copytree(tiny_root / "coco", root / "coco")
    out = tmp_path / "out"
    argv = ["--datasets", str(root), "--rows", "random", "--trials", "1", "--output", str(out),
            "--train-fraction", "0.1", "--train-fraction-seed", "3"]
    run.main(["coco", *argv])
    (call,) = [json.loads(line) for line in (fake.parent / "calls.jsonl").read_text().splitlines()]
    spec_path = Path(call[call.index("--datasets-spec") + 1])
    assert spec_path == (out / "R50-FPN-1x-frac0.1-seed3" / "datasets_spec.json").resolve()
    spec = json.loads(spec_path.read_text())
    assert spec["train"] == ["coco_2017_train_frac0.1_seed3"] and len(spec["datasets"][0]["image_ids"]) == 4
    assert call[call.index("--schedule") + 1] == "9k, 10% train (draw 3)"  # 90k x 4 / 40 images
    assert call[call.index("SOLVER.MAX_ITER") + 1] == "9000" and call[call.index("SOLVER.STEPS") + 1] == "(6000,8000,)"
    capsys.readouterr()
    assert run.main(["coco", *argv, "--dry-run", "--train-fraction-seed", "4"]) == 0  # another draw: its own folder
    assert "(not written: dry run)" in capsys.readouterr().out and not (out / "R50-FPN-1x-frac0.1-seed4").exists()


def test_run_custom_train_fraction_draws_from_your_training_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    from benchmarks import run

    monkeypatch.setattr(runner, "TRAIN_NET", tmp_path / "never_run.py")
    coco = write_custom(tmp_path / "data", ["widget", "gadget"], train=20, test=4)["coco"]
    out = tmp_path / "out"
    assert run.main(["custom", "--train", f"{coco}/annotations/train.json:{coco}/images/train", "--test",
                            f"{coco}/annotations/test.json:{coco}/images/test", "--name", "Widgets & Gadgets",
                            "--train-fraction", "0.5", "--batch", "8", "--output", str(out), "--dry-run",
                            "--rows", "random"]) == 0
    text = capsys.readouterr().out
    # the epoch rule on the 10 drawn images at batch 8: 23.2 x 10 / 8 = 29 iterations, lr 0.02 x 8 / 16
    assert "29 iterations x batch 8 over 10 images = 23.2 epochs; lr 0.01 x0.1 at 22, 27; warm-up 0" in text
    assert "this sweep trains on 10" in text and "MODEL.ROI_HEADS.NUM_CLASSES 2 MODEL.MASK_ON True" in text
    assert f"-> {out}/R50-C4-29it-b8-frac0.5-seed0/datasets_spec.json (not written: dry run)" in text
    assert "WARNING: tiny dataset (10 training images, " in text
    assert not (out / "R50-C4-29it-b8-frac0.5-seed0").exists()
