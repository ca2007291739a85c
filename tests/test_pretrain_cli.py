"""End-to-end runs of the pretraining scripts on tiny synthetic images (ResNet-18, 32 px crops, CPU)."""

from __future__ import annotations

import csv
import importlib.util
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pretrain import bench, main_lincls, main_moco, slurm, supervised
from pretrain.checkpoint import latest_checkpoint, list_checkpoints
from pretrain.synthetic import write_image_folder

REPO = Path(__file__).resolve().parents[1]
TINY = ["-a", "resnet18", "-b", "8", "--crop-size", "32", "--moco-k", "64", "--workers", "0", "-p", "100",
        "--no-tensorboard", "--seed", "3"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_image_folder(root / "train", classes=3, per_class=10, size=36)  # 30 images: 3 batches of 8 per epoch
    write_image_folder(root / "val", classes=3, per_class=4, size=36, seed=1)
    return root


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> Path:
    """A 2-epoch v2-style run with the kNN monitor; returns its output folder."""
    out = tmp_path_factory.mktemp("moco")
    last = main_moco.main([*TINY, "--mlp", "--aug-plus", "--cos", "--epochs", "2", "--knn-val", str(data),
                           "--output-dir", str(out), str(data)])
    assert last == out / "checkpoint_0001.pth.tar"
    return out


def losses(folder: Path) -> dict[int, float]:
    with open(folder / "metrics.csv") as f:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(f)}


def test_checkpoint_has_the_reference_layout_and_suite_marker(trained):
    ck = torch.load(trained / "checkpoint_0001.pth.tar", map_location="cpu", weights_only=True)
    assert ck["epoch"] == 2 and ck["iteration"] == 0 and ck["arch"] == "resnet18" and ck["global_step"] == 6
    sd = ck["state_dict"]
    assert all(k.startswith(("module.encoder_q.", "module.encoder_k.")) or k in ("module.queue", "module.queue_ptr")
               for k in sd)
    assert sd["module.encoder_q.fc.0.weight"].shape == (512, 512) and sd["module.encoder_k.fc.2.weight"].shape == (128, 512)
    assert sd["module.queue"].shape == (128, 64) and int(sd["module.queue_ptr"]) == 48 % 64
    assert {"state", "param_groups"} <= set(ck["optimizer"])
    assert ck["suite"]["name"] == "moco-transfer-bench" and ck["suite"]["format"] == 1
    assert ck["suite"]["moco_version"] == "v2" and ck["suite"]["args"]["moco_k"] == 64
    assert {"python", "numpy", "torch", "shuffle"} <= set(ck["rng"])
    rows = list(csv.DictReader(open(trained / "epochs.csv")))
    # epoch 0: the monitor before the first step (the encoder at random initialisation)
    assert [r["epoch"] for r in rows] == ["0", "1", "2"] and all(0 <= float(r["knn_top1"]) <= 100 for r in rows)
    assert rows[0]["loss"] == "" and "at random initialisation" in (trained / "log.txt").read_text()


def test_checkpoint_converts_for_detectron2(trained, tmp_path):
    if importlib.util.find_spec("transfer.convert") is None:
        pytest.skip("transfer/convert.py not present")
    from transfer.convert import convert

    info = convert(trained / "checkpoint_0001.pth.tar", tmp_path / "r18.pkl", verify=False, log=lambda *_: None)
    assert info["format"] == "moco-suite" and info["arch"] == "resnet18" and info["epoch"] == 2


def test_linear_protocol_and_supervised_counterpart(trained, data, tmp_path):
    res = main_lincls.main(["--pretrained", str(trained / "checkpoint_0001.pth.tar"), "-b", "8", "--crop-size", "32",
                            "--epochs", "1", "--workers", "0", "--output-dir", str(tmp_path / "lin"), str(data)])
    assert res["arch"] == "resnet18" and 0 <= res["top1"] <= 100 and (tmp_path / "lin" / "lincls_result.json").exists()
    sup = supervised.main(["-a", "resnet18", "-b", "8", "--crop-size", "32", "--epochs", "1", "--workers", "0",
                           "--output-dir", str(tmp_path / "sup"), str(data)])
    ck = torch.load(sup, map_location="cpu", weights_only=True)
    assert set(ck) == {"state_dict", "arch", "epoch"} and ck["arch"] == "resnet18" and ck["epoch"] == 1
    assert "conv1.weight" in ck["state_dict"] and ck["state_dict"]["fc.weight"].shape == (3, 512)
    res = main_lincls.main(["--pretrained", str(sup), "-b", "8", "--crop-size", "32", "--epochs", "1", "--workers", "0",
                            "--max-iters", "1", "--output-dir", str(tmp_path / "lin2"), str(data)])
    assert res["arch"] == "resnet18"
    with pytest.raises(SystemExit, match="holds a resnet18, not a resnet50"):
        main_lincls.main(["-a", "resnet50", "--pretrained", str(sup), "--output-dir", str(tmp_path / "x"), str(data)])
    assert not (tmp_path / "x").exists()  # nothing written for bad input


