"""The three contrastive-loss mechanisms (MoCo, end-to-end, memory bank): losses as defined, gradients,
bank updates, checkpoints that resume exactly and convert for Detectron2, end-to-end under DDP (the memory
bank's 2-process path is in test_pretrain_distributed.py)."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from pretrain import main_moco
from pretrain.end_to_end import EndToEnd
from pretrain.mechanisms import MECHANISMS, build_mechanism
from pretrain.memory_bank import MemoryBank, nce_loss
from pretrain.moco import MoCo
from pretrain.synthetic import write_image_folder

TINY = ["-a", "resnet18", "-b", "8", "--crop-size", "32", "--moco-k", "16", "--workers", "0", "-p", "100",
        "--no-tensorboard", "--seed", "3"]


class PerSample(nn.Module):
    """A small encoder without BN: an image's output does not depend on the rest of the batch."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.fc = nn.Linear(4, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_image_folder(root / "train", classes=3, per_class=10, size=36)  # 30 images: 3 batches of 8
    write_image_folder(root / "val", classes=3, per_class=4, size=36, seed=1)
    return root


def losses(folder: Path) -> list[float]:
    return [float(r["loss"]) for r in csv.DictReader(open(folder / "metrics.csv"))]


# ------------------------------------------------------------------------------------------ end-to-end

def test_end_to_end_loss_is_batch_infonce_and_gradients_reach_the_keys():
    torch.manual_seed(0)
    N, T = 6, 0.2
    e2e = EndToEnd(PerSample(), dim=8, T=T)
    ref = copy.deepcopy(e2e.encoder_q)
    x_q, x_k = torch.randn(N, 3, 9, 9), torch.randn(N, 3, 9, 9)
    logits, pending = e2e(x_q, x_k)
    assert logits.shape == (N, N) and pending is None  # 1 positive + N-1 negatives: K = the batch
    loss = e2e.loss(logits)
    loss.backward()
    # The definition: keys from the same encoder, logits q_i.k_j / T, the positive on the diagonal.
    q, k = F.normalize(ref(x_q), dim=1), F.normalize(ref(x_k), dim=1)
    loss_ref = F.cross_entropy(q @ k.T / T, torch.arange(N))
    assert torch.allclose(loss, loss_ref, atol=1e-6)
    assert torch.allclose(logits[:, 0], (q * k).sum(1) / T, atol=1e-6)
    grads = torch.autograd.grad(loss_ref, list(ref.parameters()), retain_graph=True)
    for p, g in zip(e2e.encoder_q.parameters(), grads):
        assert torch.allclose(p.grad, g, atol=1e-6)
    # ... and the key path carries gradient: detaching the keys changes it.
    detached = torch.autograd.grad(F.cross_entropy(q @ k.detach().T / T, torch.arange(N)), list(ref.parameters()))
    assert not all(torch.allclose(p.grad, g, atol=1e-6) for p, g in zip(e2e.encoder_q.parameters(), detached))


# ----------------------------------------------------------------------------------------- memory bank

def test_memory_bank_logits_negatives_and_update():
    torch.manual_seed(0)
    n, K, T, m = 20, 64, 0.07, 0.5
    bank = MemoryBank(PerSample(), num_samples=n, dim=8, K=K, T=T, bank_m=m)
    assert bank.memory.shape == (n, 8) and bank.memory.abs().max() <= math.sqrt(3 / 8)  # Wu et al.'s init
    before = bank.memory.clone()
    x, index = torch.randn(4, 3, 9, 9), torch.tensor([3, 7, 8, 19])
    seen = []
    draw = bank.draw_negatives
    bank.draw_negatives = lambda idx: seen.append(draw(idx)) or seen[-1]
    logits, pending = bank(x, None, index)
    q = F.normalize(bank.encoder_q(x), dim=1)
    negatives = seen[0]
    assert logits.shape == (4, 1 + K)
    assert torch.allclose(logits[:, 0], (q * before[index]).sum(1) / T, atol=1e-6)  # positive: the own entry
    assert torch.allclose(logits[:, 1:], q @ before[negatives].T / T, atol=1e-6)
    assert not set(negatives.tolist()) & set(index.tolist())  # never an image of the batch
    bank.loss(logits).backward()
    assert bank.encoder_q.fc.weight.grad is not None and bank.memory.grad is None
    bank.after_step(pending)
    expect = F.normalize(m * before[index] + (1 - m) * q.detach(), dim=1)
    assert torch.allclose(bank.memory[index], expect, atol=1e-6)  # the batch's entries: the stated update
    others = torch.ones(n, dtype=torch.bool)
    others[index] = False
    assert torch.equal(bank.memory[others], before[others])  # every other entry: unchanged


