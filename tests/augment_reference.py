"""Per-sample torchvision v2 versions of every augmentation op: the oracle for tests and the
per-sample baseline for benchmarks (one image at a time, Python-level parameters)."""

from __future__ import annotations

import math

import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

NEAREST = InterpolationMode.NEAREST


def enhance(v: int) -> float:
    return 0.9 * v / 10 + 0.05


def reference(name: str, img: torch.Tensor, v: int, sign: int) -> torch.Tensor:
    """Apply the FixMatch op ``name`` at level ``v`` with ``sign`` to one uint8 [3, H, W] image."""
    h, w = img.shape[-2:]
    if name == "AutoContrast":
        return TF.autocontrast(img)
    if name == "Equalize":
        return TF.equalize(img)
    if name == "Identity":
        return img
    if name == "Brightness":
        return TF.adjust_brightness(img, enhance(v))
    if name == "Color":
        return TF.adjust_saturation(img, enhance(v))
    if name == "Contrast":
        return TF.adjust_contrast(img, enhance(v))
    if name == "Sharpness":
        return TF.adjust_sharpness(img, enhance(v))
    if name == "Posterize":
        return TF.posterize(img, int(4 * v / 10) + 4)
    if name == "Solarize":
        return TF.solarize(img, 256 - int(256 * v / 10))
    if name == "Rotate":
        return TF.rotate(img, sign * int(30 * v / 10), interpolation=NEAREST, fill=0)
    if name in ("ShearX", "ShearY"):
        deg = math.degrees(math.atan(sign * 0.3 * v / 10))
        shear = [deg, 0.0] if name == "ShearX" else [0.0, deg]
        return TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=shear,
                         interpolation=NEAREST, fill=0, center=[0, 0])
    if name == "TranslateX":
        return TF.affine(img, angle=0.0, translate=[sign * int(0.3 * v / 10 * w), 0], scale=1.0,
                         shear=[0.0, 0.0], interpolation=NEAREST, fill=0)
    if name == "TranslateY":
        return TF.affine(img, angle=0.0, translate=[0, sign * int(0.3 * v / 10 * h)], scale=1.0,
                         shear=[0.0, 0.0], interpolation=NEAREST, fill=0)
    raise KeyError(name)


def cutout_reference(img: torch.Tensor, cx: float, cy: float, size: int) -> torch.Tensor:
    h, w = img.shape[-2:]
    x0, y0 = int(max(0, cx - size / 2)), int(max(0, cy - size / 2))
    x1, y1 = int(min(w, x0 + size)), int(min(h, y0 + size))
    # PIL's rectangle includes both end points; clip to the image.
    return TF.erase(img, y0, x0, min(y1, h - 1) - y0 + 1, min(x1, w - 1) - x0 + 1,
                    torch.tensor(127, dtype=torch.uint8))


def weak_reference(img: torch.Tensor, flip: bool, oy: int, ox: int, pad: int) -> torch.Tensor:
    h, w = img.shape[-2:]
    if flip:
        img = TF.horizontal_flip(img)
    padded = TF.pad(img, [pad], padding_mode="reflect")
    return TF.crop(padded, oy, ox, h, w)


def strong_reference(img: torch.Tensor, rng, size: int = 16) -> torch.Tensor:
    """One FixMatch strong view of one uint8 [3, H, W] image with python-level randomness."""
    from daso_ray.data.augment import OPS

    for _ in range(2):
        name = OPS[rng.randrange(len(OPS))][0]
        if rng.random() < 0.5:
            img = reference(name, img, rng.randint(1, 9), rng.choice((-1, 1)))
    h, w = img.shape[-2:]
    return cutout_reference(img, rng.random() * w, rng.random() * h, size)
