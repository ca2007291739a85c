"""Image folders, unreadable files, per-sample augmentation seeds and the resumable batch sampler."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from pretrain.augment import eval_transform, moco_transform
from pretrain.data import (DataError, EpochBatchSampler, ImageDataset, check_readable, sample_seed, scan_images,
                           split_dir)
from pretrain.synthetic import write_image_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("imgs") / "train", classes=2, per_class=5, size=24)


def test_imagefolder_and_flat_layouts(folder, tmp_path):
    images = scan_images(folder)
    assert images.layout == "imagefolder" and images.classes == ["class_0", "class_1"] and len(images.samples) == 10
    assert {label for _, label in images.samples} == {0, 1}
    flat = write_image_folder(tmp_path / "flat", classes=2, per_class=3, size=16, flat=True)
    (flat / "sub").mkdir()
    shutil.copy(next(flat.glob("*.jpg")), flat / "sub" / "nested.jpg")
    (flat / "notes.txt").write_text("not an image")
    images = scan_images(flat)
    assert images.layout == "flat" and images.classes == [] and len(images.samples) == 7
    assert all(label == -1 for _, label in images.samples)
    assert split_dir(folder.parent) == folder and split_dir(folder) == folder


def test_missing_empty_and_unreadable_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        scan_images(tmp_path / "nope")
    (tmp_path / "empty" / "class_a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        scan_images(tmp_path / "empty")
    bad = tmp_path / "bad" / "c"
    bad.mkdir(parents=True)
    for i in range(3):
        (bad / f"{i}.jpg").write_bytes(b"not a jpeg")
    images = scan_images(tmp_path / "bad")
    with pytest.raises(DataError, match="none of the 3 images"):
        check_readable(images)
    with pytest.raises(DataError, match="can be read"):
        ImageDataset(images, eval_transform(16))[0]


def test_corrupt_and_truncated_images_are_skipped_and_counted(folder, tmp_path, caplog):
    root = tmp_path / "mixed"
    shutil.copytree(folder, root)
    files = sorted(root.rglob("*.jpg"))
    files[0].write_bytes(b"\x00garbage")
    data = files[1].read_bytes()
    files[1].write_bytes(data[: len(data) // 3])  # truncated JPEG
    images = scan_images(root)
    check_readable(images)  # some images are fine
    ds = ImageDataset(images, eval_transform(16))
    with caplog.at_level("WARNING", logger="pretrain"):
        img, label, skipped = ds[0]
    assert skipped == 2 and img.shape == (3, 16, 16) and label == 0  # both bad files replaced by the next good one
    assert sum("unreadable" in r.message for r in caplog.records) == 2
    assert ds[1][2] == 1  # known-bad file: skipped again (counted), not re-read
    assert ds[2][2] == 0


def test_seeded_augmentation_is_reproducible_and_leaves_global_rng_alone(folder):
    ds = ImageDataset(scan_images(folder), moco_transform(16, aug_plus=True))
    state = torch.get_rng_state()
    (q1, k1), _, _ = ds[(3, 1234)]
    assert torch.equal(torch.get_rng_state(), state)
    (q2, k2), _, _ = ds[(3, 1234)]
    assert torch.equal(q1, q2) and torch.equal(k1, k2)
    assert not torch.equal(q1, k1)  # two different views of the image
    (q3, _), _, _ = ds[(3, 999)]
    assert not torch.equal(q1, q3)
    assert sample_seed(0, 1, 2) != sample_seed(0, 2, 1) and 0 <= sample_seed(2**40, 7, 9) < 2**63


def test_batch_sampler_shards_global_batches_and_resumes():
    n, B = 50, 8
    one = EpochBatchSampler(n, B, seed=5)
    two = [EpochBatchSampler(n, B, seed=5, rank=r, world_size=2) for r in range(2)]
    for s in (one, *two):
        s.set_epoch(3)
    batches = list(one)
    assert len(batches) == len(one) == n // B and all(len(b) == B for b in batches)
    shards = [list(s) for s in two]
    for b, (r0, r1) in enumerate(zip(*shards)):
        assert r0 + r1 == batches[b]  # rank r holds the r-th contiguous block of the global batch
    one.set_epoch(3, start_batch=4)
    assert list(one) == batches[4:] and len(one) == len(batches) - 4
    one.set_epoch(4)
    assert list(one) != batches
    with pytest.raises(DataError):
        EpochBatchSampler(5, 8, seed=0)