def test_resume_after_kill_continues_the_same_loss_curve(data, tmp_path):
    """A run killed by SIGKILL (with 2 loader workers), resumed (0 workers): identical losses to an uninterrupted run."""
    args = [*TINY, "--epochs", "6", "--keep-checkpoints", "2"]
    ref = tmp_path / "ref"
    main_moco.main([*args, "--max-iters", "12", "--output-dir", str(ref), str(data)])
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "pretrain/main_moco.py", *args, "--workers", "2", "--save-every-iters", "2",
                             "--output-dir", str(out), str(data)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        ckpts = list_checkpoints(out)
        if ckpts and torch.load(ckpts[-1], map_location="cpu", weights_only=True)["global_step"] >= 4:
            break
        time.sleep(0.05)
    proc.kill()
    _, err = proc.communicate()
    assert proc.returncode == -9, err  # it was killed, not finished
    killed_at = torch.load(latest_checkpoint(out), map_location="cpu", weights_only=True)
    assert 4 <= killed_at["global_step"] < 12
    main_moco.main([*args, "--max-iters", "12", "--resume", "auto", "--output-dir", str(out), str(data)])
    assert losses(out) == losses(ref) and len(losses(ref)) == 12  # bit-identical, steps 1..12
    assert torch.equal(torch.load(latest_checkpoint(out), weights_only=True)["state_dict"]["module.queue"],
                       torch.load(latest_checkpoint(ref), weights_only=True)["state_dict"]["module.queue"])


def test_resume_at_an_epoch_boundary_is_exact(data, tmp_path):
    args = [*TINY, "--epochs", "2"]
    main_moco.main([*args, "--output-dir", str(tmp_path / "ref"), str(data)])
    first = main_moco.main([*args, "--max-iters", "3", "--output-dir", str(tmp_path / "two"), str(data)])
    assert first.name == "checkpoint_0000.pth.tar"
    main_moco.main([*args, "--resume", str(first), "--output-dir", str(tmp_path / "two"), str(data)])
    assert losses(tmp_path / "two") == losses(tmp_path / "ref")


def test_resume_from_a_reference_layout_checkpoint(trained, data, tmp_path):
    """A checkpoint with only the reference main_moco.py keys (epoch, arch, state_dict, optimizer) resumes."""
    ck = torch.load(trained / "checkpoint_0000.pth.tar", map_location="cpu", weights_only=True)
    torch.save({k: ck[k] for k in ("epoch", "arch", "state_dict", "optimizer")}, tmp_path / "ref.pth.tar")
    last = main_moco.main([*TINY, "--mlp", "--epochs", "2", "--resume", str(tmp_path / "ref.pth.tar"),
                           "--output-dir", str(tmp_path / "out"), str(data)])
    assert last.name == "checkpoint_0001.pth.tar"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 6


def test_unreadable_images_are_skipped_and_counted(data, tmp_path):
    root = tmp_path / "mixed"
    write_image_folder(root, classes=2, per_class=5, size=36)
    for p in sorted(root.rglob("*.jpg"))[:2]:
        p.write_bytes(b"broken")
    main_moco.main([*TINY, "--epochs", "1", "--output-dir", str(tmp_path / "out"), str(root)])
    row = next(csv.DictReader(open(tmp_path / "out" / "epochs.csv")))
    assert int(row["skipped_images"]) >= 1
    assert "unreadable images skipped" in (tmp_path / "out" / "log.txt").read_text()


@pytest.mark.parametrize("case", ["empty", "corrupt", "other_arch", "not_moco", "unsafe", "too_few"])
def test_bad_input_fails_with_one_line(case, data, trained, tmp_path):
    target, extra = str(data), []
    if case == "empty":
        (tmp_path / "empty" / "a").mkdir(parents=True)
        target, match = str(tmp_path / "empty"), "no images found"
    elif case == "corrupt":
        (tmp_path / "bad" / "a").mkdir(parents=True)
        (tmp_path / "bad" / "a" / "x.jpg").write_bytes(b"oops")
        target, match = str(tmp_path / "bad"), "none of the 1 images"
    elif case == "other_arch":
        extra, match = ["--resume", str(trained / "checkpoint_0001.pth.tar")], "made with arch resnet18, not resnet34"
    elif case == "not_moco":
        torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}}, tmp_path / "sup.pth")
        extra, match = ["--resume", str(tmp_path / "sup.pth")], "not a MoCo checkpoint"
    elif case == "unsafe":
        torch.save({"state_dict": {}, "cfg": Path("/x")}, tmp_path / "u.pth")
        extra, match = ["--resume", str(tmp_path / "u.pth")], "cannot be loaded safely"
    else:
        extra, match = ["-b", "64"], "only 30 images"
    argv = [*TINY, "-a", "resnet34", *extra, "--output-dir", str(tmp_path / "o"), target] if case == "other_arch" else \
        [*TINY, *extra, "--output-dir", str(tmp_path / "o"), target]
    with pytest.raises(SystemExit) as e:
        main_moco.main(argv)
    msg = str(e.value.code)
    assert msg.startswith("main_moco.py: error:") and match in msg and "\n" not in msg


