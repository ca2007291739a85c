"""Data backends of pretraining (``--data-backend``) on the CPU: same samples and parameters as PIL, exact
resume, bad files, the DALI parameter mapping, and a MoCo run with the tensor backend."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pretrain import backends, main_moco
from pretrain.augment import moco_recipe
from pretrain.backends import BackendError, DaliStage, build_loader, read_encoded, resolve_backend
from pretrain.data import EpochBatchSampler, scan_images
from pretrain.synthetic import write_image_folder
from pretrain.tensor_augment import ViewParams

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("imgs") / "train", classes=2, per_class=8, size=48)


def _batches(backend: str, folder: Path, epoch: int = 1, start: int = 0, workers: int = 0) -> list:
    images = scan_images(folder)
    sampler = EpochBatchSampler(len(images.samples), 4, seed=11)
    sampler.set_epoch(epoch, start)
    return list(build_loader(backend, images, sampler, moco_recipe(32, True), workers, CPU))


def test_tensor_backend_matches_pil_samples_and_resumes_exactly(folder: Path) -> None:
    pil, tensor = _batches("pil", folder), _batches("tensor", folder)
    assert len(pil) == len(tensor) == 4
    for ((pq, pk), pl, ps, pi), ((tq, tk), tl, ts, ti) in zip(pil, tensor):
        assert torch.equal(pl, tl) and torch.equal(ps, ts) and torch.equal(pi, ti) and tq.shape == pq.shape == (4, 3, 32, 32)
        # same crops, jitter, blur, flips: only rounding/filter differences remain (normalised units)
        assert (pq - tq).abs().mean() < 0.06 and (pk - tk).abs().mean() < 0.06
    again = _batches("tensor", folder, workers=1)  # per-sample seeding: the worker count does not matter
    assert all(torch.equal(a[0][0], b[0][0]) and torch.equal(a[0][1], b[0][1]) for a, b in zip(tensor, again))
    resumed = _batches("tensor", folder, start=2)
    assert all(torch.equal(a[0][0], b[0][0]) for a, b in zip(tensor[2:], resumed))
    assert not torch.equal(_batches("tensor", folder, epoch=2)[0][0][0], tensor[0][0][0])


def test_png_gray_and_undecodable_jpeg(tmp_path: Path, caplog) -> None:
    root = write_image_folder(tmp_path / "d", classes=1, per_class=4, size=40, flat=True)
    files = sorted(root.glob("*.jpg"))
    Image.fromarray(np.full((30, 20, 3), 200, np.uint8)).save(root / "z_png.png")
    Image.fromarray(np.full((24, 36), 90, np.uint8)).save(root / "z_gray.jpg")
    png, gray = read_encoded(str(root / "z_png.png")), read_encoded(str(root / "z_gray.jpg"))
    assert png.decoded and png.data.shape == (3, 30, 20) and not gray.decoded and (gray.height, gray.width) == (24, 36)
    raw = files[1].read_bytes()
    files[1].write_bytes(raw[: len(raw) // 3])  # header intact, scan cut: only the decoder notices
    images = scan_images(root)
    sampler = EpochBatchSampler(len(images.samples), len(images.samples), seed=0)
    with caplog.at_level("WARNING", logger="pretrain"):
        ((q, k), labels, skipped, index), = list(build_loader("tensor", images, sampler, moco_recipe(16, False), 0, CPU))
    assert q.shape == k.shape == (6, 3, 16, 16) and torch.isfinite(q).all()
    # the undecodable image (index 1) is replaced by the next good one, whose index the memory bank gets
    assert int(skipped.sum()) == 1 and sorted(index.tolist()) == [0, 2, 2, 3, 4, 5] and any("does not decode" in r.message for r in caplog.records)


def test_replaced_image_gets_parameters_for_its_own_size() -> None:
    stage = backends.TensorStage(moco_recipe(16, True), CPU)
    big = backends.EncodedImage(torch.zeros(0, dtype=torch.uint8), False, 400, 300, "bad.jpg")
    small = backends.EncodedImage(torch.zeros(3, 20, 30, dtype=torch.uint8), True, 20, 30, "ok.png")
    r = moco_recipe(16, True)
    from pretrain.tensor_augment import sample_pair

    batch = backends.EncodedBatch([big, small], [sample_pair(400, 300, r), sample_pair(20, 30, r)], [5, 6],
                                  torch.tensor([0, 0]), torch.tensor([0, 0]), torch.tensor([0, 1]))
    imgs = stage._replace_bad(batch, [None, small.data])
    assert imgs[0] is small.data and batch.skipped.tolist() == [1, 0] and batch.index.tolist() == [1, 1]
    i, j, h, w = batch.pairs[0][0].crop
    assert i + h <= 20 and j + w <= 30  # redrawn (from the sample's seed) for the substitute's size
    assert batch.pairs[0] == sample_pair(20, 30, r, torch.Generator().manual_seed(5))


def test_backend_choice_and_dali_mapping(monkeypatch) -> None:
    assert resolve_backend("auto", CPU) == "pil" and resolve_backend("tensor", CPU) == "tensor"
    monkeypatch.setattr(backends, "dali_available", lambda: False)
    assert resolve_backend("auto", torch.device("cuda", 0)) == "tensor"
    with pytest.raises(BackendError, match="pip install nvidia-dali-cuda130"):
        resolve_backend("dali", CPU)
    monkeypatch.setattr(backends, "dali_available", lambda: True)
    assert resolve_backend("auto", torch.device("cuda", 0)) == "dali"
    start, end = DaliStage.roi(ViewParams((3, 5, 10, 20), None, False, None, False))
    assert start.tolist() == [3, 5] and end.tolist() == [13, 25]  # (y, x): DALI's HWC shape order


TINY = ["-a", "resnet18", "-b", "8", "--crop-size", "32", "--moco-k", "32", "--workers", "0", "-p", "100",
        "--no-tensorboard", "--seed", "4", "--preset", "v2", "--epochs", "1"]


def _losses(out: Path) -> dict[int, float]:
    with open(out / "metrics.csv") as f:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(f)}


def test_moco_with_the_tensor_backend_resumes_exactly_and_records_it(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "data", classes=2, per_class=12, size=40)  # 3 batches of 8
    full = main_moco.main([*TINY, "--data-backend", "tensor", "--output-dir", str(tmp_path / "a"), str(data)])
    ck = torch.load(full, map_location="cpu", weights_only=True)
    assert ck["suite"]["data_backend"] == "tensor" and ck["suite"]["args"]["data_backend"] == "tensor"
    assert ck["suite"]["precision"] == {"mode": "fast", "autocast": None, "tf32": False, "paper_arithmetic": True}
    main_moco.main([*TINY, "--data-backend", "tensor", "--max-iters", "2", "--output-dir", str(tmp_path / "b"), str(data)])
    main_moco.main([*TINY, "--data-backend", "tensor", "--resume", "auto", "--output-dir", str(tmp_path / "b"), str(data)])
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert list(a) == [1, 2, 3] and a == b  # bit-identical after the resume
    with pytest.raises(SystemExit, match="--precision paper means fp32"):
        main_moco.main([*TINY, "--precision", "paper", "--amp", "bf16", str(data)])


# --- the GPU prefetch thread, with CUDA's stream/event calls replaced by fakes (CPU twin of the GPU path) ---

class _FakeStream:
    def wait_event(self, event) -> None:
        pass


class _FakeView:
    def record_stream(self, stream) -> None:
        pass


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda's stream API as no-ops; records what set_device was given (a GPU run made it hang: #gpu-check)."""
    import contextlib

    calls: dict = {"set_device": []}
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "Stream", lambda *a, **k: _FakeStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a: _FakeStream())
    monkeypatch.setattr(torch.cuda, "Event", lambda *a, **k: type("E", (), {"record": lambda self, s=None: None})())

    def set_device(d) -> None:
        if not isinstance(d, int) and getattr(d, "index", None) is None:  # torch's rule: an index, not a bare "cuda"
            raise ValueError(f"Expected a torch.device with a specified index or an integer, but got:{d}")
        calls["set_device"].append(d)

    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    return calls


