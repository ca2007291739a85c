"""The batched tensor augmentation (GPU data backends) against the PIL/torchvision pipeline, on the CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from pretrain.augment import IMAGENET_STD, moco_recipe, moco_transform
from pretrain.tensor_augment import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    augment_pairs,
    gaussian_blur,
    grayscale,
    sample_crop,
    sample_pair,
    sample_view,
)

STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _structured(h: int, w: int) -> np.ndarray:
    """An image where a different crop, flip or colour change moves the pixels a lot."""
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([(xx * 2) % 256, (yy * 3) % 256, ((xx + yy) * 1.5) % 256], -1).astype(np.float32)
    return (arr + np.random.default_rng(0).normal(0, 20, (h, w, 3))).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("aug_plus", [False, True], ids=["v1", "v2"])
def test_same_seed_gives_the_pil_pipelines_views(aug_plus: bool) -> None:
    """Same per-sample seed -> same crop/jitter/gray/blur/flip as moco_transform: pixels within ~1/255 on average,
    while another seed's parameters are far off."""
    arr = _structured(90, 120)
    img, t = Image.fromarray(arr), torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    r, tf = moco_recipe(64, aug_plus), moco_transform(64, aug_plus)
    close, far = [], []
    for seed in range(24):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            q, k = tf(img)
        pair = sample_pair(90, 120, r, torch.Generator().manual_seed(seed))
        tq, tk = augment_pairs([t], [pair], r)
        close += [((q - tq[0]) * STD).abs().mean().item(), ((k - tk[0]) * STD).abs().mean().item()]
        other = sample_pair(90, 120, r, torch.Generator().manual_seed(seed + 500))
        far.append(((q - augment_pairs([t], [other], r)[0][0]) * STD).abs().mean().item())
    assert max(close) < 0.015, max(close)  # in [0, 1] units: PIL's uint8 rounding, blur approximation
    assert min(far) > 3 * max(close), (min(far), max(close))


def test_crop_rule_is_torchvisions_including_the_fallback() -> None:
    for (h, w) in [(90, 120), (400, 300), (8, 300), (300, 9), (1, 1)]:
        img = torch.zeros(3, h, w)
        for seed in range(30):
            torch.manual_seed(seed)
            ref = T.RandomResizedCrop.get_params(img, [0.2, 1.0], [3 / 4, 4 / 3])
            assert sample_crop(h, w, (0.2, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(seed)) == tuple(ref)


def test_parameter_statistics_follow_the_recipes() -> None:
    g = torch.Generator().manual_seed(0)
    H, W, n = 300, 400, 3000
    v2 = [sample_view(H, W, moco_recipe(224, True), g) for _ in range(n)]
    area = np.array([p.crop[2] * p.crop[3] / (H * W) for p in v2])
    log_aspect = np.array([math.log(p.crop[3] / p.crop[2]) for p in v2])
    assert area.min() > 0.19 and area.max() <= 1.0
    # below half the image every draw fits (no retry), so the area fraction is uniform there
    lo, hi = np.sum((area >= 0.2) & (area < 0.35)), np.sum((area >= 0.35) & (area < 0.5))
    assert abs(lo - hi) < 4 * math.sqrt(lo + hi) and lo + hi > 0.3 * n
    assert np.all(np.abs(log_aspect) <= math.log(4 / 3) + 0.02)
    small = log_aspect[area < 0.5]  # no retries there: log-aspect ~ U(-0.288, 0.288), std 0.166
    assert abs(small.mean()) < 0.02 and abs(small.std() - 0.166) < 0.01

    def rate(xs: list[bool], p: float) -> None:
        assert abs(np.mean(xs) - p) < 4 * math.sqrt(p * (1 - p) / len(xs)), (np.mean(xs), p)

    rate([p.jitter is not None for p in v2], 0.8)
    rate([p.gray for p in v2], 0.2)
    rate([p.sigma is not None for p in v2], 0.5)
    rate([p.flip for p in v2], 0.5)
    f = np.array([p.jitter[1] for p in v2 if p.jitter])
    assert f[:, :3].min() >= 0.6 and f[:, :3].max() <= 1.4 and np.abs(f[:, 3]).max() <= 0.1
    assert np.abs(f[:, :3].mean(0) - 1).max() < 0.03 and np.abs(f[:, 3].mean()) < 0.005
    assert len({p.jitter[0] for p in v2 if p.jitter}) == 24  # every order of the four ops occurs
    sig = np.array([p.sigma for p in v2 if p.sigma is not None])
    assert sig.min() >= 0.1 and sig.max() <= 2.0 and abs(sig.mean() - 1.05) < 0.05
    v1 = [sample_view(H, W, moco_recipe(224, False), g) for _ in range(600)]
    assert all(p.jitter is not None and p.sigma is None for p in v1)  # v1: jitter always, never blur
    hue = np.array([p.jitter[1][3] for p in v1])
    assert np.abs(hue).max() <= 0.4 and hue.std() > 0.18  # U(-0.4, 0.4): std 0.23
    rate([p.gray for p in v1], 0.2)
    assert sample_view(H, W, moco_recipe(64, True), torch.Generator().manual_seed(1)) == \
        sample_view(H, W, moco_recipe(64, True), torch.Generator().manual_seed(1))


def test_batched_ops_equal_torchvision_per_image() -> None:
    x = torch.rand(4, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    f = torch.tensor([0.6, 0.95, 1.2, 1.4])
    h = torch.tensor([-0.1, 0.0, 0.05, 0.4])
    for ours, theirs, factors in [(adjust_brightness, TF.adjust_brightness, f), (adjust_contrast, TF.adjust_contrast, f),
                                  (adjust_saturation, TF.adjust_saturation, f), (adjust_hue, TF.adjust_hue, h)]:
        ref = torch.stack([theirs(x[i], float(factors[i])) for i in range(4)])
        torch.testing.assert_close(ours(x.clone(), factors), ref, atol=2e-6, rtol=0)
    torch.testing.assert_close(grayscale(x), TF.rgb_to_grayscale(x))
    sig = torch.tensor([0.3, 1.0, 2.0, 0.1])
    ours = gaussian_blur(x, sig, 6)
    for i in range(4):  # torchvision pads by reflection, this path by replication: compare the interior
        ref = TF.gaussian_blur(x[i], [13, 13], [float(sig[i])] * 2)
        torch.testing.assert_close(ours[i, :, 6:-6, 6:-6], ref[:, 6:-6, 6:-6], atol=1e-5, rtol=0)