def test_memory_bank_draws_uniformly_outside_the_batch():
    bank = MemoryBank(PerSample(), num_samples=10, dim=8, K=20000, seed=1)
    batch = torch.tensor([9, 0, 4, 5, 4])  # duplicates (a replaced unreadable image) are fine
    counts = torch.bincount(bank.draw_negatives(batch), minlength=10)
    free = [1, 2, 3, 6, 7, 8]
    assert counts[[0, 4, 5, 9]].sum() == 0 and (counts[free] > 0).all()
    assert (counts[free].float() / 20000 - 1 / 6).abs().max() < 0.02  # uniform over the free images
    with pytest.raises(ValueError, match="no entry outside the batch"):
        MemoryBank(PerSample(), num_samples=3, dim=8, K=4).draw_negatives(torch.tensor([0, 1, 2]))


def test_nce_follows_wu_et_al():
    """NCE with Z fixed from the first batch (n x mean exp(v.q/T)) and the noise prior K/n."""
    torch.manual_seed(0)
    n, K, T = 50, 16, 0.07
    bank = MemoryBank(PerSample(), num_samples=n, dim=8, K=K, T=T, loss="nce")
    x, index = torch.randn(4, 3, 9, 9), torch.tensor([1, 2, 3, 4])
    logits, _ = bank(x, None, index)
    z = float(logits.detach().exp().mean() * n)
    assert float(bank.nce_log_z.exp()) == pytest.approx(z, rel=1e-5)
    p = logits.exp() / z
    noise = K / n
    ref = -(torch.log(p[:, 0] / (p[:, 0] + noise)) + torch.log(noise / (p[:, 1:] + noise)).sum(1)).mean()
    assert torch.allclose(bank.loss(logits), ref, rtol=1e-5)
    bank(torch.randn(4, 3, 9, 9), None, index)
    assert float(bank.nce_log_z.exp()) == pytest.approx(z, rel=1e-5)  # fixed after the first batch
    assert torch.isfinite(nce_loss(torch.full((2, 5), 80.0), torch.tensor(0.0), 1e-3))  # no overflow


# ------------------------------------------------------------------------------------------------ MoCo

@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_what_each_mechanism_back_propagates(mechanism):
    torch.manual_seed(0)
    model = build_mechanism(mechanism, "resnet18", dim=16, K=32, bn_splits=2, num_samples=40)
    x = torch.randn(4, 3, 32, 32)
    logits, pending = model(x, x.flip(3), torch.arange(4))
    model.loss(logits).backward()
    assert model.encoder_q.conv1.weight.grad is not None
    if mechanism == "moco":
        assert model.encoder_k.conv1.weight.grad is None  # the key encoder gets no gradient
        assert all(not p.requires_grad for p in model.encoder_k.parameters())
    else:
        assert not hasattr(model, "encoder_k")
    model.after_step(pending)
    assert logits.shape[1] == (4 if mechanism == "end-to-end" else 33)
    assert set(model.generators()) == {"negatives" if mechanism == "memory-bank" else "shuffle"}


# ---------------------------------------------------------------------------------- training + files

@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_each_mechanism_trains_and_its_checkpoint_converts(mechanism, data, tmp_path):
    from transfer.convert import convert

    last = main_moco.main([*TINY, "--mechanism", mechanism, "--epochs", "1",
                           "--output-dir", str(tmp_path), str(data)])
    steps = losses(tmp_path)
    assert len(steps) == 3 and all(math.isfinite(v) for v in steps)
    ck = torch.load(last, map_location="cpu", weights_only=True)
    sd = ck["state_dict"]
    assert "module.encoder_q.conv1.weight" in sd and ck["suite"]["args"]["mechanism"] == mechanism
    assert ("module.encoder_k.conv1.weight" in sd) == (mechanism == "moco")
    if mechanism == "memory-bank":
        assert sd["module.memory"].shape == (30, 128) and "negatives" in ck["rng"]
    prov = convert(last, tmp_path / "backbone.pkl", verify=True, log=lambda *_: None)
    assert prov["verification"] is not None and max(prov["verification"]["max_relative_error"].values()) < 1e-3
    assert prov["arch"] == "resnet18"


