"""One signal rule for every training process (``cluster/signals.py``, ``transfer/train_net.py``): the signal the
launcher asks SLURM for before a time limit stops a trial with a checkpoint like SIGTERM; the trial's handlers
are gone before the final evaluation; processes it forks start with the default dispositions, so a pool forked
in the final evaluation can be terminated (it used to deadlock)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_runs import FAST

from cluster import signals as cluster_signals

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "transfer" / "configs" / "tiny" / "voc_R_18_C4_tiny.yaml"


def test_the_launchers_requeue_signal_is_a_stop_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(cluster_signals.stop_signals()) == {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2}
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "HUP")  # submitit's knob for the signal in --signal=SIG@90
    assert signal.SIGHUP in cluster_signals.stop_signals()


class _FakeTrainer:
    def __init__(self, max_iter: int) -> None:
        self.iter, self.max_iter, self.saved = 0, max_iter, []
        self.model = object()
        self.checkpointer = self

    def save(self, name: str, iteration: int) -> None:
        self.saved.append((name, iteration))


def test_sigusr2_stops_training_with_a_checkpoint_of_the_current_iteration() -> None:
    from transfer.trainer import StopOnSignal, StopRequested

    hook, trainer = StopOnSignal(), _FakeTrainer(max_iter=10)
    hook.trainer = trainer
    before = signal.getsignal(signal.SIGUSR2)
    hook.before_train()
    try:
        assert signal.getsignal(signal.SIGUSR2) == hook._request  # else SLURM's USR2 would kill the trial
        trainer.iter = 3
        hook.after_step()
        os.kill(os.getpid(), signal.SIGUSR2)  # what SLURM sends 90 s before the time limit
        trainer.iter = 4
        with pytest.raises(StopRequested, match="after iteration 5"):
            hook.after_step()
        assert trainer.saved == [("model_0000004", 4)]
    finally:
        hook.after_train()
    assert signal.getsignal(signal.SIGUSR2) == before


def test_the_handlers_are_restored_after_the_last_iteration() -> None:
    from transfer.trainer import StopOnSignal

    hook, trainer = StopOnSignal(), _FakeTrainer(max_iter=2)
    hook.trainer = trainer
    before = {s: signal.getsignal(s) for s in cluster_signals.stop_signals()}
    hook.before_train()
    trainer.iter = 0
    hook.after_step()
    assert signal.getsignal(signal.SIGTERM) == hook._request
    trainer.iter = 1  # the last iteration: the final evaluation (an earlier hook's after_train) comes next
    hook.after_step()
    assert {s: signal.getsignal(s) for s in before} == before


DRIVER = r'''
import json, multiprocessing as mp, signal, sys, threading, time
from transfer import trainer as train_net

OUT = sys.argv[1]
seen = {}
BUSY = mp.get_context("fork").Event()


def busy():
    BUSY.set()
    time.sleep(3600)  # a worker in the middle of its task: only SIGTERM ends it


def dispositions():
    return {int(s): str(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)}


class ForkingEvaluator:
    """Wraps the real evaluator; its evaluate() forks a pool (as Detectron2's Cityscapes evaluator does),
    asks a worker for its signal dispositions and terminates the pool while a worker is busy."""

    def __init__(self, inner):
        self.inner = inner

    def reset(self):
        self.inner.reset()

    def process(self, inputs, outputs):
        self.inner.process(inputs, outputs)

    def evaluate(self):
        seen["trainer"] = dispositions()
        pool = mp.get_context("fork").Pool(2)
        seen["worker"] = pool.apply(dispositions)
        pool.apply_async(busy)
        BUSY.wait(30)
        done = threading.Event()

        def stop():
            pool.terminate()  # SIGTERM to the workers, then join
            done.set()

        threading.Thread(target=stop, daemon=True).start()
        seen["terminated"] = done.wait(30)
        json.dump(seen, open(OUT, "w"))
        if not seen["terminated"]:
            for p in pool._pool:
                p.kill()
            raise SystemExit("the pool did not terminate")
        return self.inner.evaluate()


class ForkWhileTraining(train_net.HookBase):
    """After the first iteration (the trial's stop handlers installed), a forked worker's dispositions."""

    def after_step(self):
        if self.trainer.iter == 0:
            seen["trainer_training"] = dispositions()
            with mp.get_context("fork").Pool(1) as pool:
                seen["worker_training"] = pool.apply(dispositions)


hooks = train_net.Trainer.build_hooks
train_net.Trainer.build_hooks = lambda self: [*hooks(self), ForkWhileTraining()]
build = train_net.Trainer.build_evaluator.__func__
train_net.Trainer.build_evaluator = classmethod(lambda cls, *a, **k: ForkingEvaluator(build(cls, *a, **k)))
sys.exit(train_net.cli(sys.argv[2:]))
'''


def test_a_pool_forked_in_the_final_evaluation_starts_with_default_signals_and_terminates(tiny_root: Path,
                                                                                           tmp_path: Path) -> None:
    driver, seen = tmp_path / "driver.py", tmp_path / "seen.json"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "DETECTRON2_DATASETS": str(tiny_root)}
    cmd = [sys.executable, str(driver), str(seen), "--config-file", str(TINY), "--num-gpus", "1", "--tiny",
           "SOLVER.MAX_ITER", "2", *FAST, "OUTPUT_DIR", str(tmp_path / "trial")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output = proc.communicate(timeout=300)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate()[0]
        pytest.fail("the trial hung in its final evaluation:\n" + output[-3000:])
    result = json.loads(seen.read_text())
    defaults = {str(int(s)): str(cluster_signals.default_disposition(s)) for s in cluster_signals.stop_signals()}
    assert result["trainer_training"] != defaults  # while training, the trial's handlers are installed ...
    assert result["worker_training"] == defaults, "a worker forked while training inherited the trial's handlers"
    assert result["trainer"] == defaults, "the trial's stop handlers were still installed in the final evaluation"
    assert result["worker"] == defaults, "a forked worker inherited the trial's handlers"
    assert result["terminated"], "Pool.terminate() hung: its workers swallowed SIGTERM"
    assert proc.returncode == 0, output[-3000:]
