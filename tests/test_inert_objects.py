"""Harmless objects that training checkpoints pickle beside the weights are read as inert data (issue 28, 3).

Each file is written here the way its library writes it (``torch.save`` / ``pickle.dump`` of the real object,
or of a class spelled exactly like the library's), then read through the suite's loaders: the weights come back
unchanged, the objects come back as :class:`transfer.inert.Inert` stand-ins, and none of their code runs.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from transfer import inert, safe_pickle
from transfer.checkpoint_io import ConvertError, load_untrusted


def _weights() -> collections.OrderedDict:
    g = torch.Generator().manual_seed(0)
    return collections.OrderedDict([("conv1.weight", torch.randn(8, 3, 3, 3, generator=g)),
                                    ("bn1.running_var", torch.rand(8, generator=g) + 0.5),
                                    ("fc.weight", torch.randn(4, 8, generator=g))])


def _same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


class HistoryBuffer:
    """mmengine.logging.history_buffer.HistoryBuffer as its source defines its instance attributes."""

    def __init__(self, log_history=(), count_history=(), max_length: int = 1000000) -> None:
        self.max_length = max_length
        self._log_history = np.array(log_history)
        self._count_history = np.array(count_history)


HistoryBuffer.__module__ = "mmengine.logging.history_buffer"


def _save_as(module: str, cls: type, obj, path) -> None:
    """torch.save ``obj`` while ``module`` (holding ``cls``) exists, as it does in the library's process."""
    parts = module.split(".")
    names = [n for n in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if n not in sys.modules]
    for name in names:
        sys.modules[name] = types.ModuleType(name)
    setattr(sys.modules[module], cls.__qualname__, cls)
    try:
        torch.save(obj, path)
    finally:
        for name in names:
            del sys.modules[name]


def test_dino_checkpoint_with_args(tmp_path):
    sd = _weights()
    args = argparse.Namespace(arch="resnet50", patch_size=16, out_dim=65536, lr=0.0005, use_fp16=True,
                              local_crops_scale=(0.05, 0.4), output_dir="/ckpt")
    path = tmp_path / "checkpoint.pth"
    torch.save({"student": sd, "teacher": sd, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
                "epoch": 100, "args": args, "dino_loss": {"center": torch.zeros(1, 8)}}, path)

    ckpt = load_untrusted(path)

    _same(ckpt["teacher"], sd)
    _same(ckpt["student"], sd)
    assert ckpt["epoch"] == 100
    got = ckpt["args"]
    assert isinstance(got, inert.Inert) and not isinstance(got, argparse.Namespace)
    assert got.pickled_as == "argparse.Namespace"
    assert got.as_dict() == vars(args)


def test_mmengine_checkpoint_with_message_hub(tmp_path):
    sd = _weights()
    buf = HistoryBuffer([1.5, 1.25, 1.0], [1, 1, 1])
    hub = {"log_scalars": collections.OrderedDict([("train/loss", buf)]),
           "runtime_info": collections.OrderedDict([("epoch", np.int64(3)), ("iter", np.int64(120)),
                                                    ("lr", np.float32(0.25)), ("dataset_meta", {"a": 1})]),
           "resumed_keys": {"train/loss": True, "epoch": True, "iter": True}}
    path = tmp_path / "epoch_3.pth"
    _save_as("mmengine.logging.history_buffer", HistoryBuffer,
             {"meta": {"epoch": 3, "iter": 120, "mmengine_version": "0.10.3", "seed": 0},
              "state_dict": sd, "message_hub": hub, "optimizer": {"state": {}, "param_groups": []}}, path)

    ckpt = load_untrusted(path)

    _same(ckpt["state_dict"], sd)
    info = ckpt["message_hub"]["runtime_info"]
    assert info["epoch"] == 3 and type(info["epoch"]) is int
    assert info["iter"] == 120 and info["lr"] == 0.25 and info["dataset_meta"] == {"a": 1}
    got = ckpt["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(got, inert.Inert) and got.pickled_as == "mmengine.logging.history_buffer.HistoryBuffer"
    state = got.as_dict()
    assert state["max_length"] == 1000000
    assert isinstance(state["_log_history"], np.ndarray)
    np.testing.assert_array_equal(state["_log_history"], [1.5, 1.25, 1.0])
    np.testing.assert_array_equal(state["_count_history"], [1, 1, 1])


@pytest.mark.parametrize("form", ["dict of configs", "the config itself"])
def test_lightning_hydra_checkpoint(tmp_path, form):
    from omegaconf import DictConfig, OmegaConf

    sd = _weights()
    cfg = OmegaConf.create({"model": {"arch": "resnet50", "lr": 0.1}, "tags": ["a", 1], "seed": None})
    ckpt_in = {"epoch": 4, "global_step": 400, "pytorch-lightning_version": "2.1.3",
               "state_dict": sd, "loops": {}, "callbacks": {}, "optimizer_states": [], "lr_schedulers": []}
    if form == "dict of configs":   # save_hyperparameters() in __init__(self, cfg)
        ckpt_in["hyper_parameters"] = {"cfg": cfg}
    else:                           # save_hyperparameters(cfg): Lightning also stores the type
        ckpt_in.update(hyper_parameters=cfg, hparams_type=DictConfig)
    path = tmp_path / "last.ckpt"
    torch.save(ckpt_in, path)

    ckpt = load_untrusted(path)

    _same(ckpt["state_dict"], sd)
    assert ckpt["pytorch-lightning_version"] == "2.1.3"
    got = ckpt["hyper_parameters"]["cfg"] if form == "dict of configs" else ckpt["hyper_parameters"]
    assert isinstance(got, inert.Inert) and not isinstance(got, DictConfig)
    assert got.pickled_as == "omegaconf.dictconfig.DictConfig"
    state = got.as_dict()
    assert "_parent" not in state      # the back-reference to the parent node is dropped, not followed
    model = state["_content"]["model"].as_dict()["_content"]
    assert model["arch"].as_dict()["_val"] == "resnet50"
    assert model["lr"].as_dict()["_val"] == 0.1


def test_pkl_with_namespace(tmp_path):
    arrays = {"conv1.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
    for protocol in (2, 4):
        path = tmp_path / f"w{protocol}.pkl"
        with open(path, "wb") as f:
            pickle.dump({"model": arrays, "args": argparse.Namespace(arch="resnet50", epochs=200),
                         "__author__": "MOCO"}, f, protocol=protocol)

        data = safe_pickle.load(path)

        np.testing.assert_array_equal(data["model"]["conv1.weight"], arrays["conv1.weight"])
        got = data["args"]
        assert isinstance(got, inert.Inert) and not isinstance(got, argparse.Namespace)
        assert got.as_dict() == {"arch": "resnet50", "epochs": 200}


# ----------------------------------------------------------------------------- what stays refused

class _RunsCode:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _both_loaders(path):
    """Load with the loader the suite uses for the file's suffix; return the one-line error."""
    if str(path).endswith(".pkl"):
        with pytest.raises(safe_pickle.UnsafePickleError) as e:
            safe_pickle.load(path)
    else:
        with pytest.raises(ConvertError) as e:
            load_untrusted(path)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_code_hidden_in_a_namespace_is_refused_and_not_run(tmp_path, suffix):
    marker = tmp_path / "ran"
    path = tmp_path / f"evil{suffix}"
    obj = {"state_dict": {}, "args": argparse.Namespace(arch="resnet50", hook=_RunsCode(marker))}
    if suffix == ".pth":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))

    msg = _both_loaders(path)

    assert not marker.exists()
    assert "system" in msg and "refused" in msg


