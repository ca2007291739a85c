"""MoCo model pieces: queue, momentum update, shuffling BN, and the loss against the paper's Algorithm 1."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from pretrain.moco import (MoCo, SplitBatchNorm2d, auto_bn_splits, build_moco, moco_loss, pretext_topk,
                           set_bn_splits)


class TinyEncoder(nn.Module):
    """A per-sample encoder (no BN): its output for an image does not depend on the rest of the batch."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2)
        self.fc = nn.Linear(6, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean(dim=(2, 3)))


class BNEncoder(TinyEncoder):
    def __init__(self, dim: int = 8) -> None:
        super().__init__(dim)
        self.bn = nn.BatchNorm2d(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def test_queue_is_fifo_with_wraparound():
    torch.manual_seed(0)
    moco = MoCo(TinyEncoder(4), dim=4, K=8)
    seen = []
    for n in (3, 3, 3, 2, 5):
        keys = F.normalize(torch.randn(n, 4), dim=1)
        moco.enqueue(keys)
        seen.extend(keys)
    ptr = int(moco.queue_ptr)
    assert ptr == sum((3, 3, 3, 2, 5)) % 8
    # Reading the queue from the pointer gives the K most recent keys, oldest first.
    order = [(ptr + i) % 8 for i in range(8)]
    assert torch.equal(moco.queue[:, order].T, torch.stack(seen[-8:]))
    with pytest.raises(ValueError):
        moco.enqueue(torch.randn(9, 4))


def test_queue_starts_normalised_and_is_seeded():
    a, b = MoCo(TinyEncoder(4), dim=4, K=16, seed=3), MoCo(TinyEncoder(4), dim=4, K=16, seed=3)
    assert torch.equal(a.queue, b.queue)
    assert torch.allclose(a.queue.norm(dim=0), torch.ones(16))


def test_momentum_update_moves_key_params_only():
    torch.manual_seed(0)
    moco = MoCo(BNEncoder(), dim=8, K=16, m=0.9)
    for pq, pk in zip(moco.encoder_q.parameters(), moco.encoder_k.parameters()):
        assert torch.equal(pq, pk) and not pk.requires_grad and pq.requires_grad
    with torch.no_grad():
        for p in moco.encoder_q.parameters():
            p.add_(1.0)
    k_before = [p.clone() for p in moco.encoder_k.parameters()]
    q_now = [p.clone() for p in moco.encoder_q.parameters()]
    bn_stats = moco.encoder_k.bn.running_mean.clone()
    moco.momentum_update()
    for pk, k0, q in zip(moco.encoder_k.parameters(), k_before, q_now):
        assert torch.allclose(pk, 0.9 * k0 + 0.1 * q, atol=1e-6)
    assert torch.equal(moco.encoder_k.bn.running_mean, bn_stats)  # buffers follow the key encoder's own batches
    assert all(torch.equal(p, q) for p, q in zip(moco.encoder_q.parameters(), q_now))


def test_shuffle_then_unshuffle_is_identity_and_really_shuffles():
    torch.manual_seed(0)
    moco = MoCo(TinyEncoder(8), dim=8, K=16)
    seen = []
    moco.encoder_k.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].clone()))
    x = torch.randn(12, 3, 9, 9)
    keys = moco.encode_keys(x)
    with torch.no_grad():
        direct = F.normalize(moco.encoder_k(x), dim=1)
    assert torch.allclose(keys, direct, atol=1e-6)  # per-sample encoder: unshuffle restores the order exactly
    shuffled = seen[0]
    assert not torch.equal(shuffled, x)
    perm = [next(j for j in range(12) if torch.equal(shuffled[i], x[j])) for i in range(12)]
    assert sorted(perm) == list(range(12))


def test_split_bn_normalises_sub_batches_and_updates_stats_from_the_first():
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(5)
    split = set_bn_splits(nn.Sequential(copy.deepcopy(ref)), 2)[0]
    assert isinstance(split, SplitBatchNorm2d)
    assert list(split.state_dict()) == list(ref.state_dict())
    x = torch.randn(8, 5, 4, 4) * 3 + 1
    out = split(x)
    expect = torch.cat([F.batch_norm(c, None, None, ref.weight, ref.bias, True, 0.0, ref.eps) for c in x.chunk(2)])
    assert torch.allclose(out, expect, atol=1e-5)
    ref(x[:4])  # rank 0 of a 2-process run sees the first half
    assert torch.allclose(split.running_mean, ref.running_mean) and torch.allclose(split.running_var, ref.running_var)
    assert int(split.num_batches_tracked) == 1
    split.eval(), ref.eval()
    assert torch.allclose(split(x), ref(x))


