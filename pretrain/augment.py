"""Image augmentations of MoCo v1, v2 (``--aug-plus``) and v3 (:func:`v3_transform`), and the evaluation transforms.

v1 (He et al. 2020, Sec. 3.3 and reference code): RandomResizedCrop(scale 0.2-1), RandomGrayscale(p 0.2),
ColorJitter(0.4, 0.4, 0.4, 0.4), horizontal flip.
v2 (Chen et al. 2020): RandomResizedCrop(scale 0.2-1), ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8,
RandomGrayscale(p 0.2), Gaussian blur sigma ~ U[0.1, 2] with p 0.5, horizontal flip.

Every random draw goes through torch's CPU generator, so seeding that generator per sample
(``data.py`` does) makes the two crops of an image a pure function of (seed, epoch, index).
v3 (Chen et al. 2021, App. A; moco-v3 main_moco.py, BYOL's recipe): two *different* views, both
RandomResizedCrop(scale ``crop_min``-1), ColorJitter(0.4, 0.4, 0.2, 0.1) with p 0.8, RandomGrayscale(p 0.2),
then Gaussian blur sigma ~ U[0.1, 2] with p 1.0 (view 1) / 0.1 (view 2), solarization (threshold 128) with
p 0 / 0.2, horizontal flip. PIL data backend only.
At crop sizes other than 224 the blur's sigma range is scaled by ``crop_size / 224`` so that it
blurs the same fraction of the image as in the paper (identical to the paper at 224).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image, ImageFilter
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAPER_CROP = 224


@dataclass(frozen=True)
class Recipe:
    """The augmentation of one MoCo view, as data: the one place that states v1's and v2's values.

    Both data backends read it: ``moco_transform`` (PIL, in loader workers) and
    ``pretrain.tensor_augment`` (batched tensor ops on the training device).
    """

    crop_size: int
    jitter: tuple[float, float, float, float]  # ColorJitter(brightness, contrast, saturation, hue)
    jitter_p: float                            # 1.0: always applied, no coin flip (v1)
    blur_sigma: tuple[float, float] | None     # Gaussian blur sigma range; None: no blur (v1)
    blur_p: float
    gray_first: bool                           # v1: grayscale before the colour jitter; v2: after
    scale: tuple[float, float] = (0.2, 1.0)    # RandomResizedCrop area fraction
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # RandomResizedCrop aspect ratio (torchvision default)
    gray_p: float = 0.2
    flip_p: float = 0.5

    @property
    def version(self) -> str:
        return "v1" if self.gray_first else "v2"


def moco_recipe(crop_size: int = PAPER_CROP, aug_plus: bool = False) -> Recipe:
    """MoCo v1's augmentation, or v2's with ``aug_plus`` (blur sigma scaled by ``crop_size / 224``)."""
    if aug_plus:
        s = crop_size / PAPER_CROP
        return Recipe(crop_size, (0.4, 0.4, 0.4, 0.1), 0.8, (0.1 * s, 2.0 * s), 0.5, gray_first=False)
    return Recipe(crop_size, (0.4, 0.4, 0.4, 0.4), 1.0, None, 0.0, gray_first=True)


class GaussianBlur:
    """PIL Gaussian blur with sigma drawn uniformly from ``sigma`` (torch RNG)."""

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0)) -> None:
        self.sigma = sigma

    def __call__(self, img: Image.Image) -> Image.Image:
        s = float(torch.empty(()).uniform_(self.sigma[0], self.sigma[1]))
        return img.filter(ImageFilter.GaussianBlur(radius=s))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma})"


class TwoViews:
    """Two different random transforms: the first view by ``first``, the second by ``second`` (MoCo v3)."""

    def __init__(self, first: Callable[[Image.Image], torch.Tensor], second: Callable[[Image.Image], torch.Tensor]) -> None:
        self.first, self.second = first, second

    def __call__(self, img: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        return self.first(img), self.second(img)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.first!r}, {self.second!r})"


class TwoCrops:
    """Apply the same random transform twice: a query view and a key view of one image."""

    def __init__(self, base: Callable[[Image.Image], torch.Tensor]) -> None:
        self.base = base

    def __call__(self, img: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        return self.base(img), self.base(img)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base!r})"


def normalize() -> T.Normalize:
    return T.Normalize(IMAGENET_MEAN, IMAGENET_STD)


def moco_transform(crop_size: int = PAPER_CROP, aug_plus: bool = False) -> TwoCrops:
    """The pretraining transform: two independently augmented crops (v1, or v2 with ``aug_plus``)."""
    return pil_transform(moco_recipe(crop_size, aug_plus))


def pil_transform(r: Recipe) -> TwoCrops:
    """Two views of a PIL image augmented by ``r`` with torchvision's transforms (the reference's way)."""
    crop = T.RandomResizedCrop(r.crop_size, scale=r.scale, ratio=r.ratio)
    jitter = T.ColorJitter(*r.jitter)
    gray = T.RandomGrayscale(p=r.gray_p)
    if r.gray_first:  # v1
        ops = [crop, gray, jitter]
    else:
        ops = [crop, T.RandomApply([jitter], p=r.jitter_p), gray]
        if r.blur_sigma is not None:
            ops.append(T.RandomApply([GaussianBlur(r.blur_sigma)], p=r.blur_p))
    return TwoCrops(T.Compose([*ops, T.RandomHorizontalFlip(r.flip_p), T.ToTensor(), normalize()]))


def v3_transform(crop_size: int = PAPER_CROP, crop_min: float = 0.08) -> TwoViews:
    """MoCo v3's asymmetric pair of views (module docstring); blur sigma scaled by ``crop_size / 224``."""
    s = crop_size / PAPER_CROP

    def view(blur_p: float, solarize_p: float) -> T.Compose:
        return T.Compose([
            T.RandomResizedCrop(crop_size, scale=(crop_min, 1.0)),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([GaussianBlur((0.1 * s, 2.0 * s))], p=blur_p),
            T.RandomSolarize(128, p=solarize_p),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            normalize(),
        ])

    return TwoViews(view(1.0, 0.0), view(0.1, 0.2))


def train_transform(crop_size: int = PAPER_CROP) -> T.Compose:
    """Supervised / linear-classification training transform (crop + flip, as in the reference)."""
    return T.Compose([T.RandomResizedCrop(crop_size), T.RandomHorizontalFlip(), T.ToTensor(), normalize()])


def eval_transform(crop_size: int = PAPER_CROP) -> T.Compose:
    """Validation transform: resize the short side to crop*256/224, then a centre crop."""
    return T.Compose([T.Resize(round(crop_size * 256 / 224)), T.CenterCrop(crop_size), T.ToTensor(), normalize()])