def _consume(prefetcher, timeout: float = 20.0) -> tuple[list, BaseException | None]:
    """Iterate in a thread so that a hang fails the test instead of blocking it."""
    import threading

    got, err = [], []

    def run() -> None:
        try:
            got.extend(prefetcher)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            err.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "the prefetcher hung"
    return got, (err[0] if err else None)


def test_gpu_prefetch_thread_with_a_bare_cuda_device_yields_every_batch(fake_cuda) -> None:
    stage = lambda b: ((_FakeView(), _FakeView()), b)  # noqa: E731
    got, err = _consume(backends.DevicePrefetcher(range(5), stage, torch.device("cuda")))
    assert err is None and [b for _, b in got] == list(range(5))
    assert fake_cuda["set_device"] == [0]  # an index, resolved from the caller's current device


def test_gpu_prefetch_thread_errors_reach_the_consumer(fake_cuda, monkeypatch) -> None:
    def stage(b):
        if b == 2:
            raise OSError("nvJPEG failed")
        return (_FakeView(), _FakeView()), b

    got, err = _consume(backends.DevicePrefetcher(range(5), stage, torch.device("cuda", 0)))
    assert [b for _, b in got] == [0, 1] and isinstance(err, OSError) and "nvJPEG" in str(err)
    # an error while the thread sets itself up (before any batch) also reaches the consumer, at once
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: (_ for _ in ()).throw(RuntimeError("no such device")))
    got, err = _consume(backends.DevicePrefetcher(range(5), stage, torch.device("cuda", 0)))
    assert got == [] and isinstance(err, RuntimeError) and "no such device" in str(err)
