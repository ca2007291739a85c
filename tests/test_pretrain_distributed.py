"""The multi-process path on the CPU (gloo, 2 processes): key gathering, cross-process shuffle, queue."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from pretrain import main_moco
from pretrain.distributed import all_gather_cat, free_port
from pretrain.memory_bank import MemoryBank
from pretrain.moco import MoCo
from pretrain.synthetic import write_image_folder

# 64 px crops: at 32 px ResNet-18's last stage is 1x1, BN groups of 4 values amplify float rounding (a 1e-7
# weight perturbation changes step-3 gradients by ~50%), so the two runs could not be compared closely.
TINY = ["-a", "resnet18", "-b", "8", "--crop-size", "64", "--moco-k", "64", "--workers", "0", "-p", "100",
        "--no-tensorboard", "--seed", "5", "--epochs", "1", "--max-iters", "3"]


class PerSample(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _collectives(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", world_size=world, rank=rank)
    try:
        torch.manual_seed(0)  # same model and data on both ranks; each takes its own share
        moco = MoCo(PerSample(), dim=4, K=16, seed=0)
        seen = []
        moco.encoder_k.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].clone()))
        x_all = torch.randn(8, 3, 2, 2)
        x = x_all[rank * 4:(rank + 1) * 4]
        gathered = all_gather_cat(torch.full((2,), float(rank)))
        keys = moco.encode_keys(x)
        moco.enqueue(keys)
        queues = all_gather_cat(moco.queue.T.contiguous())
        with torch.no_grad():
            direct = F.normalize(moco.encoder_k(x_all), dim=1)
        torch.manual_seed(1)
        bank = MemoryBank(PerSample(), num_samples=12, dim=4, K=6, seed=0)  # every rank: the whole bank
        b_logits, pending = bank(x, None, torch.arange(8)[rank * 4:(rank + 1) * 4])
        bank.after_step(pending)
        torch.save({"gathered": gathered, "keys": keys, "direct": direct, "queues": queues, "encoded": seen[0],
                    "x_all": x_all, "memory": bank.memory, "b_logits": b_logits.detach()}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_gather_shuffle_and_queue_across_two_processes(tmp_path):
    torch.multiprocessing.spawn(_collectives, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["gathered"].tolist() == [0, 0, 1, 1]  # rank order
    for r in (r0, r1):
        assert torch.allclose(r["keys"], r["direct"], atol=1e-6)  # all keys, back in batch order after unshuffle
    q0, q1 = r0["queues"].chunk(2)
    assert torch.equal(q0, q1) and torch.equal(r0["queues"], r1["queues"])  # identical queues on both ranks
    x_all = r0["x_all"]
    rows = [next(j for j in range(8) if torch.equal(img, x_all[j])) for r in (r0, r1) for img in r["encoded"]]
    assert sorted(rows) == list(range(8)) and rows != list(range(8))  # a cross-process permutation of the batch
    # memory bank: negatives drawn once for the global batch, the whole batch's update on every rank
    torch.manual_seed(1)
    bank = MemoryBank(PerSample(), num_samples=12, dim=4, K=6, seed=0)
    b_logits, pending = bank(x_all, None, torch.arange(8))
    bank.after_step(pending)
    assert torch.equal(r0["memory"], r1["memory"]) and torch.allclose(r0["memory"], bank.memory, atol=1e-6)
    assert torch.allclose(torch.cat([r0["b_logits"], r1["b_logits"]]), b_logits.detach(), atol=1e-5)


def test_two_process_run_equals_the_one_process_emulation(tmp_path):
    data = write_image_folder(tmp_path / "data", classes=2, per_class=12, size=36)  # 3 batches: ends an epoch
    main_moco.main([*TINY, "--multiprocessing-distributed", "--world-size", "2", "--output-dir", str(tmp_path / "ddp"),
                    str(data)])
    main_moco.main([*TINY, "--bn-splits", "2", "--output-dir", str(tmp_path / "one"), str(data)])

    def losses(folder: Path) -> list[float]:
        return [float(r["loss"]) for r in csv.DictReader(open(folder / "metrics.csv"))]

    ddp, one = losses(tmp_path / "ddp"), losses(tmp_path / "one")
    assert len(ddp) == 3 and ddp == pytest.approx(one, rel=1e-4, abs=1e-5)
    ck_ddp = torch.load(tmp_path / "ddp" / "checkpoint_0000.pth.tar", map_location="cpu", weights_only=True)
    ck_one = torch.load(tmp_path / "one" / "checkpoint_0000.pth.tar", map_location="cpu", weights_only=True)
    assert ck_ddp["world_size"] == 2 and set(ck_ddp["state_dict"]) == set(ck_one["state_dict"])
    for key in ("module.queue", "module.encoder_q.conv1.weight", "module.encoder_k.layer4.1.conv2.weight"):
        assert torch.allclose(ck_ddp["state_dict"][key], ck_one["state_dict"][key], atol=1e-4), key
