"""Small folders of synthetic images for smoke tests and the speed benchmark (no downloads).

Each class has its own mean colour and a few bright blobs, plus noise, so the classes are separable
(the kNN monitor and the linear protocol have something to find) yet every image differs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image_folder(root: str | Path, classes: int = 3, per_class: int = 16, size: int = 40, seed: int = 0,
                       flat: bool = False, subsampling: int = -1) -> Path:
    """Write ``root/class_<i>/img_<j>.jpg`` (or all images directly in ``root`` with ``flat``); return ``root``.

    ``subsampling``: PIL's JPEG chroma subsampling (-1 its default 4:2:0, 0 for 4:4:4, which every decoder reconstructs
    alike: nvJPEG's default upsamples 4:2:0 chroma by nearest neighbour, libjpeg by interpolation)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for c in range(classes):
        folder = root if flat else root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.array([(70 * c + 40) % 256, (130 * c + 90) % 256, (200 * c + 160) % 256], dtype=np.float32)
        for j in range(per_class):
            img = base + rng.normal(0, 40, (size, size, 3))
            for _ in range(2 + c):
                cy, cx, r = rng.integers(0, size, 2).tolist() + [size / 6]
                img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 255 - base
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"c{c}_img_{j:03d}.jpg", quality=90,
                                                                subsampling=subsampling)
    return root
