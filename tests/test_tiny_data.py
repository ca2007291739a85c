"""The tiny datasets load through Detectron2's real builtin registrations and score 100 with GT.

conftest.py points ``DETECTRON2_DATASETS`` at the session's tiny root before Detectron2 is
imported, so ``DatasetCatalog.get("voc_2007_trainval")`` etc. read the generated files.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import tiny_data as td
from transfer import tasks
from transfer.tasks import cityscapes, coco, draw, voc

SMALL = {
    "voc2007_trainval": 3, "voc2007_test": 2, "voc2012_trainval": 2, "coco_train": 2,
    "coco_val": 2, "cityscapes_train": 2, "cityscapes_val": 2, "pretrain_train": 8, "pretrain_val": 8,
}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _catalog(name: str) -> list[dict]:
    from detectron2.data import DatasetCatalog

    return DatasetCatalog.get(name)


def _meta(name: str):
    from detectron2.data import MetadataCatalog

    return MetadataCatalog.get(name)


def _gt_instances(record: dict, with_masks: bool):
    """Detectron2 ``Instances`` holding a record's ground truth, as a perfect model would predict."""
    from detectron2.structures import Boxes, BoxMode, Instances
    from detectron2.structures.masks import polygons_to_bitmask

    h, w = record["height"], record["width"]
    annos = record["annotations"]
    boxes = [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos]
    inst = Instances((h, w))
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.ones(len(annos))
    inst.pred_classes = torch.tensor([a["category_id"] for a in annos], dtype=torch.int64)
    if with_masks:
        masks = [polygons_to_bitmask([np.asarray(p) for p in a["segmentation"]], h, w) for a in annos]
        inst.pred_masks = (torch.from_numpy(np.stack(masks)) if masks
                           else torch.zeros((0, h, w), dtype=torch.bool))
    return inst


def _instance_png(image_file: str) -> str:
    """``leftImg8bit/<split>/<city>/X_leftImg8bit.png`` -> ``gtFine/.../X_gtFine_instanceIds.png``."""
    return image_file.replace("leftImg8bit", "gtFine", 1).replace("leftImg8bit.png", "gtFine_instanceIds.png")


# ----------------------------------------------------------------------------- generator