def test_a_lookalike_class_from_another_module_is_refused(tmp_path):
    class Namespace(argparse.Namespace):
        pass

    Namespace.__module__, Namespace.__qualname__ = "argparse_extras", "Namespace"
    path = tmp_path / "lookalike.pth"
    _save_as("argparse_extras", Namespace, {"args": Namespace(arch="x")}, path)
    assert "argparse_extras.Namespace" in _both_loaders(path)

    HistoryBuffer.__module__ = "mmengine.logging"  # the right name in the wrong module
    try:
        path2 = tmp_path / "lookalike2.pth"
        _save_as("mmengine.logging", HistoryBuffer, {"b": HistoryBuffer([1.0], [1])}, path2)
    finally:
        HistoryBuffer.__module__ = "mmengine.logging.history_buffer"
    assert "mmengine.logging.HistoryBuffer" in _both_loaders(path2)


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
@pytest.mark.parametrize("bad", ["partial", "eval"])
def test_other_globals_are_refused_with_the_new_advice(tmp_path, suffix, bad):
    obj = functools.partial(int, "7") if bad == "partial" else _Eval()
    path = tmp_path / f"x{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": {}, "extra": obj}, path)
    else:
        path.write_bytes(pickle.dumps({"state_dict": {}, "extra": obj}, protocol=2))

    msg = _both_loaders(path)

    assert ("functools.partial" if bad == "partial" else "eval") in msg
    assert "could run arbitrary code" in msg and "re-save" not in msg and "export" in msg


class _Eval:
    def __reduce__(self):
        return (eval, ("1+1",))


def test_a_namespace_that_holds_itself_is_still_a_cycle(tmp_path):
    ns = argparse.Namespace(arch="resnet50")
    ns.me = ns
    path = tmp_path / "cycle.pth"
    torch.save({"args": ns}, path)
    assert "holds itself" in _both_loaders(path)


def test_a_list_that_holds_itself_beside_a_dictconfig_is_still_a_cycle(tmp_path):
    from omegaconf import OmegaConf

    loop: list = []
    loop.append(loop)
    path = tmp_path / "cycle2.pth"
    torch.save({"hyper_parameters": OmegaConf.create({"a": 1}), "loop": loop}, path)
    assert "holds itself" in _both_loaders(path)


class _CraftedDtype:
    """Pickles as numpy.dtype('i8') followed by a BUILD state that makes it structured (an attack shape)."""

    def __reduce__(self):
        return (np.dtype, ("i8", False, True), (3, "|", None, ("f",), {"f": ("i8", 0)}, 8, 1, 0))


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_a_crafted_numpy_dtype_state_is_refused(tmp_path, suffix):
    path = tmp_path / f"d{suffix}"
    obj = {"message_hub": {"runtime_info": {"epoch": _CraftedDtype()}}}
    if suffix == ".pth":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    assert "structured" in _both_loaders(path)


def test_stand_in_state_is_stored_once_and_never_run():
    cls = inert.STAND_INS["argparse.Namespace"]
    ns = cls()
    ns.__setstate__({"arch": "resnet50"})
    with pytest.raises(inert.Refused, match="twice"):
        ns.__setstate__({"arch": "vit"})
    with pytest.raises(inert.Refused):
        cls("an argument")
    with pytest.raises(inert.Refused):
        cls().__setstate__(["not", "a", "dict"])
    assert ns.as_dict() == {"arch": "resnet50"}
    assert "argparse.Namespace" in repr(ns)


def test_the_torch_allow_list_is_only_used_inside_the_suite_loader(tmp_path):
    path = tmp_path / "a.pth"
    torch.save({"args": argparse.Namespace(arch="r50")}, path)
    load_untrusted(path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
