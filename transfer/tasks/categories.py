"""Category lists the tasks share, read from Detectron2's own tables without importing ``detectron2.data``."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path



def _builtin_coco_categories() -> list[dict]:
    """Detectron2's ``COCO_CATEGORIES``, without importing ``detectron2.data`` when avoidable.

    ``builtin_meta.py`` has no imports of its own; loading it standalone skips the multi-second
    import of ``detectron2.data`` (torch, dataset registration) when running the CLI.
    """
    return _d2_data_module("builtin_meta").COCO_CATEGORIES

def _d2_data_module(stem: str):
    """``detectron2.data.datasets.<stem>`` (a module without imports of its own), loaded standalone unless
    ``detectron2.data`` is already imported."""
    name = f"detectron2.data.datasets.{stem}"
    if name in sys.modules or "detectron2.data" in sys.modules:
        return importlib.import_module(name)
    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"detectron2 is needed for {name}")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "datasets" / f"{stem}.py"
    mod_spec = importlib.util.spec_from_file_location(f"_d2_{stem}", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module

def coco_thing_categories() -> list[dict]:
    """The 80 COCO thing categories (real ids and names), read from Detectron2's builtin metadata."""
    return [{"id": c["id"], "name": c["name"]} for c in _builtin_coco_categories() if c["isthing"] == 1]

def person_category() -> dict:
    """COCO's person category with Detectron2's 17 keypoint names (COCO's keypoints json form)."""
    names = list(_d2_data_module("builtin_meta").COCO_PERSON_KEYPOINT_NAMES)
    return {"id": 1, "name": "person", "supercategory": "person", "keypoints": names, "skeleton": []}


def voc_class_names() -> tuple[str, ...]:
    """Detectron2's 20 VOC ``CLASS_NAMES``, read from its source unless it is already imported."""
    if "detectron2.data" in sys.modules:
        from detectron2.data.datasets.pascal_voc import CLASS_NAMES

        return tuple(CLASS_NAMES)
    import importlib.util

    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("detectron2 is needed for the VOC class names")
    src = Path(list(spec.submodule_search_locations)[0]) / "data" / "datasets" / "pascal_voc.py"
    for node in ast.parse(src.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "CLASS_NAMES" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise ImportError(f"CLASS_NAMES not found in {src}")