def test_layout_and_marker_files(tiny_root: Path) -> None:
    assert (tiny_root / ".complete").is_file()
    assert (tiny_root / "README.txt").read_text().startswith(draw.README_MARKER)
    main = tiny_root / "VOC2007" / "ImageSets" / "Main"
    assert len((main / "trainval.txt").read_text().split()) == td.DEFAULT_SIZES["voc2007_trainval"]
    assert len((main / "test.txt").read_text().split()) == td.DEFAULT_SIZES["voc2007_test"]
    assert not set((main / "trainval.txt").read_text().split()) & set((main / "test.txt").read_text().split())
    # val2017 holds the instances json's images and, like COCO, the person keypoints json's
    assert len(list((tiny_root / "coco" / "val2017").glob("*.jpg"))) == (td.DEFAULT_SIZES["coco_val"]
                                                                          + td.DEFAULT_SIZES["keypoints_val"])
    for split in ("train", "val"):
        pngs = list((tiny_root / "cityscapes" / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
        assert len(pngs) == td.DEFAULT_SIZES[f"cityscapes_{split}"]
        assert {p.size for p in map(Image.open, pngs)} == {cityscapes.CITYSCAPES_SIZE}


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = td.generate(tmp_path / "a", seed=3, **SMALL)
    td.generate(tmp_path / "b", seed=3, **SMALL)
    td.generate(tmp_path / "c", seed=4, **SMALL)
    assert list(a) == [*(n for n, b in tasks.benchmarks().items() if b.write_tiny), "pretrain"]  # registry order
    assert set(a) == {"voc", "coco", "cityscapes", "voc_semseg", "coco_keypoints", "lvis", "densepose", "pretrain"}
    fa, fb, fc = (_files(tmp_path / k) for k in "abc")
    assert fa == fb
    assert fa.keys() == fc.keys()
    images = [k for k in fa if k.endswith((".jpg", ".png"))]
    assert all(fa[k] != fc[k] for k in images if "leftImg8bit" in k or k.endswith(".jpg"))


def test_every_class_in_every_split_at_minimum_sizes(tmp_path: Path) -> None:
    from cityscapesscripts.helpers.labels import name2label

    td.generate(tmp_path, seed=11, **SMALL)
    for year, split in (("2007", "trainval"), ("2007", "test"), ("2012", "trainval")):
        base = tmp_path / f"VOC{year}"
        ids = (base / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        objects = [o for i in ids for o in ET.parse(base / "Annotations" / f"{i}.xml").findall("object")]
        names = {o.findtext("name") for o in objects}
        assert names == set(voc.VOC_CLASSES_USED), (year, split)
    for split in ("train", "val"):
        doc = json.loads((tmp_path / "coco" / "annotations" / f"instances_{split}2017.json").read_text())
        id_to_name = {c["id"]: c["name"] for c in doc["categories"]}
        assert {id_to_name[a["category_id"]] for a in doc["annotations"]} == set(coco.COCO_CLASSES_USED)
        ids = set()
        for png in (tmp_path / "cityscapes" / "gtFine" / split).glob("*/*_instanceIds.png"):
            ids |= {int(v) // 1000 for v in np.unique(np.asarray(Image.open(png))) if v >= 1000}
        assert ids == {name2label[n].id for n in cityscapes.CITYSCAPES_THING_CLASSES}, split
        for cls in td.PRETRAIN_CLASSES:
            assert list((tmp_path / "pretrain" / split / cls).glob("*.jpg")), (split, cls)


def test_refuses_foreign_folder_and_bad_sizes(tmp_path: Path) -> None:
    (tmp_path / "VOC2007").mkdir()
    with pytest.raises(FileExistsError):
        td.generate(tmp_path, **SMALL)
    with pytest.raises(TypeError):
        td.generate(tmp_path / "x", coco_tain=3)
    with pytest.raises(ValueError):
        td.generate(tmp_path / "y", **(SMALL | {"cityscapes_val": 1}))


def test_cli_prints_one_line_per_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
    assert td.main(["--out", str(tmp_path), "--seed", "1", *flags]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[1] for ln in lines if ln.startswith("wrote")] == [
        "voc", "coco", "cityscapes", "voc_semseg", "coco_keypoints", "lvis", "densepose", "pretrain"]
    assert (tmp_path / ".complete").is_file()
    assert td.main(["--out", str(tmp_path), *flags]) == 0  # regenerating its own output is fine


# ----------------------------------------------------------------------------- Pascal VOC


@pytest.mark.parametrize("name,size_key", [("voc_2007_trainval", "voc2007_trainval"),
                                           ("voc_2007_test", "voc2007_test"),
                                           ("voc_2012_trainval", "voc2012_trainval")])
def test_voc_builtin_registration(tiny_root: Path, name: str, size_key: str) -> None:
    dicts = _catalog(name)
    classes = _meta(name).thing_classes
    assert len(dicts) == td.DEFAULT_SIZES[size_key]
    assert {classes[a["category_id"]] for d in dicts for a in d["annotations"]} == set(voc.VOC_CLASSES_USED)
    for d in dicts:
        with Image.open(d["file_name"]) as im:
            assert im.size == (d["width"], d["height"])
            img = np.asarray(im.convert("RGB"), dtype=np.float32)
        for a in d["annotations"]:
            x0, y0, x1, y1 = a["bbox"]
            assert 0 <= x0 < x1 <= d["width"] and 0 <= y0 < y1 <= d["height"]
            # The box is tight: the object's colour reaches (within JPEG blur) each of its sides.
            color = np.asarray(draw.STYLES[draw.DETECTION_STYLES[classes[a["category_id"]]]].color)
            crop = img[int(y0):int(y1), int(x0):int(x1)]
            near = np.abs(crop - color).max(axis=2) < 80
            cx0, cy0, cx1, cy1 = draw.mask_box(near)
            assert max(cx0, cy0, crop.shape[1] - cx1, crop.shape[0] - cy1) <= 2, (d["file_name"], a)


def test_voc_evaluator_scores_ground_truth_100(tiny_root: Path) -> None:
    from detectron2.evaluation import PascalVOCDetectionEvaluator

    evaluator = PascalVOCDetectionEvaluator("voc_2007_test")
    evaluator.reset()
    for d in _catalog("voc_2007_test"):
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": _gt_instances(d, with_masks=False)}])
    bbox = evaluator.evaluate()["bbox"]
    # Classes without ground truth score 0 in Detectron2's VOC evaluator, so a mean of
    # 100 * used / 20 is only reachable if every used class scores exactly 100.
    expected = 100.0 * len(voc.VOC_CLASSES_USED) / len(_meta("voc_2007_test").thing_classes)
    assert bbox["AP50"] == pytest.approx(expected)
    assert bbox["AP"] == pytest.approx(expected)


# ----------------------------------------------------------------------------- COCO


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco_builtin_registration(tiny_root: Path, split: str) -> None:
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    name = f"coco_2017_{split}"
    dicts = _catalog(name)
    classes = _meta(name).thing_classes
    assert classes == [c["name"] for c in COCO_CATEGORIES if c["isthing"]]
    assert len(dicts) == td.DEFAULT_SIZES[f"coco_{split}"]
    assert {classes[a["category_id"]] for d in dicts for a in d["annotations"]} == set(coco.COCO_CLASSES_USED)
    assert all(a["segmentation"] for d in dicts for a in d["annotations"])


def test_coco_masks_match_boxes_and_pixels(tiny_root: Path) -> None:
    from detectron2.structures.masks import polygons_to_bitmask

    dicts = _catalog("coco_2017_val")
    classes = _meta("coco_2017_val").thing_classes
    for d in dicts:
        img = np.asarray(Image.open(d["file_name"]).convert("RGB"), dtype=np.float32)
        for a in d["annotations"]:
            mask = polygons_to_bitmask([np.asarray(p) for p in a["segmentation"]], d["height"], d["width"])
            x, y, w, h = a["bbox"]
            assert np.allclose(draw.mask_box(mask), (x, y, x + w, y + h), atol=1)
            color = np.asarray(draw.STYLES[draw.DETECTION_STYLES[classes[a["category_id"]]]].color)
            inside = np.abs(img[mask] - color).max(axis=1) < 70
            assert inside.mean() > 0.9  # the mask covers the drawn object, not background


def test_coco_evaluator_scores_ground_truth_100(tiny_root: Path) -> None:
    from detectron2.evaluation import COCOEvaluator

    evaluator = COCOEvaluator("coco_2017_val", tasks=("bbox", "segm"), distributed=False, use_fast_impl=False)
    evaluator.reset()
    for d in _catalog("coco_2017_val"):
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": _gt_instances(d, with_masks=True)}])
    results = evaluator.evaluate()
    assert results["bbox"]["AP"] == pytest.approx(100.0)
    assert results["segm"]["AP"] == pytest.approx(100.0)


# ----------------------------------------------------------------------------- Cityscapes


@pytest.fixture(scope="module")
def cityscapes_val(tiny_root: Path) -> list[dict]:
    return _catalog("cityscapes_fine_instance_seg_val")


def test_cityscapes_instances_builtin_registration(tiny_root: Path, cityscapes_val: list[dict]) -> None:
    n_classes = len(cityscapes.CITYSCAPES_THING_CLASSES)
    assert _meta("cityscapes_fine_instance_seg_val").thing_classes == list(cityscapes.CITYSCAPES_THING_CLASSES)
    train = _catalog("cityscapes_fine_instance_seg_train")
    for dicts, split in ((train, "train"), (cityscapes_val, "val")):
        assert len(dicts) == td.DEFAULT_SIZES[f"cityscapes_{split}"]
        assert {a["category_id"] for d in dicts for a in d["annotations"]} == set(range(n_classes))


def test_cityscapes_polygons_agree_with_instance_pngs(cityscapes_val: list[dict]) -> None:
    from cityscapesscripts.helpers.labels import labels

    things = [lab for lab in labels if lab.hasInstances and not lab.ignoreInEval]
    contiguous = {lab.id: i for i, lab in enumerate(things)}
    for d in cityscapes_val:
        png = _instance_png(d["file_name"])
        ids = np.asarray(Image.open(png))
        inst_ids = [v for v in np.unique(ids) if v >= 1000]
        assert len(inst_ids) == len(d["annotations"])
        for v in inst_ids:
            box = np.asarray(draw.mask_box(ids == v), dtype=float)
            matches = [a for a in d["annotations"] if a["category_id"] == contiguous[v // 1000]
                       and np.allclose(a["bbox"], box, atol=1.5)]
            assert len(matches) == 1, (png, v)


def test_cityscapes_pngs_match_cityscapesscripts_conversion(tiny_root: Path) -> None:
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
    from cityscapesscripts.preparation.json2labelImg import createLabelImage

    jsons = sorted((tiny_root / "cityscapes" / "gtFine").glob("*/*/*_gtFine_polygons.json"))
    assert jsons
    for path in jsons[::4]:
        ann = Annotation()
        ann.fromJsonFile(str(path))
        stem = str(path)[: -len("polygons.json")]
        for suffix, ref in (("labelIds.png", createLabelImage(ann, "ids")),
                            ("labelTrainIds.png", createLabelImage(ann, "trainIds")),
                            ("color.png", createLabelImage(ann, "color")),
                            ("instanceIds.png", createInstanceImage(ann, "ids"))):
            ours = np.asarray(Image.open(stem + suffix))
            np.testing.assert_array_equal(ours, np.asarray(ref).astype(ours.dtype), err_msg=stem + suffix)


def test_cityscapes_semseg_evaluator_scores_ground_truth_100(tiny_root: Path) -> None:
    from detectron2.evaluation import SemSegEvaluator

    name = "cityscapes_fine_sem_seg_val"
    dicts = _catalog(name)
    n_classes = len(_meta(name).stuff_classes)
    evaluator = SemSegEvaluator(name, distributed=False)
    evaluator.reset()
    for d in dicts:
        gt = torch.from_numpy(np.asarray(Image.open(d["sem_seg_file_name"]), dtype=np.int64))
        assert gt.shape == (d["height"], d["width"])
        logits = torch.nn.functional.one_hot(gt.masked_fill(gt == 255, 0), n_classes).permute(2, 0, 1).float()
        evaluator.process([{"file_name": d["file_name"]}], [{"sem_seg": logits}])
    result = evaluator.evaluate()["sem_seg"]
    assert result["mIoU"] == pytest.approx(100.0)
    used = {f"IoU-{c}" for c in cityscapes.CITYSCAPES_STUFF_USED + cityscapes.CITYSCAPES_THING_CLASSES}
    assert used <= {k for k, v in result.items() if v == pytest.approx(100.0)}


def test_cityscapes_instance_evaluator_scores_ground_truth_100(
    cityscapes_val: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # cityscapesscripts writes matches.json into the working directory
    from cityscapesscripts.helpers.labels import name2label
    from detectron2.evaluation import CityscapesInstanceEvaluator
    from detectron2.structures import Instances

    name = "cityscapes_fine_instance_seg_val"
    label_to_class = {name2label[c].id: i for i, c in enumerate(_meta(name).thing_classes)}
    evaluator = CityscapesInstanceEvaluator(name)
    evaluator.reset()
    for d in cityscapes_val:
        ids = np.asarray(Image.open(_instance_png(d["file_name"])))
        inst_ids = [v for v in np.unique(ids) if v >= 1000]
        inst = Instances((d["height"], d["width"]))
        inst.pred_classes = torch.tensor([label_to_class[v // 1000] for v in inst_ids], dtype=torch.int64)
        inst.scores = torch.ones(len(inst_ids))
        inst.pred_masks = torch.from_numpy(np.stack([ids == v for v in inst_ids]))
        evaluator.process([{"file_name": d["file_name"]}], [{"instances": inst}])
    segm = evaluator.evaluate()["segm"]
    assert segm["AP"] == pytest.approx(100.0)
    assert segm["AP50"] == pytest.approx(100.0)


def test_cityscapes_official_semseg_evaluator_scores_ground_truth_100(tiny_root: Path) -> None:
    from detectron2.evaluation import CityscapesSemSegEvaluator

    name = "cityscapes_fine_sem_seg_val"
    n_classes = len(_meta(name).stuff_classes)
    evaluator = CityscapesSemSegEvaluator(name)
    evaluator.reset()
    for d in _catalog(name):
        gt = torch.from_numpy(np.asarray(Image.open(d["sem_seg_file_name"]), dtype=np.int64))
        logits = torch.nn.functional.one_hot(gt.masked_fill(gt == 255, 0), n_classes).permute(2, 0, 1).float()
        evaluator.process([{"file_name": d["file_name"]}], [{"sem_seg": logits}])
    result = evaluator.evaluate()["sem_seg"]
    assert result["IoU"] == pytest.approx(100.0)
    assert result["iIoU"] == pytest.approx(100.0)


# ----------------------------------------------------------------------------- pretraining


def test_pretrain_imagefolder(tiny_root: Path) -> None:
    from torchvision.datasets import ImageFolder

    for split in ("train", "val"):
        ds = ImageFolder(str(tiny_root / "pretrain" / split))
        assert ds.classes == list(td.PRETRAIN_CLASSES)
        assert len(ds) == td.DEFAULT_SIZES[f"pretrain_{split}"]
        assert set(ds.targets) == set(range(len(td.PRETRAIN_CLASSES)))
        for index in range(0, len(ds), 9):
            img, target = ds[index]
            assert img.size == (td.PRETRAIN_PX, td.PRETRAIN_PX) and img.mode == "RGB"
            # The labelled class's colour covers a good part of the image.
            color = np.asarray(draw.STYLES[ds.classes[target]].color, dtype=np.float32)
            near = np.abs(np.asarray(img, dtype=np.float32) - color).max(axis=2) < 60
            assert near.mean() > 0.08, ds.samples[index][0]