def test_auto_bn_splits():
    assert auto_bn_splits(256) == 8 and auto_bn_splits(32) == 2 and auto_bn_splits(8) == 2
    assert 48 % auto_bn_splits(48) == 0


def test_loss_matches_algorithm_1_of_the_paper():
    """Three SGD steps of MoCo vs a direct transcription of the paper's pseudocode (Algorithm 1).

    The pseudocode updates f_k right after the SGD step; the implementation does it at the start of
    the next forward (as the reference code) -- the same sequence of key encoders.
    """
    torch.manual_seed(0)
    N, C, K, m, t = 6, 8, 12, 0.99, 0.2
    f_q = TinyEncoder(C)
    moco = MoCo(copy.deepcopy(f_q), dim=C, K=K, m=m, T=t)
    f_k = copy.deepcopy(f_q)  # f_k.params = f_q.params
    queue = moco.queue.clone()  # C x K
    opt_ref = torch.optim.SGD(f_q.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    opt = torch.optim.SGD(moco.encoder_q.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    for step in range(3):
        x_q, x_k = torch.randn(N, 3, 9, 9), torch.randn(N, 3, 9, 9)
        # --- Algorithm 1 ---
        q = F.normalize(f_q(x_q), dim=1)
        k = F.normalize(f_k(x_k), dim=1).detach()
        l_pos = torch.bmm(q.view(N, 1, C), k.view(N, C, 1)).view(N, 1)
        l_neg = torch.mm(q.view(N, C), queue.view(C, K))
        logits_ref = torch.cat([l_pos, l_neg], dim=1)
        loss_ref = nn.CrossEntropyLoss()(logits_ref / t, torch.zeros(N, dtype=torch.long))
        opt_ref.zero_grad()
        loss_ref.backward()
        opt_ref.step()
        with torch.no_grad():
            for pk, pq in zip(f_k.parameters(), f_q.parameters()):
                pk.copy_(m * pk + (1 - m) * pq)
        queue = torch.cat([queue, k.T], dim=1)[:, N:]  # enqueue the newest, dequeue the oldest
        # --- implementation (the queue is a ring buffer: its oldest entry is at queue_ptr) ---
        oldest_first = [(int(moco.queue_ptr) + i) % K for i in range(K)]
        logits, keys = moco(x_q, x_k)
        loss = moco_loss(logits)
        opt.zero_grad()
        loss.backward()
        opt.step()
        moco.enqueue(keys)
        assert torch.allclose(loss, loss_ref, atol=1e-5), step
        assert torch.allclose(logits[:, [0] + [1 + j for j in oldest_first]] * t, logits_ref, atol=1e-5)
        for p, p_ref in zip(moco.encoder_q.parameters(), f_q.parameters()):
            assert torch.allclose(p, p_ref, atol=1e-5)
        ptr = int(moco.queue_ptr)
        assert torch.allclose(moco.queue[:, [(ptr + i) % K for i in range(K)]], queue, atol=1e-6)


def test_pretext_topk_counts_rank_of_positive():
    logits = torch.tensor([[5.0, 1, 2, 3], [1.0, 2, 3, 4], [2.0, 3, 1, 0]])
    acc1, acc2 = pretext_topk(logits, (1, 2))
    assert acc1.item() == pytest.approx(100 / 3) and acc2.item() == pytest.approx(200 / 3)


def test_resnet_moco_v1_and_v2_heads():
    v1 = build_moco("resnet18", dim=16, K=32)
    v2 = build_moco("resnet18", dim=16, K=32, mlp=True, bn_splits=2)
    sd1, sd2 = v1.state_dict(), v2.state_dict()
    assert sd1["encoder_q.fc.weight"].shape == (16, 512)
    assert sd2["encoder_q.fc.0.weight"].shape == (512, 512) and sd2["encoder_q.fc.2.weight"].shape == (16, 512)
    assert sd2["queue"].shape == (16, 32) and sd2["queue_ptr"].dtype == torch.long
    x = torch.randn(4, 3, 32, 32)
    logits, keys = v2(x, x.flip(3))
    assert logits.shape == (4, 33) and logits.dtype == torch.float32 and keys.shape == (4, 16)
    moco_loss(logits).backward()
    assert v2.encoder_q.conv1.weight.grad is not None and v2.encoder_k.conv1.weight.grad is None
