"""MoCo v3's multi-process path on the CPU (gloo, 2 processes).

Proven here: 2 DDP processes, each with its half of the global batch, train exactly as one process on the whole
batch whose head BNs normalise each half on its own (what per-process BN computes): same losses, same logits row
for row (rank ``r``'s positives in columns ``r*N .. r*N+N-1`` of the all-gathered keys), same base, predictor and
momentum-encoder parameters, both ranks in sync, each rank's BN running statistics those of its own half; and
``--multiprocessing-distributed --world-size 2`` runs ``--preset v3-vit`` and ``--preset v3`` to a checkpoint.
Not covered: SyncBN (``convert_sync_batchnorm``, GPUs only; torch's SyncBatchNorm does not run on the CPU), so on
GPUs the head BNs see the global batch instead (the control at the end of the first test: that differs).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from pretrain import main_moco
from pretrain.distributed import free_port
from pretrain.moco_v3 import MoCoV3, build_moco_v3, positive_columns
from pretrain.optim import build_optimizer
from pretrain.synthetic import write_image_folder

LR = 0.01  # SGD (see train): moves the transformer blocks' weights by ~1e-2 in 2 steps
N, WORLD, STEPS, CROP = 4, 2, 2, 32  # per-process batch, processes, optimizer steps, crop (2 x 2 patches of 16)


def build() -> MoCoV3:
    """The same small ViT MoCo v3 in every process (v3-vit's frozen patch projection; m 0.9 so keys move)."""
    torch.manual_seed(0)
    return build_moco_v3("vit_tiny", dim=16, mlp_dim=32, m=0.9, T=0.2, img_size=CROP, stop_grad_conv1=True)


def global_batches() -> torch.Tensor:
    """``[step, crop (im_q, im_k), WORLD * N images, 3, CROP, CROP]``, the same in every process."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(STEPS, 2, WORLD * N, 3, CROP, CROP, generator=g)


def train(net: nn.Module, model: MoCoV3, views: torch.Tensor) -> tuple[list[float], torch.Tensor]:
    """The loop's step (``Trainer.train_step``) ``STEPS`` times; returns the losses and the logits of step 1.

    SGD, not v3-vit's AdamW: Adam scales each gradient entry to about +-lr, also the entries that are pure float
    rounding (the attention key bias has zero gradient: softmax is shift-invariant), whose sign differs between
    a sum over 8 rows and two all-reduced sums over 4 -- the comparison would measure noise, not the method."""
    optimizer = build_optimizer("sgd", model.trainable_parameters(), LR, 0.9, 1e-4, torch.device("cpu"))
    losses: list[float] = []
    first = torch.empty(0)
    for im_q, im_k in views:
        logits, pending = net(im_q, im_k, None)
        loss = model.loss(logits)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.after_step(pending)
        losses.append(float(loss.detach()))
        if not len(first):
            first = logits.detach().clone()
    return losses, first


def _rank(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", world_size=WORLD, rank=rank)
    try:
        model = build()
        net = DistributedDataParallel(model, device_ids=None, broadcast_buffers=False)  # as main_moco's Trainer
        views = global_batches()[:, :, rank * N:(rank + 1) * N]  # this rank's share, as EpochBatchSampler's
        losses, logits = train(net, model, views)
        torch.save({"losses": losses, "logits": logits, "positives": positive_columns(logits),
                    "state": model.state_dict()}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


class PerProcessBN1d(nn.Module):
    """``nn.BatchNorm1d`` over each of ``WORLD`` equal chunks of the batch on its own, one set of running
    statistics per chunk (``running_mean[r]``: process ``r``'s): per-process BN of ``WORLD`` processes."""

    def __init__(self, bn: nn.BatchNorm1d) -> None:
        super().__init__()
        self.weight, self.bias = bn.weight, bn.bias
        self.momentum, self.eps = bn.momentum, bn.eps
        self.register_buffer("running_mean", bn.running_mean.repeat(WORLD, 1))
        self.register_buffer("running_var", bn.running_var.repeat(WORLD, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.training
        return torch.cat([F.batch_norm(part, self.running_mean[r], self.running_var[r], self.weight, self.bias,
                                       True, self.momentum, self.eps) for r, part in enumerate(x.chunk(WORLD))])


def per_process_bn(model: nn.Module) -> nn.Module:
    """Every ``BatchNorm1d`` (projectors and predictor, base and momentum encoder) as :class:`PerProcessBN1d`."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.BatchNorm1d):
                setattr(module, name, PerProcessBN1d(child))
    return model


def test_two_ddp_processes_equal_one_process_with_per_half_bn(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(_rank, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    reference = per_process_bn(build())
    assert sum(isinstance(m, PerProcessBN1d) for m in reference.modules()) == 2 * 3 + 2  # 2 projectors, predictor
    ref_losses, ref_logits = train(reference, reference, global_batches())

    # logits of step 1: rank r's queries against every process's keys in rank order = the reference's rows of
    # those queries ([q1; q2] x [k_rank0; k_rank1]); rank r's positives in columns r*N .. r*N+N-1
    assert ref_logits.shape == (2 * WORLD * N, WORLD * N)
    for r, rank in enumerate(ranks):
        rows = torch.cat([torch.arange(r * N, (r + 1) * N), WORLD * N + torch.arange(r * N, (r + 1) * N)])
        assert rank["logits"].shape == (2 * N, WORLD * N)
        assert torch.allclose(rank["logits"], ref_logits[rows], rtol=1e-4, atol=1e-5), r
        assert rank["positives"].tolist() == list(range(r * N, (r + 1) * N)) * 2
    assert ranks[1]["positives"].tolist() == [4, 5, 6, 7, 4, 5, 6, 7]  # N .. 2N-1 on rank 1
    # the loss the loop logs (the mean over processes) is the one-process loss of the global batch, every step
    mean_losses = [sum(rank["losses"][s] for rank in ranks) / WORLD for s in range(STEPS)]
    assert all(math.isfinite(v) for v in mean_losses)
    assert torch.allclose(torch.tensor(mean_losses), torch.tensor(ref_losses), rtol=1e-5, atol=1e-6)

    # parameters after the steps: identical on both ranks (DDP averaged the gradients of different data), equal
    # to the reference's -- base encoder, predictor and the momentum encoder that followed them
    s0, s1, ref_state = ranks[0]["state"], ranks[1]["state"], reference.state_dict()
    params = [name for name, _ in reference.named_parameters()]
    assert {"base_encoder.cls_token", "momentum_encoder.head.6.weight", "predictor.3.weight"} <= set(params)
    for name in params:
        assert torch.equal(s0[name], s1[name]), name
        assert torch.allclose(s0[name], ref_state[name], rtol=1e-4, atol=1e-5), name
    init = build().state_dict()
    change = {n: float((s0[n] - init[n]).abs().max()) for n in params}
    assert max(change[n] for n in params if n.startswith("base_encoder.blocks.")) > 1e-3  # training moved the ViT
    assert sum(n.startswith("momentum_encoder.") and change[n] > 1e-5 for n in params) > 10  # and the key encoder
    # per-process BN: each rank's running statistics are those of its own half of the batch
    stats = [n for n, _ in reference.named_buffers() if n.endswith(("running_mean", "running_var"))]
    assert len(stats) == 2 * 8 and "momentum_encoder.head.7.running_mean" in stats
    for name in stats:
        assert not torch.allclose(s0[name], s1[name]), name
        for r in range(WORLD):
            assert torch.allclose(ranks[r]["state"][name], ref_state[name][r], rtol=1e-4, atol=1e-5), (name, r)

    # control: BN over the whole global batch (what SyncBN would compute) gives measurably different numbers
    plain = build()
    plain_losses, plain_logits = train(plain, plain, global_batches())
    assert not torch.allclose(plain_logits[:N], ranks[0]["logits"][:N], atol=1e-3)
    assert abs(plain_losses[0] - ref_losses[0]) > 1e-4


CLI_RUNS = {  # preset, arch -> state-dict keys of its projector (head / fc) and predictor
    ("v3-vit", "vit_tiny"): ("module.base_encoder.head.6.weight", "module.momentum_encoder.head.7.running_var",
                             "module.predictor.4.running_mean"),
    ("v3", "resnet18"): ("module.base_encoder.fc.3.weight", "module.momentum_encoder.fc.4.running_var",
                         "module.predictor.3.weight"),
}


@pytest.mark.parametrize("preset,arch", list(CLI_RUNS))
def test_cli_two_process_run_writes_a_moco_v3_checkpoint(tmp_path: Path, preset: str, arch: str) -> None:
    data = write_image_folder(tmp_path / "data" / "train", classes=2, per_class=8, size=36)  # 16 images: 2 batches
    out = tmp_path / "out"
    last = main_moco.main(["--preset", preset, "-a", arch, "-b", "8", "--crop-size", "32", "--moco-mlp-dim", "64",
                           "--epochs", "2", "--warmup-epochs", "0", "--workers", "0", "-p", "100", "--no-tensorboard",
                           "--seed", "5", "--multiprocessing-distributed", "--world-size", "2", "--max-iters", "2",
                           "--output-dir", str(out), str(data.parent)])
    assert last is not None and last.name == "checkpoint_0000.pth.tar"  # 2 iterations: epoch 1 complete
    ck = torch.load(last, map_location="cpu", weights_only=True)
    assert ck["world_size"] == 2 and ck["global_step"] == 2 and ck["arch"] == arch
    assert ck["suite"]["moco_version"] == "v3" and ck["suite"]["args"]["mechanism"] == "moco-v3"
    sd = ck["state_dict"]
    prefixes = ("module.base_encoder.", "module.momentum_encoder.", "module.predictor.")
    assert all(k.startswith(prefixes) for k in sd)
    assert all(any(k.startswith(p) for k in sd) for p in prefixes)
    assert set(CLI_RUNS[preset, arch]) <= set(sd)
    assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(math.isfinite(float(r["loss"])) and float(r["loss"]) > 0 for r in rows)
    log = (out / "log.txt").read_text()
    assert "batch 8 (4 per process x 2)" in log and "per-process BN" in log