def test_resumed_memory_bank_run_equals_an_uninterrupted_one(data, tmp_path):
    """The bank, its NCE normaliser and the negatives' generator are in the checkpoint."""
    args = [*TINY, "--mechanism", "memory-bank", "--bank-loss", "nce", "--epochs", "2"]
    ref = main_moco.main([*args, "--output-dir", str(tmp_path / "ref"), str(data)])
    part = main_moco.main([*args, "--max-iters", "4", "--output-dir", str(tmp_path / "two"), str(data)])
    assert part.name == "checkpoint_0001_iter000001.pth.tar"
    last = main_moco.main([*args, "--resume", "auto", "--output-dir", str(tmp_path / "two"), str(data)])
    assert losses(tmp_path / "two") == losses(tmp_path / "ref") and len(losses(tmp_path / "ref")) == 6
    a, b = (torch.load(p, map_location="cpu", weights_only=True)["state_dict"] for p in (ref, last))
    assert torch.equal(a["module.memory"], b["module.memory"]) and torch.equal(a["module.nce_log_z"], b["module.nce_log_z"])
    with pytest.raises(SystemExit, match="trained with --mechanism memory-bank, not moco"):
        main_moco.main([*TINY, "--epochs", "3", "--resume", str(last), "--output-dir", str(tmp_path / "x"), str(data)])
    with pytest.raises(SystemExit, match="queue must hold at least one batch"):
        main_moco.main([*TINY, "--moco-k", "4", "--output-dir", str(tmp_path / "y"), str(data)])


def test_moco_model_is_unchanged_by_the_interface():
    """MoCo through the interface: forward(im_q, im_k, index) == forward(im_q, im_k); after_step enqueues."""
    torch.manual_seed(0)
    a = MoCo(PerSample(), dim=8, K=16, seed=2)
    b = copy.deepcopy(a)
    x, y = torch.randn(4, 3, 9, 9), torch.randn(4, 3, 9, 9)
    la, ka = a(x, y, torch.arange(4))
    lb, kb = b(x, y)
    assert torch.equal(la, lb) and torch.equal(ka, kb)
    a.after_step(ka)
    assert int(a.queue_ptr) == 4 and torch.equal(a.queue[:, :4], ka.T)


def test_end_to_end_two_process_ddp_run_equals_the_one_process_emulation(tmp_path):
    """DDP with the keys' gradient gathered across processes == one process with 2 BN groups (same batches)."""
    data = write_image_folder(tmp_path / "data", classes=2, per_class=12, size=36)
    args = ["-a", "resnet18", "-b", "8", "--crop-size", "64", "--workers", "0", "-p", "100", "--no-tensorboard",
            "--seed", "5", "--epochs", "1", "--max-iters", "2", "--mechanism", "end-to-end"]
    main_moco.main([*args, "--multiprocessing-distributed", "--world-size", "2", "--output-dir", str(tmp_path / "ddp"),
                    str(data)])
    main_moco.main([*args, "--bn-splits", "2", "--output-dir", str(tmp_path / "one"), str(data)])
    ddp, one = losses(tmp_path / "ddp"), losses(tmp_path / "one")
    assert len(ddp) == 2 and ddp == pytest.approx(one, rel=1e-4, abs=1e-5)
    a, b = (torch.load(next((tmp_path / d).glob("checkpoint_*.pth.tar")), map_location="cpu", weights_only=True)
            for d in ("ddp", "one"))
    assert a["world_size"] == 2
    for key in ("module.encoder_q.conv1.weight", "module.encoder_q.layer4.1.conv2.weight", "module.encoder_q.fc.weight"):
        assert torch.allclose(a["state_dict"][key], b["state_dict"][key], atol=1e-4), key
