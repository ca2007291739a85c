"""The distributed checks of ``make gpu-check`` on the CPU (gloo, 2 processes): DDP averages gradients,
naiveSyncBN normalises with the statistics of all processes. (MoCo's shuffling BN: test_pretrain_distributed.)"""

from __future__ import annotations

from benchmarks.dist_check import plan, run_checks


def test_ddp_and_naive_syncbn_over_two_cpu_processes() -> None:
    (names, world, backend), = plan("cpu")
    res = {r["check"]: r for r in run_checks(names, world, backend, "cpu", timeout=180)}
    assert set(res) == {"ddp", "naiveSyncBN"} and all(r["ok"] for r in res.values()), res
    assert res["ddp"]["detail"]["max_diff_between_ranks"] == 0.0
    assert res["ddp"]["detail"]["max_diff_to_one_process"] < 1e-5
    assert res["naiveSyncBN"]["module"] == "NaiveSyncBatchNorm" and res["naiveSyncBN"]["detail"]["max_output_diff"] < 1e-4


def test_nccl_runs_two_ranks_only_with_two_gpus() -> None:
    """NCCL refuses two ranks on one GPU (NCCL 2.28.9 on an H200: 'invalid usage'): with one GPU it runs at world 1."""
    one, two = plan("cuda", gpus=1), plan("cuda", gpus=2)
    assert [(w, b) for _, w, b in one] == [(1, "nccl"), (2, "gloo")]
    assert [(w, b) for _, w, b in two] == [(1, "nccl"), (2, "nccl"), (2, "gloo")]
    assert all("SyncBN" in names for names, _, _ in two)
