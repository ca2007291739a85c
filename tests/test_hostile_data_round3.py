"""Hostile data, round 3 (issue 27, cases 8-11): 16-bit images that Detectron2 reads as all white, VOC objects
under a namespace or a wrapper element, a COCO json with a byte-order mark, RLE masks among polygons, classes
without a training instance, and class names that print like another. Every input is generated here."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from benchmarks import runner
from benchmarks.tiny_custom import write_custom

ZW = "\u200b"  # zero-width space


def _dry_run(args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture,
             monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, list[str]]:
    """(rc, stdout, the problem lines on stderr) of a ``run_custom.sh --dry-run``; never trains."""
    from benchmarks import run

    monkeypatch.setattr(runner, "TRAIN_NET", tmp_path / "never_run.py")
    rc = run.main(["custom", *args, "--rows", "random", "--output", str(tmp_path / "out"), "--dry-run"])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    return rc, cap.out, [ln.strip() for ln in cap.err.splitlines()[1:]]


def _coco_args(coco: Path) -> list[str]:
    return ["--train", f"{coco}/annotations/train.json:{coco}/images/train",
            "--test", f"{coco}/annotations/test.json:{coco}/images/test"]


def _edit(path: Path, change) -> dict:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    return doc


# ----------------------------------------------------------------------------- case 8: image modes

def _gray16(width: int, height: int) -> "Image.Image":
    from PIL import Image

    values = (np.arange(width * height, dtype=np.uint16).reshape(height, width) * 61).astype("<u2")
    return Image.frombytes("I;16", (width, height), values.tobytes())


def test_a_16bit_png_stops_the_custom_runner_before_training(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    paths = write_custom(tmp_path / "data", ["widget"], train=4, test=2)
    coco = paths["coco"]
    doc = json.loads((coco / "annotations" / "train.json").read_text())
    img = doc["images"][0]
    png = coco / "images" / "train" / "gray16.png"
    _gray16(img["width"], img["height"]).save(png)
    img["file_name"] = "gray16.png"
    (coco / "annotations" / "train.json").write_text(json.dumps(doc))
    rc, _, lines = _dry_run(_coco_args(coco), tmp_path, capsys, monkeypatch)
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"{png}: a 16-bit greyscale image (mode I;16)") and "255" in lines[0] \
        and "convert it to 8 bits" in lines[0], lines
    voc = paths["voc"]
    jpeg = sorted((voc / "JPEGImages").glob("*.jpg"))[0]
    from PIL import Image

    with Image.open(jpeg) as im:
        _gray16(*im.size).save(jpeg, format="PNG")  # a PNG under a .jpg name, as the VOC layout wants
    rc, _, lines = _dry_run(["--voc", str(voc)], tmp_path, capsys, monkeypatch)
    assert rc == 2 and len(lines) == 1 and lines[0].startswith(f"{jpeg}: a 16-bit greyscale image"), lines


def _files(tmp: Path) -> list[tuple[str, Path, np.ndarray | None]]:
    """(mode, file, the RGB it shows as, computed independently of PIL's convert; None: no such reference)."""
    from PIL import Image, ImageCms

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    src = Image.fromarray(rgb)
    out = []

    def save(mode: str, img: Image.Image, ext: str, ref: np.ndarray | None) -> None:
        path = tmp / f"{mode.replace(';', '_')}.{ext}"
        img.save(path)
        out.append((mode, path, ref))

    grey = np.asarray(src.convert("L"))
    save("1", src.convert("1"), "png", np.repeat((np.asarray(src.convert("1")) * 255).astype(np.uint8)[..., None], 3, -1))
    save("L", src.convert("L"), "png", np.repeat(grey[..., None], 3, -1))
    save("LA", src.convert("LA"), "png", np.repeat(grey[..., None], 3, -1))
    pal = src.convert("P")
    palette = np.array(pal.getpalette(), dtype=np.uint8).reshape(-1, 3)
    save("P", pal, "png", palette[np.asarray(pal)])
    save("PA", pal.convert("PA"), "tif", palette[np.asarray(pal)])
    save("RGB", src, "png", rgb)
    save("RGBA", src.convert("RGBA"), "png", rgb)
    save("CMYK", src.convert("CMYK"), "tif", rgb)  # C = 255 - R etc.: lossless
    save("YCbCr", src.convert("YCbCr"), "tif", rgb)  # within rounding
    to_lab = ImageCms.buildTransformFromOpenProfiles(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"),
                                                     "RGB", "LAB")
    lab = ImageCms.applyTransform(src, to_lab)
    back = ImageCms.buildTransformFromOpenProfiles(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"),
                                                   "LAB", "RGB")
    save("LAB", lab, "tif", np.asarray(ImageCms.applyTransform(lab, back)))
    g16 = _gray16(32, 32)
    ref16 = np.repeat((np.asarray(g16).astype(np.int64) >> 8).astype(np.uint8)[..., None], 3, -1)
    save("I;16", g16, "png", ref16)
    save("I;16B", Image.frombytes("I;16B", (32, 32), np.asarray(g16).astype(">u2").tobytes()), "tif", ref16)
    save("I", Image.fromarray(np.asarray(g16).astype(np.int32)), "tif", ref16)
    save("F", Image.fromarray(grey.astype(np.float32) / 255), "tif", np.repeat(grey[..., None], 3, -1))
    return out


def test_the_check_accepts_exactly_the_image_modes_detectron2_reads_faithfully(tmp_path: Path) -> None:
    from PIL import Image
    from detectron2.data.detection_utils import read_image

    from transfer.tasks.images import image_problem

    verdicts = {}
    for mode, path, ref in _files(tmp_path):
        with Image.open(path) as im:
            assert im.mode == mode, (path, im.mode)
        faithful = all(int(np.abs(read_image(str(path), f).astype(int) - ref[..., ::step].astype(int)).max()) <= 3
                       for f, step in (("RGB", 1), ("BGR", -1)))  # the suite's configs use both
        problem = image_problem(path, (32, 32))
        verdicts[mode] = faithful
        assert (problem is None) == faithful, (mode, faithful, problem)
        if problem:
            assert problem.startswith(f"{path}: ") and f"(mode {mode})" in problem and "\n" not in problem
    assert [m for m, ok in verdicts.items() if not ok] == ["I;16", "I;16B", "I", "F"], verdicts


# ----------------------------------------------------------------------------- case 9: VOC XML structure

def _voc_objects_written(voc: Path) -> int:
    return sum(p.read_text().count("<object>") for p in (voc / "Annotations").glob("*.xml"))


@pytest.mark.parametrize("how", ["namespace", "wrapped", "child-namespace"])
def test_voc_objects_detectron2_does_not_read_are_refused_not_dropped(how: str, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from transfer.voc_xml import VocXmlError, read_voc_xml

    voc = write_custom(tmp_path / "data", ["widget", "gadget"], train=4, test=3)["voc"]
    ids = (voc / "ImageSets" / "Main" / "test.txt").read_text().split()
    written = sum((voc / "Annotations" / f"{i}.xml").read_text().count("<object>") for i in ids)
    read = sum(len(read_voc_xml(voc / "Annotations" / f"{i}.xml", float_boxes=True).objects) for i in ids)
    assert read == written > 0  # the control: every object of the untouched files is read
    xml = voc / "Annotations" / f"{ids[0]}.xml"
    text = xml.read_text()
    if how == "namespace":
        text = text.replace("<annotation>", '<annotation xmlns="http://example.org/voc">', 1)
    elif how == "wrapped":
        text = text.replace("<object>", "<objects><object>", 1).replace("</object>", "</object></objects>", 1)
    else:
        text = text.replace("<object>", '<object xmlns="http://example.org/voc">', 1)
    xml.write_text(text)
    with pytest.raises(VocXmlError) as err:
        read_voc_xml(xml, float_boxes=True)
    msg = str(err.value)
    assert msg.startswith(f"{xml}: ") and "\n" not in msg and "no <size>" not in msg, msg
    assert ("namespace" in msg) if how != "wrapped" else ("inside <objects>" in msg), msg
    rc, _, lines = _dry_run(["--voc", str(voc)], tmp_path, capsys, monkeypatch)
    assert rc == 2 and lines == [msg], lines


# ----------------------------------------------------------------------------- case 10: COCO json as pycocotools reads it

def test_a_coco_json_with_a_byte_order_mark_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from pycocotools.coco import COCO

    coco = write_custom(tmp_path / "data", ["widget"], train=4, test=2)["coco"]
    path = coco / "annotations" / "train.json"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    with pytest.raises(ValueError, match="BOM"):
        COCO(str(path))  # what every trial would do
    rc, _, lines = _dry_run(_coco_args(coco), tmp_path, capsys, monkeypatch)
    assert rc == 2 and len(lines) == 1 and lines[0].startswith(f"{path}: ") and "byte-order mark" in lines[0], lines


def _rle_of(ann: dict, img: dict) -> dict:
    from pycocotools import mask as mask_util

    rle = mask_util.merge(mask_util.frPyObjects(ann["segmentation"], img["height"], img["width"]))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def test_rle_masks_among_polygons_train_with_bitmask(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    coco = write_custom(tmp_path / "data", ["widget"], train=4, test=2)["coco"]
    rc, out, lines = _dry_run(_coco_args(coco), tmp_path, capsys, monkeypatch)
    assert rc == 0 and "MODEL.MASK_ON True" in out and "INPUT.MASK_FORMAT" not in out, (lines, out[-2000:])

    def one_rle(doc: dict) -> None:
        doc["annotations"][0]["segmentation"] = _rle_of(doc["annotations"][0], doc["images"][0])

    doc = _edit(coco / "annotations" / "train.json", one_rle)
    rc, out, lines = _dry_run(_coco_args(coco), tmp_path, capsys, monkeypatch)
    assert rc == 0 and "MODEL.MASK_ON True" in out and "INPUT.MASK_FORMAT bitmask" in out, (lines, out[-2000:])
    # what the trainer does with these annotations (Detectron2's DatasetMapper): polygon fails, bitmask reads both
    from detectron2.data.detection_utils import annotations_to_instances
    from detectron2.structures import BitMasks, BoxMode

    anns = [{**a, "bbox_mode": BoxMode.XYWH_ABS} for a in doc["annotations"] if a["image_id"] == 1]
    second = {**anns[0], "segmentation": doc["annotations"][1]["segmentation"]}  # a polygon beside the RLE
    size = (doc["images"][0]["height"], doc["images"][0]["width"])
    with pytest.raises(Exception):
        annotations_to_instances([anns[0], second], size, mask_format="polygon")
    masks = annotations_to_instances([anns[0], second], size, mask_format="bitmask").gt_masks
    assert isinstance(masks, BitMasks) and masks.tensor.shape[0] == 2 and int(masks.tensor[0].sum()) > 0


# ----------------------------------------------------------------------------- case 11: class names and coverage

def test_a_class_without_a_training_instance_is_named_in_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    paths = write_custom(tmp_path / "data", ["widget", "gadget"], train=4, test=4)
    coco = paths["coco"]
    train = coco / "annotations" / "train.json"
    _edit(train, lambda d: [a.update(category_id=1) for a in d["annotations"]])  # every train object a widget
    rc, out, lines = _dry_run(_coco_args(coco), tmp_path, capsys, monkeypatch)
    warned = [ln for ln in out.splitlines() if "WARNING" in ln and "no training instance" in ln]
    assert rc == 0 and len(warned) == 1 and "'gadget'" in warned[0] and str(train) in warned[0], out[-3000:]
    voc = paths["voc"]
    for i in (voc / "ImageSets" / "Main" / "trainval.txt").read_text().split():
        xml = voc / "Annotations" / f"{i}.xml"
        xml.write_text(xml.read_text().replace("<name>gadget</name>", "<name>widget</name>"))
    rc, out, lines = _dry_run(["--voc", str(voc)], tmp_path, capsys, monkeypatch)
    warned = [ln for ln in out.splitlines() if "WARNING" in ln and "no training instance" in ln]
    assert rc == 0 and len(warned) == 1 and "'gadget'" in warned[0] and "trainval" in warned[0], out[-3000:]


def test_class_names_with_invisible_characters_or_two_unicode_forms_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    paths = write_custom(tmp_path / "data", ["widget", "gadget"], train=4, test=2)
    voc, coco = paths["voc"], paths["coco"]
    # --classes
    from benchmarks import run

    with pytest.raises(SystemExit) as exc:
        run.main(["custom", "--voc", str(voc), "--classes", f"wid{ZW}get,gadget", "--dry-run"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "U+200B" in err and "--classes" in err and len(err.strip().splitlines()) <= 3, err
    with pytest.raises(SystemExit) as exc:
        run.main(["custom", "--voc", str(voc), "--classes", f"{nfc},{nfd},widget", "--dry-run"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "more than once" in err, err
    # COCO categories
    train, test = coco / "annotations" / "train.json", coco / "annotations" / "test.json"
    for path in (train, test):
        _edit(path, lambda d: d["categories"][0].update(name=f"wid{ZW}get"))
    rc, _, lines = _dry_run(_coco_args(coco), tmp_path, capsys, monkeypatch)
    assert rc == 2 and any(ln.startswith(f"{train}: ") and "U+200B" in ln for ln in lines) \
        and all("U+200B" in ln for ln in lines), lines
    for path in (train, test):
        _edit(path, lambda d: (d["categories"][0].update(name=nfc), d["categories"][1].update(name=nfd)))
    rc, _, lines = _dry_run(_coco_args(coco), tmp_path, capsys, monkeypatch)
    assert rc == 2 and any(ln.startswith(f"{train}: ") and "Unicode" in ln for ln in lines), lines
    # VOC <name>
    xmls = [voc / "Annotations" / f"{i}.xml" for i in (voc / "ImageSets" / "Main" / "trainval.txt").read_text().split()]
    original = xmls[0].read_text()
    xmls[0].write_text(original.replace("<name>widget</name>", f"<name>wid{ZW}get</name>"))
    rc, _, lines = _dry_run(["--voc", str(voc)], tmp_path, capsys, monkeypatch)
    assert rc == 2 and len(lines) == 1 and lines[0].startswith(f"{xmls[0]}: ") and "U+200B" in lines[0], lines
    xmls[0].write_text(original.replace("<name>widget</name>", f"<name>{nfc}</name>"))
    xmls[2].write_text(xmls[2].read_text().replace("<name>widget</name>", f"<name>{nfd}</name>"))
    rc, _, lines = _dry_run(["--voc", str(voc)], tmp_path, capsys, monkeypatch)
    assert rc == 2 and len(lines) == 1 and "Unicode" in lines[0] and str(xmls[0]) in lines[0] \
        and str(xmls[2]) in lines[0], lines


def test_a_tiny_mask_rcnn_trial_trains_on_rle_among_polygons(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tiny_runs import FAST

    coco = write_custom(tmp_path / "data", ["widget"], train=6, test=3)["coco"]

    def rle_every_other(doc: dict) -> None:
        sizes = {img["id"]: img for img in doc["images"]}
        for ann in doc["annotations"][::2]:
            ann["segmentation"] = _rle_of(ann, sizes[ann["image_id"]])

    _edit(coco / "annotations" / "train.json", rle_every_other)
    _edit(coco / "annotations" / "test.json", rle_every_other)
    out = tmp_path / "out"
    repo = Path(__file__).resolve().parents[1]
    cmd = ["bash", str(repo / "benchmarks" / "run_custom.sh"), "--tiny", "--arch", "FPN", "--rows", "random",
           *_coco_args(coco), "--output", str(out), "--max-iter", "2", "--", *FAST]
    env = {**runner.child_env(None), "VENV": str(Path(sys.executable).parents[1]), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "MODEL.MASK_ON True INPUT.MASK_FORMAT bitmask" in res.stdout
    from core.records import RECORD_NAME

    records = [json.loads(p.read_text()) for p in out.rglob(RECORD_NAME)]
    assert len(records) == 1 and records[0]["status"] == "finished", records
    assert "APmk" in records[0]["metrics"] and "MASK_FORMAT: bitmask" in records[0]["config"]


def test_the_dataset_check_cli_refuses_a_16bit_voc_image_and_a_coco_json_with_a_bom(
        tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    from benchmarks import dataset_check as dc

    for layout in ("VOC2007", "VOC2012", "coco"):
        shutil.copytree(tiny_root / layout, tmp_path / layout)
    file_id = (tmp_path / "VOC2007" / "ImageSets" / "Main" / "trainval.txt").read_text().split()[0]
    jpeg = tmp_path / "VOC2007" / "JPEGImages" / f"{file_id}.jpg"
    from PIL import Image

    with Image.open(jpeg) as im:
        _gray16(*im.size).save(jpeg, format="PNG")
    assert dc.main(["voc", "--datasets", str(tmp_path)]) == 1
    lines = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith(f"{jpeg}: a 16-bit greyscale image (mode I;16)"), lines
    path = next((tmp_path / "coco" / "annotations").glob("instances_val*.json"))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert dc.main(["coco", "--datasets", str(tmp_path)]) == 1
    lines = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith(f"{path}: starts with a UTF-8 byte-order mark"), lines
