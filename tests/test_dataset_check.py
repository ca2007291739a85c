"""Layout validation: the tiny root passes; each kind of corruption is named with its file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import dataset_check as dc
from transfer.tasks import cityscapes as t_cityscapes, coco as t_coco, voc as t_voc


def _copy(tiny_root: Path, tmp_path: Path, *layouts: str) -> Path:
    for layout in layouts:
        shutil.copytree(tiny_root / layout, tmp_path / layout)
    return tmp_path


def _voc_ids(root: Path, year: str = "2007", split: str = "trainval") -> list[str]:
    return (root / f"VOC{year}" / "ImageSets" / "Main" / f"{split}.txt").read_text().split()


def _mentions(problems: list[str], *needles: str) -> bool:
    return any(all(n in line for n in needles) for line in problems)


def test_tiny_root_has_no_problems(tiny_root: Path) -> None:
    assert t_voc.check_voc(tiny_root) == []
    assert t_coco.check_coco(tiny_root) == []
    assert t_cityscapes.check_cityscapes(tiny_root, "instance_seg") == []
    assert t_cityscapes.check_cityscapes(tiny_root, "sem_seg") == []


def test_voc_missing_jpeg_and_capping(tiny_root: Path, tmp_path: Path) -> None:
    root = _copy(tiny_root, tmp_path, "VOC2007", "VOC2012")
    ids = _voc_ids(root)
    for file_id in ids[:8]:
        (root / "VOC2007" / "JPEGImages" / f"{file_id}.jpg").unlink()
    problems = t_voc.check_voc(root)
    named = [line for line in problems if "JPEGImages" in line and ": missing" in line]
    assert len(named) == dc.MAX_PER_KIND
    assert str(root / "VOC2007" / "JPEGImages" / f"{ids[0]}.jpg") in named[0]
    assert "trainval.txt" in named[0]
    assert _mentions(problems, "and 3 more", "missing-jpeg")


def test_voc_broken_xml_unknown_class_and_bad_box(tiny_root: Path, tmp_path: Path) -> None:
    root = _copy(tiny_root, tmp_path, "VOC2007", "VOC2012")
    a, b, c, d = _voc_ids(root, "2007", "test")[:4]
    ann = root / "VOC2007" / "Annotations"
    (ann / f"{a}.xml").write_text((ann / f"{a}.xml").read_text()[:60])
    text = (ann / f"{b}.xml").read_text()
    name = text.split("<name>")[1].split("</name>")[0]
    (ann / f"{b}.xml").write_text(text.replace(f"<name>{name}</name>", "<name>unicorn</name>", 1))
    text = (ann / f"{c}.xml").read_text()
    xmax = text.split("<xmax>")[1].split("</xmax>")[0]
    (ann / f"{c}.xml").write_text(text.replace(f"<xmax>{xmax}</xmax>", "<xmax>5000</xmax>", 1))
    text = (ann / f"{d}.xml").read_text()
    bnd = text.split("<bndbox>")[1].split("</bndbox>")[0]
    (ann / f"{d}.xml").write_text(text.replace(f"<bndbox>{bnd}</bndbox>", "", 1))
    problems = t_voc.check_voc(root)
    assert _mentions(problems, str(ann / f"{a}.xml"), "cannot parse XML")
    assert _mentions(problems, str(ann / f"{b}.xml"), "'unicorn'", "unknown class name")
    assert _mentions(problems, str(ann / f"{c}.xml"), "outside")
    assert _mentions(problems, str(ann / f"{d}.xml"), "no <bndbox>")
    assert len(problems) == 4


def test_voc_missing_split_file_and_dir(tiny_root: Path, tmp_path: Path) -> None:
    root = _copy(tiny_root, tmp_path, "VOC2007")
    (root / "VOC2007" / "ImageSets" / "Main" / "test.txt").unlink()
    problems = t_voc.check_voc(root)
    assert _mentions(problems, str(root / "VOC2007" / "ImageSets" / "Main" / "test.txt"), "missing")
    assert _mentions(problems, str(root / "VOC2012"), "directory missing")
    assert len(problems) == 2


def _edit_coco(root: Path, split: str, edit) -> Path:
    path = root / "coco" / "annotations" / f"instances_{split}.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    return path


def test_coco_unknown_category_and_image_ids(tiny_root: Path, tmp_path: Path) -> None:
    root = _copy(tiny_root, tmp_path, "coco")

    def edit(doc: dict) -> None:
        doc["annotations"][0]["category_id"] = 12  # 12 is one of COCO's unused ids
        doc["annotations"][1]["image_id"] = 999
        del doc["annotations"][2]["segmentation"]

    path = _edit_coco(root, "val2017", edit)
    problems = t_coco.check_coco(root)
    assert _mentions(problems, str(path), "category_id 12", "not in 'categories'")
    assert _mentions(problems, str(path), "image_id 999", "not in 'images'")
    assert _mentions(problems, str(path), "no usable segmentation")
    assert len(problems) == 3
    assert len(t_coco.check_coco(root, need_masks=False)) == 2


def test_coco_missing_image_and_renamed_category(tiny_root: Path, tmp_path: Path) -> None:
    root = _copy(tiny_root, tmp_path, "coco")
    first = sorted((root / "coco" / "train2017").glob("*.jpg"))[0]
    first.unlink()

    def edit(doc: dict) -> None:
        doc["categories"][3]["name"] = "motorbike"

    path = _edit_coco(root, "train2017", edit)
    problems = t_coco.check_coco(root)
    assert _mentions(problems, str(first), "missing")
    assert _mentions(problems, str(path), "'motorbike' instead of 'motorcycle'")


def test_coco_unparseable_json_and_missing_dir(tiny_root: Path, tmp_path: Path) -> None:
    root = _copy(tiny_root, tmp_path, "coco")
    path = root / "coco" / "annotations" / "instances_train2017.json"
    path.write_text(path.read_text()[:100])
    shutil.rmtree(root / "coco" / "val2017")
    problems = t_coco.check_coco(root)
    assert _mentions(problems, str(path), "not valid JSON")
    assert _mentions(problems, str(root / "coco" / "val2017"), "directory missing")
    assert _mentions(problems, str(root / "coco" / "val2017"), "missing")


def test_cityscapes_missing_train_ids_only_matters_for_sem_seg(tiny_root: Path, tmp_path: Path) -> None:
    root = _copy(tiny_root, tmp_path, "cityscapes")
    removed = sorted((root / "cityscapes" / "gtFine").glob("*/*/*_labelTrainIds.png"))
    for path in removed:
        path.unlink()
    assert t_cityscapes.check_cityscapes(root, "instance_seg") == []
    problems = t_cityscapes.check_cityscapes(root, "sem_seg")
    assert _mentions(problems, str(removed[0]), "csCreateTrainIdLabelImgs",
                     f"CITYSCAPES_DATASET={root / 'cityscapes'}")
    assert _mentions(problems, f"and {len(removed) - dc.MAX_PER_KIND} more")


def test_cityscapes_images_without_gt(tiny_root: Path, tmp_path: Path) -> None:
    root = _copy(tiny_root, tmp_path, "cityscapes")
    gt = sorted((root / "cityscapes" / "gtFine" / "train").glob("*/*_gtFine_polygons.json"))[0]
    gt.unlink()
    shutil.rmtree(root / "cityscapes" / "gtFine" / "val" / "frankfurt")
    (root / "cityscapes" / "leftImg8bit" / "train" / "aachen" / "notes.txt").write_text("x")
    problems = t_cityscapes.check_cityscapes(root, "instance_seg")
    assert _mentions(problems, str(gt), "missing gtFine counterpart", "leftImg8bit.png")
    assert _mentions(problems, str(root / "cityscapes" / "gtFine" / "val" / "frankfurt"), "missing")
    assert _mentions(problems, "notes.txt", "remove it")
    assert len(problems) == 3
    with pytest.raises(ValueError):
        t_cityscapes.check_cityscapes(root, "panoptic")


def test_cli_and_require_layout(tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert dc.main(["voc", "--root", str(tiny_root)]) == 0
    assert "OK" in capsys.readouterr().out
    root = _copy(tiny_root, tmp_path, "cityscapes")
    for path in (root / "cityscapes" / "gtFine").glob("*/*/*_labelTrainIds.png"):
        path.unlink()
    assert dc.main(["cityscapes", "--root", str(root), "--task", "sem_seg"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == dc.MAX_PER_KIND + 1 and "labelTrainIds.png" in out[0]
    with pytest.raises(dc.DatasetLayoutError, match="csCreateTrainIdLabelImgs"):
        dc.require_layout("cityscapes", root, task="sem_seg")
    dc.require_layout("cityscapes", root, task="instance_seg")
