"""Print what this installation can run: ``python -m transfer.doctor`` (or ``make doctor``).

Versions and sources of Python / torch / torchvision / Detectron2, whether Detectron2's compiled ops
are present, GPUs and NCCL, the dataset roots found under ``$DETECTRON2_DATASETS``, and what is
missing for each benchmark. Quick existence checks only; ``python -m benchmarks.dataset_check``
validates a layout in depth.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
from pathlib import Path

LIBRARIES = ("fvcore", "iopath", "pycocotools", "cityscapesscripts", "lvis", "densepose", "shapely", "pandas",
             "matplotlib", "submitit", "tqdm", "tensorboard")


def _version(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # report, never crash the doctor
        return f"MISSING ({type(e).__name__})"
    if module == "cityscapesscripts":
        from importlib.metadata import version

        return version("cityscapesScripts")
    return getattr(mod, "__version__", "installed")


def detectron2_report() -> list[str]:
    try:
        import detectron2
    except Exception as e:
        return [f"detectron2: MISSING ({type(e).__name__}: {e}); run `make setup`"]
    source_file = Path(sys.prefix) / "detectron2-source.txt"
    source = source_file.read_text().strip() if source_file.exists() else f"unknown ({Path(detectron2.__file__).parent})"
    try:
        from detectron2 import _C  # noqa: F401

        ops = "present (rotated boxes, deformable conv, fast COCO eval available)"
    except Exception:
        ops = "absent: standard Faster/Mask R-CNN work (torchvision ops); no rotated boxes, deformable conv, fast COCO eval"
    return [f"detectron2: {detectron2.__version__} from {source}", f"detectron2 compiled ops: {ops}"]


def gpu_report() -> list[str]:
    import torch

    lines = []
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        lines.append(f"GPUs: {len(names)} ({', '.join(names)}); CUDA {torch.version.cuda}")
    else:
        lines.append(f"GPUs: none (CPU only; torch built with CUDA {torch.version.cuda})")
    dist = torch.distributed.is_available()
    nccl = dist and torch.distributed.is_nccl_available()
    nccl_version = ""
    if nccl and torch.cuda.is_available():
        v = torch.cuda.nccl.version()
        nccl_version = " " + (".".join(map(str, v)) if isinstance(v, tuple) else str(v))
    lines.append(f"distributed: gloo {'yes' if dist and torch.distributed.is_gloo_available() else 'no'}, "
                 f"NCCL {'yes' + nccl_version if nccl else 'no'}")
    return lines


def dataset_report(root: Path) -> list[str]:
    lines = [f"datasets root: {root} (from {'$DETECTRON2_DATASETS' if os.environ.get('DETECTRON2_DATASETS') else 'default ./datasets'})"
             + ("" if root.is_dir() else " -- does not exist")]
    from transfer import tasks

    for name, b in tasks.benchmarks().items():
        if not b.needs:
            continue
        bench, needs = f"{name} (run_{name}.sh)", b.needs
        missing = [n for n in needs if not (root / n).exists()]
        if not missing:
            lines.append(f"  {bench}: ready")
        else:
            more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
            lines.append(f"  {bench}: missing {', '.join(missing[:3])}{more} -> runs the embedded tiny default")
    return lines


def report() -> list[str]:
    import torch
    import torchvision

    lines = [f"python: {platform.python_version()} ({sys.executable})",
             f"torch: {torch.__version__}", f"torchvision: {torchvision.__version__}"]
    lines += detectron2_report()
    lines += gpu_report()
    lines += [f"{lib}: {_version(lib)}" for lib in LIBRARIES]
    lines += dataset_report(Path(os.environ.get("DETECTRON2_DATASETS", "datasets")).expanduser())
    return lines


def main() -> int:
    import transfer  # noqa: F401  (quiets Detectron2's import-time warnings)

    for line in report():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
