"""Convert a pretraining checkpoint into a Detectron2 backbone file.

    python transfer/convert.py ckpt.pth [out.pkl] [--prefix P] [--no-verify] [--vit-heads N]

Input: any checkpoint layout of the registry ``transfer/layouts.py`` (MoCo v1/v2/v3, this suite's ``pretrain/``,
DINO, SlotCon, SoCo, PixPro, SimSiam, Barlow Twins, BYOL, solo-learn, mmpretrain, VISSL, lightly, Lightning,
Detectron2 names, torchvision, ``torch.compile``d models, Hugging Face transformers' ResNet) or any ResNet under
``--prefix [PATH:]PREFIX``, as a ``torch.save`` file
(``.pth``, ``.pth.tar``, ``.pt``, ``.ckpt``, ``.bin``, ``.torch``: read with ``weights_only=True``), a ``.safetensors``
file (``transfer/safetensors_io.py``, no pickle) or a ``.pkl`` of numpy arrays (read with the allow-list
unpickler of ``transfer/safe_pickle.py``: nothing in the file can run code); a file not named .pkl is read by its content;
ResNet-18/34/50/101/152 and wide R50 (torchvision ``wide_resnet50_2`` or fully widened w2/w4).
Output (default ``ckpt.pkl`` beside the input), in Detectron2's model-zoo pickle format::

    {"model": {d2_name: numpy array}, "__author__": ..., "matching_heuristics": True,
     "provenance": {source, sha256, format, method, arch, epoch, prefix, dropped, verification,
                    pretrain_precision, pretrain_data_backend}}

A Vision Transformer (MoCo v3, DINO, MAE, DeiT/timm: the layouts with ``arch="vit"``) goes to Detectron2's ViT as
ViTDet uses it: ``backbone.net.<name>`` keys, ``matching_heuristics`` False, ``provenance.arch`` the dict
``{"type": "vit", embed_dim, depth, num_heads, patch_size, pretrain_img_size, pretrain_use_cls_token, ...}``
(``transfer/vit_convert.py``; verified by ``transfer/verify_vit.py``).

The file is written atomically and only after verification passes (when Detectron2 is importable):
nothing is left behind on failure. Errors are one line on stderr, exit status 2.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python transfer/convert.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.cli import ArgumentParser  # noqa: E402
from transfer import safe_pickle, sidecars  # noqa: E402
from transfer.checkpoint_formats import find_encoder  # noqa: E402
from transfer.checkpoint_io import ConvertError, load_untrusted, sha256_of, write_atomic  # noqa: E402
from transfer.methods import SUITE_AUTHOR, method_of_path  # noqa: E402
from transfer.resnet_spec import backbone_tensors, detectron2_name, infer_spec  # noqa: E402
from transfer.plain import plain  # noqa: E402
from transfer.verify import detectron2_available, verify_pkl  # noqa: E402
from transfer.weight_checks import WeightValuesError, check_tensors  # noqa: E402
from transfer.weights import local_weights  # noqa: E402

AUTHOR = SUITE_AUTHOR


def default_output(src: Path) -> Path:
    """``ckpt.pth`` / ``ckpt.pth.tar`` -> ``ckpt.pkl`` beside it."""
    name = src.name
    for ext in (".pth.tar", ".pth", ".pt", ".tar", ".ckpt", ".bin", ".torch", ".safetensors"):
        if name.endswith(ext):
            return src.with_name(name[: -len(ext)] + ".pkl")
    return src.with_name(name + ".pkl")


def load_source(src: Path) -> Any:
    """A checkpoint, loaded without running code: ``.pth`` with ``weights_only=True``, ``.pkl`` through the
    allow-list unpickler (numpy arrays become tensors)."""
    if src.suffix != ".pkl":
        return load_untrusted(src)
    try:
        obj = safe_pickle.load(src)
    except safe_pickle.UnsafePickleError as e:
        raise ConvertError(str(e)) from None
    if isinstance(obj, dict) and "model" in obj and "__author__" in obj:
        author = obj["__author__"]
        author = repr(author[:80]) if isinstance(author, str) else type(author).__name__
        raise ConvertError(f"{src}: already a Detectron2 weights file (__author__ {author}); "
                           "pass it to the runners as --weights as it is")

    def tensors(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: tensors(v) for k, v in x.items()}
        return torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x

    return tensors(obj)


def pretrain_facts(obj: Any) -> dict[str, Any]:
    """What a suite checkpoint records about its pretraining run, for the provenance: the arithmetic
    (``pretrain_precision``: mode, autocast, TF32; None for checkpoints that do not say) and the data backend."""
    suite = obj.get("suite") if isinstance(obj, dict) else None
    suite = suite if isinstance(suite, dict) else {}
    precision = suite.get("precision")
    backend = suite.get("data_backend")
    return {"pretrain_precision": plain(precision, max_depth=2, max_nodes=64) if isinstance(precision, dict) else None,
            "pretrain_data_backend": backend[:100] if isinstance(backend, str) else None}


def _write_verified(out: Path, model: dict[str, Any], provenance: dict[str, Any], matching: bool,
                    verify_fn: Any, log=print) -> None:
    """Write the Detectron2 pickle atomically; ``verify_fn(tmp)`` (or None: skipped) fills ``verification``."""
    def write(tmp: Path) -> None:
        data = {"model": model, "__author__": AUTHOR, "matching_heuristics": matching, "provenance": provenance}
        with open(tmp, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        provenance["verification"] = verify_fn(tmp) if verify_fn is not None else None
        if verify_fn is None:
            log("[convert] verification skipped")
            return
        with open(tmp, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)

    write_atomic(out, write, suffix=".pkl")
    provenance["output"] = str(out)
    log(f"[convert] wrote {out}")


def _convert_vit(src: Path, out: Path, obj: Any, enc: Any, method: Any, do_verify: bool, heads: int | None,
                 log=print) -> dict[str, Any]:
    """The ViT branch of :func:`convert` (``transfer/vit_convert.py``)."""
    from transfer import vit_convert

    told, config_notes = (sidecars.transformers_vit(src, vit_convert.NORM_EPS) if enc.format == "transformers-vit"
                          else (sidecars.solo_learn_heads(src), []) if enc.format == "solo-learn-vit" else (None, []))
    kept, dropped = vit_convert.split(enc.tensors, str(src))
    spec = vit_convert.infer_spec(kept, str(src), table=enc.heads, name=vit_convert.arch_name(obj), heads=heads,
                                  recorded=vit_convert.recorded_heads(obj), told=told)
    try:
        kept, notes = check_tensors(kept, str(src))
    except WeightValuesError as e:
        raise ConvertError(str(e)) from None
    for line in [*enc.notes, *config_notes, *notes]:
        log(f"[convert] note: {line}")
    model = {vit_convert.PREFIX + k: v.detach().to("cpu").float().numpy() for k, v in kept.items()}
    provenance: dict[str, Any] = {
        "source": str(src.resolve()), "sha256": sha256_of(src), "format": enc.format, "method": method.name,
        "prefix": enc.prefix, "layout": enc.layout, "arch": spec.as_dict(),
        "arch_hint": vit_convert.arch_name(obj), "epoch": enc.epoch, "dropped": sorted(dropped),
        "load_report": {"encoder_tensors": len(enc.tensors), "mapped": len(kept), "dropped": dropped,
                        "taken": enc.layout},
        "input_format": "RGB", "pixel_mean": [123.675, 116.280, 103.530], "pixel_std": [58.395, 57.120, 57.375],
        **pretrain_facts(obj),
    }
    reasons = sorted(set(dropped.values()))
    log(f"[convert] {src.name}: {enc.layout}; method {method.name}, {spec.name} (heads from {spec.heads_source}), "
        f"epoch {enc.epoch}; {len(kept)}/{len(enc.tensors)} encoder tensors mapped to backbone.net.*, "
        f"{len(dropped)} dropped" + (f" ({'; '.join(reasons)})" if reasons else ""))

    def check(tmp: Path) -> dict:
        from transfer.verify_vit import verify_vit_pkl

        cls = {"cls_token": enc.tensors["cls_token"]} if "cls_token" in enc.tensors else {}
        result = verify_vit_pkl(tmp, spec, {**kept, **cls})
        log(f"[convert] verified in Detectron2's ViT: patch features match the source (max rel. error "
            f"{result['max_relative_error']['last_block_patch_tokens']:.1e})")
        return result

    _write_verified(out, model, provenance, False, check if do_verify else None, log)
    return provenance


def convert(src: str | Path, out: str | Path | None = None, *, prefix: str | None = None,
            verify: bool | None = None, log=print, vit_heads: int | None = None) -> dict[str, Any]:
    """Convert ``src`` and write ``out``; return the provenance dict. Raises :class:`ConvertError`."""
    try:
        src = Path(local_weights(str(src)))  # file:///abs/ckpt.pth -> /abs/ckpt.pth
    except ValueError as e:
        raise ConvertError(str(e)) from None
    out = Path(out) if out is not None else default_output(src)
    if out.suffix != ".pkl":
        raise ConvertError(f"{out}: output must end in .pkl (Detectron2 reads model-zoo pickles by extension)")
    obj = load_source(src)
    enc = find_encoder(obj, str(src), prefix)
    if enc.format == "transformers":
        sidecars.transformers_resnet_check(src)
    method = method_of_path(obj, src)  # from the source's layout, before its heads are dropped (transfer/methods.py)
    if enc.arch == "vit":
        do_verify = detectron2_available() if verify is None else verify
        if do_verify and not detectron2_available():
            raise ConvertError("verification needs Detectron2, which is not importable; run `make setup` or pass "
                               "--no-verify")
        return _convert_vit(src, out, obj, enc, method, do_verify, vit_heads, log)
    tensors, dropped = backbone_tensors(enc.tensors)
    spec = infer_spec(tensors, str(src))
    try:  # the backbone's values (the head is dropped): finite, floating point, not all zero
        tensors, notes = check_tensors(tensors, str(src))
    except WeightValuesError as e:
        raise ConvertError(str(e)) from None
    for line in [*enc.notes, *notes]:
        log(f"[convert] note: {line}")
    model = {detectron2_name(k): v.detach().to("cpu").float().numpy() if v.is_floating_point() else v.numpy()
             for k, v in tensors.items()}
    provenance: dict[str, Any] = {
        "source": str(src.resolve()),
        "sha256": sha256_of(src),
        "format": enc.format,
        "method": method.name,
        "prefix": enc.prefix,
        "layout": enc.layout,
        "arch": spec.name,
        "arch_hint": enc.arch_hint[:80] if enc.arch_hint else enc.arch_hint,
        "resnet": spec.as_dict(),
        "epoch": enc.epoch,
        "dropped": dropped,
        "input_format": "RGB",
        "pixel_mean": [123.675, 116.280, 103.530],
        "pixel_std": [58.395, 57.120, 57.375],
        "stride_in_1x1": False,
        **pretrain_facts(obj),
    }
    log(f"[convert] {src.name}: {enc.layout}; method {method.name}, arch {spec.name}, "
        f"epoch {enc.epoch}, {len(model)} tensors kept, {len(dropped)} dropped (head/counters)")
    if enc.arch_hint and enc.arch_hint != spec.name:
        log(f"[convert] note: checkpoint says arch {enc.arch_hint!r}, tensor shapes say {spec.name!r}")
    do_verify = detectron2_available() if verify is None else verify
    if do_verify and not detectron2_available():
        raise ConvertError("verification needs Detectron2, which is not importable; run `make setup` or pass --no-verify")

    def write(tmp: Path) -> None:
        data = {"model": model, "__author__": AUTHOR, "matching_heuristics": True, "provenance": provenance}
        with open(tmp, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        if do_verify:
            provenance["verification"] = verify_pkl(tmp, spec, tensors)
            errs = provenance["verification"]["max_relative_error"]
            log(f"[convert] verified in Detectron2: res2..res5 match the source (max rel. error {max(errs.values()):.1e})")
            data["provenance"] = provenance
            with open(tmp, "wb") as f:
                pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            provenance["verification"] = None
            log("[convert] verification skipped")

    write_atomic(out, write, suffix=".pkl")
    provenance["output"] = str(out)
    log(f"[convert] wrote {out}")
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="pretraining checkpoint (.pth, .pth.tar, .pt, .ckpt, .bin, .torch, "
                                           ".safetensors)")
    parser.add_argument("output", nargs="?", help="output .pkl (default: beside the input)")
    parser.add_argument("--prefix", help="[PATH:]PREFIX of the encoder (overrides layout detection), e.g. 'module.encoder_k.' or 'teacher:module.backbone.'")
    parser.add_argument("--no-verify", dest="verify", action="store_false", default=None,
                        help="skip the Detectron2 load + feature-equivalence check")
    parser.add_argument("--vit-heads", type=int, help="attention heads of a Vision Transformer whose checkpoint "
                                                          "does not name its arch and whose size is not in the tables")
    parser.add_argument("--debug", action="store_true", help="show a traceback for unexpected errors")
    args = parser.parse_args(argv)
    try:
        convert(args.checkpoint, args.output, prefix=args.prefix, verify=args.verify, vit_heads=args.vit_heads)
    except ConvertError as e:
        print(f"convert.py: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug or an exotic input: still one line unless asked
        if args.debug:
            raise
        print(f"convert.py: error: unexpected {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
              "(rerun with --debug for a traceback)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