@pytest.mark.filterwarnings("ignore:'pretrain.main_moco' found in sys.modules:RuntimeWarning")
def test_script_entry_points(tmp_path):
    (tmp_path / "empty").mkdir()
    r = subprocess.run([sys.executable, "pretrain/main_moco.py", str(tmp_path / "empty")], cwd=REPO, capture_output=True,
                       text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0 and "no images found" in r.stderr
    sys_argv = sys.argv
    try:
        sys.argv = ["main_moco", "--help"]
        with pytest.raises(SystemExit) as e:
            runpy.run_module("pretrain.main_moco", run_name="__main__")
        assert e.value.code == 0
    finally:
        sys.argv = sys_argv


def test_presets_and_derived_defaults(data):
    a = main_moco.parse_args(["--preset", "v2", "x"])
    assert (a.mlp, a.aug_plus, a.cos, a.moco_t, a.moco_k, a.moco_m, a.moco_dim, a.epochs) == (True, True, True, 0.2, 65536, 0.999, 128, 200)
    assert main_moco.parse_args(["--preset", "v2-800ep", "--moco-t", "0.1", "x"]).epochs == 800
    assert main_moco.parse_args(["--preset", "v2", "--no-mlp", "--moco-t", "0.1", "x"]).moco_t == 0.1
    v1 = main_moco.parse_args(["--preset", "v1", "x"])
    assert (v1.mlp, v1.aug_plus, v1.cos, v1.moco_t, v1.schedule, v1.weight_decay, v1.momentum, v1.arch) == \
        (False, False, False, 0.07, [120, 160], 1e-4, 0.9, "resnet50")
    a = main_moco.parse_args(["-b", "16", str(data)])
    main_moco.prepare(a)
    assert a.lr == pytest.approx(0.03 * 16 / 256) and isinstance(a.seed, int) and a.train_dir.endswith("train")
    v1.lr = 0.03
    assert [main_moco.lr_at(e, v1) for e in (0, 119, 120, 160)] == pytest.approx([0.03, 0.03, 0.003, 0.0003])
    v2 = main_moco.parse_args(["--preset", "v2", "--lr", "0.06", "x"])
    assert [main_moco.lr_at(e, v2) for e in (0, 100, 200)] == pytest.approx([0.06, 0.03, 0.0])


def test_slurm_job_runs_through_submitit(data, tmp_path):
    job = slurm.submit(["--cluster", "debug", "--job-dir", str(tmp_path / "jobs"), "--", *TINY, "--epochs", "1",
                        "--max-iters", "1", "--output-dir", str(tmp_path / "out"), str(data)])
    assert Path(job.result()).name == "checkpoint_0000_iter000001.pth.tar"
    assert isinstance(slurm.MocoJob(["x"]).checkpoint(), slurm.submitit.helpers.DelayedSubmission)
    assert slurm.with_auto_resume(["d"]) == ["--resume", "auto", "d"]


def test_bench_reports_speed_ratio_and_overhead(capsys):
    r = bench.main(["--arch", "resnet18", "--batch-size", "4", "--crop-size", "32", "--moco-k", "64", "--iters", "1",
                    "--warmup", "1", "--no-memory"])
    assert set(r) == {"this", "plain", "encoder"} and all(v["images_per_s"] > 0 for v in r.values())
    out = capsys.readouterr().out
    assert "speed-up this/plain" in out and "MoCo overhead" in out


@pytest.mark.gpu
def test_gpu_run_with_speed_options(data, tmp_path):
    """GPU twin of the CPU runs above: bf16/fp16 autocast, channels_last, compile."""
    last = main_moco.main([*TINY, "--device", "cuda", "--epochs", "1", "--output-dir", str(tmp_path), str(data)])
    ck = torch.load(last, map_location="cpu", weights_only=True)
    assert ck["state_dict"]["module.queue"].dtype == torch.float32
    r = bench.main(["--arch", "resnet18", "--batch-size", "8", "--crop-size", "64", "--iters", "2", "--device", "cuda"])
    assert r["this"]["peak_mem_mb"] > 0
