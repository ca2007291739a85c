"""Image augmentations of MoCo v1 and v2 (``--aug-plus``), and the evaluation transforms.

v1 (He et al. 2020, Sec. 3.3 and reference code): RandomResizedCrop(scale 0.2-1), RandomGrayscale(p 0.2),
ColorJitter(0.4, 0.4, 0.4, 0.4), horizontal flip.
v2 (Chen et al. 2020): RandomResizedCrop(scale 0.2-1), ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8,
RandomGrayscale(p 0.2), Gaussian blur sigma ~ U[0.1, 2] with p 0.5, horizontal flip.

Every random draw goes through torch's CPU generator, so seeding that generator per sample
(``data.py`` does) makes the two crops of an image a pure function of (seed, epoch, index).
At crop sizes other than 224 the blur's sigma range is scaled by ``crop_size / 224`` so that it
blurs the same fraction of the image as in the paper (identical to the paper at 224).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image, ImageFilter
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAPER_CROP = 224


class GaussianBlur:
    """PIL Gaussian blur with sigma drawn uniformly from ``sigma`` (torch RNG)."""

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0)) -> None:
        self.sigma = sigma

    def __call__(self, img: Image.Image) -> Image.Image:
        s = float(torch.empty(()).uniform_(self.sigma[0], self.sigma[1]))
        return img.filter(ImageFilter.GaussianBlur(radius=s))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma})"


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
    crop = T.RandomResizedCrop(crop_size, scale=(0.2, 1.0))
    if aug_plus:
        scale = crop_size / PAPER_CROP
        ops = [
            crop,
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([GaussianBlur((0.1 * scale, 2.0 * scale))], p=0.5),
        ]
    else:
        ops = [crop, T.RandomGrayscale(p=0.2), T.ColorJitter(0.4, 0.4, 0.4, 0.4)]
    return TwoCrops(T.Compose([*ops, T.RandomHorizontalFlip(), T.ToTensor(), normalize()]))


def train_transform(crop_size: int = PAPER_CROP) -> T.Compose:
    """Supervised / linear-classification training transform (crop + flip, as in the reference)."""
    return T.Compose([T.RandomResizedCrop(crop_size), T.RandomHorizontalFlip(), T.ToTensor(), normalize()])


def eval_transform(crop_size: int = PAPER_CROP) -> T.Compose:
    """Validation transform: resize the short side to crop*256/224, then a centre crop."""
    return T.Compose([T.Resize(round(crop_size * 256 / 224)), T.CenterCrop(crop_size), T.ToTensor(), normalize()])
