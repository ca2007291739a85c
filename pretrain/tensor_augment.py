"""MoCo v1/v2 augmentation as batched tensor operations, for decoded batches on the GPU (or the CPU).

Two halves:

* **Parameters** (:func:`sample_view`, :func:`sample_pair`): drawn on the CPU, per view, with *exactly* the
  random calls, in the same order, that ``augment.moco_transform`` (torchvision + PIL) makes: crop box by
  torchvision's ``RandomResizedCrop`` rule (10 tries of area ~ U(scale) x image area and log-aspect ~
  U(log ratio), then the centre-crop fallback), the ``RandomApply`` coin (``p < u`` skips), ``ColorJitter``'s
  random order of the four ops and its factors, the grayscale coin, the blur coin and sigma, the flip coin.
  With the same seed both backends therefore pick the same crops, orders, factors, sigmas and flips.
* **Pixels** (:func:`apply_views`): resized crop (bilinear, antialiased, one call per view since images
  differ in size), then brightness / contrast / saturation / hue with each sample's own factors and order,
  grayscale, Gaussian blur with each sample's sigma, flip and normalisation on the whole batch at once.

Where the pixels differ from the PIL path (same parameters): PIL works in uint8 and rounds after every
op, these ops stay in float32; PIL's hue shift goes through uint8 HSV (hue quantised to 1/256), PIL's
contrast uses the rounded mean of its integer grayscale (L = 299R+587G+114B over 1000), this path the
float mean with torchvision's weights (0.2989, 0.587, 0.114); PIL's ``GaussianBlur(radius=sigma)`` is an
extended box-filter approximation of a Gaussian, this path a true sampled Gaussian of radius
``ceil(3 sigma_max)`` with replicated borders; the crop is resampled from the float image with torch's
antialiased bilinear filter (designed to match PIL's). ``tests/test_tensor_augment.py`` bounds the
resulting pixel difference and checks the parameter statistics.

Why not kornia: its batched ops sample their own parameters (not torchvision's rule) and define
brightness as additive and contrast without the image mean, unlike torchvision/PIL and the paper's code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pretrain.augment import IMAGENET_MEAN, IMAGENET_STD, Recipe

_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


@dataclass(frozen=True)
class ViewParams:
    """The random choices of one augmented view."""

    crop: tuple[int, int, int, int]                       # top, left, height, width in the source image
    jitter: tuple[tuple[int, ...], tuple[float, float, float, float]] | None  # (op order, factors) or not applied
    gray: bool
    sigma: float | None                                   # blur sigma, or no blur
    flip: bool


def _uniform(lo: float, hi: float, g: torch.Generator | None) -> float:
    return torch.empty(1).uniform_(lo, hi, generator=g).item()


def sample_crop(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                g: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop`` box (same random calls): ``(top, left, h, w)``."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * _uniform(scale[0], scale[1], g)
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=g)).item()
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, size=(1,), generator=g).item())
            j = int(torch.randint(0, width - w + 1, size=(1,), generator=g).item())
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _coin_applies(p: float, g: torch.Generator | None) -> bool:
    """``RandomApply``: one draw ``u``; the op is skipped when ``p < u``. ``p == 1``: no draw (plain op)."""
    if p >= 1.0:
        return True
    return not (p < torch.rand(1, generator=g).item())


def _jitter_params(r: Recipe, g: torch.Generator | None) -> tuple[tuple[int, ...], tuple[float, float, float, float]]:
    b, c, s, h = r.jitter
    order = tuple(int(v) for v in torch.randperm(4, generator=g).tolist())
    factors = (_uniform(max(0.0, 1 - b), 1 + b, g), _uniform(max(0.0, 1 - c), 1 + c, g),
               _uniform(max(0.0, 1 - s), 1 + s, g), _uniform(-h, h, g))
    return order, factors


def sample_view(height: int, width: int, r: Recipe, g: torch.Generator | None = None) -> ViewParams:
    """One view's parameters, drawn in ``moco_transform``'s order (``g=None``: torch's default generator)."""
    crop = sample_crop(height, width, r.scale, r.ratio, g)
    jitter, gray = None, False
    if r.gray_first:  # v1: grayscale coin, then the jitter (always applied)
        gray = bool(torch.rand(1, generator=g).item() < r.gray_p)
        jitter = _jitter_params(r, g)
    else:
        if _coin_applies(r.jitter_p, g):
            jitter = _jitter_params(r, g)
        gray = bool(torch.rand(1, generator=g).item() < r.gray_p)
    sigma = None
    if r.blur_sigma is not None and _coin_applies(r.blur_p, g):
        sigma = float(torch.empty(()).uniform_(r.blur_sigma[0], r.blur_sigma[1], generator=g))
    flip = bool(torch.rand(1, generator=g).item() < r.flip_p)
    return ViewParams(crop, jitter, gray, sigma, flip)


def sample_pair(height: int, width: int, r: Recipe, g: torch.Generator | None = None) -> tuple[ViewParams, ViewParams]:
    """Query and key view parameters (``TwoCrops``: the query's draws come first)."""
    return sample_view(height, width, r, g), sample_view(height, width, r, g)


# --- pixels ---------------------------------------------------------------------------------------------
def resized_crop(image: torch.Tensor, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """Crop ``box`` of a uint8 or float ``(3, H, W)`` image and resize it to ``size`` (float in [0, 1])."""
    i, j, h, w = box
    crop = image[:, i:i + h, j:j + w]
    crop = crop.float().div_(255) if crop.dtype == torch.uint8 else crop.float()
    return F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].clamp_(0, 1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` -> ``(N, 1, H, W)`` luma with torchvision's weights."""
    return (_GRAY[0] * x[:, 0] + _GRAY[1] * x[:, 1] + _GRAY[2] * x[:, 2]).unsqueeze(1)


def _per_sample(f: torch.Tensor) -> torch.Tensor:
    return f.view(-1, 1, 1, 1)


def adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * _per_sample(f)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    f = _per_sample(f)
    return (f * x + (1 - f) * mean).clamp_(0, 1)


def adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    f = _per_sample(f)
    return (f * x + (1 - f) * grayscale(x)).clamp_(0, 1)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack((h, s, maxc), dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`: channel ``c = v - v s clamp(min(k, 4 - k), 0, 1)``, ``k = (n + 6h) mod 6``
    with ``n`` = 5, 3, 1 for red, green, blue (elementwise; no per-sector copies of the batch)."""
    h, s, v = x.unbind(1)
    h6 = h * 6.0
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (n + h6) % 6.0
        out.append(v - v * s * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(out, dim=1)


def adjust_hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    hsv = rgb_to_hsv(x)
    hsv[:, 0] = (hsv[:, 0] + f.view(-1, 1, 1)) % 1.0
    return hsv_to_rgb(hsv).clamp_(0, 1)


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)  # torchvision's op indices


def color_jitter(x: torch.Tensor, params: list[ViewParams]) -> torch.Tensor:
    """Each sample's four jitter ops in its own order; samples without jitter pass through."""
    rows = [(n, p.jitter) for n, p in enumerate(params) if p.jitter is not None]
    if not rows:
        return x
    dev = x.device
    order = torch.tensor([j[0] for _, j in rows])
    factors = torch.tensor([j[1] for _, j in rows], dtype=torch.float32)
    index = torch.tensor([n for n, _ in rows])
    for stage in range(4):
        for op in range(4):
            sel = (order[:, stage] == op).nonzero().flatten()
            if len(sel):
                rows_dev = index[sel].to(dev, non_blocking=True)
                x[rows_dev] = _JITTER_OPS[op](x[rows_dev], factors[sel, op].to(dev, non_blocking=True))
    return x


def gaussian_kernels(sigmas: torch.Tensor, radius: int) -> torch.Tensor:
    """Normalised 1-D Gaussians, one row per sigma, taps ``-radius..radius``."""
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=sigmas.device)
    k = torch.exp(-0.5 * (t[None] / sigmas[:, None]) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigmas: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable blur of each image of ``(N, C, H, W)`` with its own sigma (replicated borders)."""
    n, c, h, w = x.shape
    k = gaussian_kernels(sigmas.to(x.device, torch.float32), radius).repeat_interleave(c, dim=0)  # (N*C, taps)
    y = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


def augment_batch(x: torch.Tensor, params: list[ViewParams], r: Recipe) -> torch.Tensor:
    """Everything after the crop, on a float ``(N, 3, S, S)`` batch in [0, 1]; returns it normalised."""
    dev = x.device

    def rows(pred) -> torch.Tensor:
        return torch.tensor([n for n, p in enumerate(params) if pred(p)], dtype=torch.long).to(dev, non_blocking=True)

    def to_gray() -> None:
        sel = rows(lambda p: p.gray)
        if len(sel):
            x[sel] = grayscale(x[sel]).expand(-1, 3, -1, -1)

    if r.gray_first:
        to_gray()
        x = color_jitter(x, params)
    else:
        x = color_jitter(x, params)
        to_gray()
    if r.blur_sigma is not None:
        blurred = [(n, p.sigma) for n, p in enumerate(params) if p.sigma is not None]
        if blurred:
            sel = torch.tensor([n for n, _ in blurred]).to(dev, non_blocking=True)
            sig = torch.tensor([s for _, s in blurred])
            x[sel] = gaussian_blur(x[sel], sig, max(1, math.ceil(3 * r.blur_sigma[1])))
    sel = rows(lambda p: p.flip)
    if len(sel):
        x[sel] = x[sel].flip(-1)
    mean = torch.tensor(IMAGENET_MEAN, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=dev).view(1, 3, 1, 1)
    return (x - mean) / std


def apply_views(images: list[torch.Tensor], params: list[ViewParams], r: Recipe) -> torch.Tensor:
    """Augment view ``n`` from ``images[n]`` (``(3, H, W)`` uint8, any sizes) with ``params[n]``: ``(N, 3, S, S)``."""
    crops = torch.stack([resized_crop(img, p.crop, r.crop_size) for img, p in zip(images, params)])
    return augment_batch(crops, params, r)


def augment_pairs(images: list[torch.Tensor], pairs: list[tuple[ViewParams, ViewParams]], r: Recipe,
                  memory_format: torch.memory_format = torch.contiguous_format) -> tuple[torch.Tensor, torch.Tensor]:
    """Query and key batches of decoded ``images`` with their ``(query, key)`` parameters."""
    n = len(images)
    views = apply_views(images + images, [q for q, _ in pairs] + [k for _, k in pairs], r)
    views = views.contiguous(memory_format=memory_format)
    return views[:n], views[n:]
