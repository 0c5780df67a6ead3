"""The FixMatch RandAugment op pool and Cutout on uint8 batches (Sohn et al., NeurIPS 2020, Table 12;
reference: kekmodel/FixMatch-pytorch ``dataset/randaugment.py``, ``fixmatch_augment_pool``).

Each op takes ``img`` uint8 [n, 3, H, W] and per-sample ``v`` (integer level 1..9, long [n]) and
``sign`` (±1, long [n]) on the images' device, and computes what the matching
``torchvision.transforms.v2.functional`` uint8 kernel computes on one sample (tests pin this).
No maintained library offers this exact op set with per-sample randomness on batches (kornia's and
torchaug's RandAugment use other pools and magnitude maps), so it is written here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

Op = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _col(t: torch.Tensor) -> torch.Tensor:
    """[n] -> [n, 1, 1, 1] for broadcasting over (C, H, W)."""
    return t.view(-1, 1, 1, 1)


def _enhance_factor(v: torch.Tensor) -> torch.Tensor:
    """0.9 * v / 10 + 0.05 in float64 (0.14 .. 0.86): enhance ops only ever reduce (as in the
    reference ``fixmatch_augment_pool``: factor = 0.9 v / 10 + 0.05)."""
    return 0.9 * v.double() / 10 + 0.05


def _blend(img: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """uint8 img * r + other * (1 - r), clamped and truncated like torchvision's ``_blend``."""
    r = _col(ratio).float()
    one_minus = _col(1.0 - ratio).float()
    return (img.float() * r).addcmul_(other, one_minus).clamp_(0, 255).to(torch.uint8)


def _gray(img: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, floored (torchvision's uint8 grayscale) -> float [n, 1, H, W]."""
    r, g, b = img.float().unbind(1)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).floor_().unsqueeze(1)


def identity(img, v, sign):
    return img


def auto_contrast(img, v, sign):
    return TF.autocontrast(img)  # batch-native: per image and channel min/max


def equalize(img, v, sign):
    return TF.equalize(img)  # batch-native: per image and channel histograms


def brightness(img, v, sign):
    return (img.float() * _col(_enhance_factor(v)).float()).clamp_(0, 255).to(torch.uint8)


def color(img, v, sign):
    return _blend(img, _gray(img), _enhance_factor(v))


def contrast(img, v, sign):
    mean = _gray(img).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(img, mean, _enhance_factor(v))


@lru_cache(maxsize=8)
def _smooth_kernel(device: torch.device) -> torch.Tensor:
    """PIL's SMOOTH filter, [3, 1, 3, 3], built once per device: writing the centre into a device
    tensor with a Python scalar would be a blocking host -> device copy at every call."""
    k = torch.full((3, 3), 1.0 / 13.0)
    k[1, 1] = 5.0 / 13.0
    return k.expand(3, 1, 3, 3).contiguous().to(device)


def sharpness(img, v, sign):
    """Blend with a 3x3 smoothing (5 in the centre) on the interior; borders are kept."""
    out = img.float()
    blurred = F.conv2d(out, _smooth_kernel(img.device), groups=3).round_()
    view = out[..., 1:-1, 1:-1]
    view.addcmul_(blurred.sub_(view), _col(1.0 - _enhance_factor(v)).float())
    return out.clamp_(0, 255).to(torch.uint8)


def posterize(img, v, sign):
    bits = (4 * v // 10 + 4).to(torch.int32)  # int(4 v / 10) + 4: 4..7 bits
    mask = (((1 << bits) - 1) << (8 - bits)).to(torch.uint8)
    return img & _col(mask)


def solarize(img, v, sign):
    thr = 256 - (256 * v // 10)  # 256 - int(256 v / 10): 231 .. 26
    return torch.where(img >= _col(thr).to(img.device), 255 - img, img)


def _inverse_affine(n: int, device, angle, tx, ty, shear_x, shear_y, center) -> torch.Tensor:
    """Per-sample inverse affine matrices [n, 2, 3] as torchvision's ``_get_inverse_affine_matrix``
    (scale 1), all angles in degrees (float64 [n]); center (cx, cy) relative to the image centre."""
    rot, sx, sy = (torch.deg2rad(t.double()) for t in (angle, shear_x, shear_y))
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    cx, cy = center
    m = torch.stack([d, -b, torch.zeros_like(a), -c, a, torch.zeros_like(a)], 1)
    m[:, 2] += m[:, 0] * (-cx - tx.double()) + m[:, 1] * (-cy - ty.double()) + cx
    m[:, 5] += m[:, 3] * (-cx - tx.double()) + m[:, 4] * (-cy - ty.double()) + cy
    return m.float().view(n, 2, 3)


def _warp(img: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour warp with black fill, batched version of torchvision's affine kernel."""
    n, _, h, w = img.shape
    xs = torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, device=img.device)
    ys = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h, device=img.device)
    base = torch.empty(1, h, w, 3, device=img.device)
    base[..., 0].copy_(xs)
    base[..., 1].copy_(ys.unsqueeze(-1))
    base[..., 2].fill_(1)
    scaled = theta.transpose(1, 2).clone()  # [n, 3, 2]; column j divided by half the size
    scaled[..., 0] /= 0.5 * w  # Python scalars: no host-built tensor copied per call
    scaled[..., 1] /= 0.5 * h
    grid = base.view(1, h * w, 3).expand(n, -1, -1).bmm(scaled).view(n, h, w, 2)
    out = F.grid_sample(img.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.round_().to(torch.uint8)


def _affine(img, *, angle=None, tx=None, ty=None, shear_x=None, shear_y=None, corner=False):
    n, _, h, w = img.shape
    zero = torch.zeros(n, dtype=torch.float64, device=img.device)
    center = (-w * 0.5, -h * 0.5) if corner else (0.0, 0.0)
    args = [t if t is not None else zero for t in (angle, tx, ty, shear_x, shear_y)]
    return _warp(img, _inverse_affine(n, img.device, *args, center))


def rotate(img, v, sign):
    # torchvision's rotate negates the angle for its affine matrix (counter-clockwise, as PIL).
    return _affine(img, angle=-(sign * (30 * v // 10)).double())


def _shear_deg(v, sign):
    return torch.rad2deg(torch.atan(sign.double() * 0.3 * v.double() / 10))


def shear_x(img, v, sign):
    # PIL affine (1, s, 0, 0, 1, 0) shears about the top-left corner: centre = [0, 0] in pixels.
    return _affine(img, shear_x=_shear_deg(v, sign), corner=True)


def shear_y(img, v, sign):
    return _affine(img, shear_y=_shear_deg(v, sign), corner=True)


def _shift(v, sign, size: int) -> torch.Tensor:
    # int(0.3 v / 10 * size) toward zero, then the random sign.
    return (sign * torch.floor(0.3 * v.double() / 10 * size).long()).double()


def translate_x(img, v, sign):
    return _affine(img, tx=_shift(v, sign, img.shape[-1]))


def translate_y(img, v, sign):
    return _affine(img, ty=_shift(v, sign, img.shape[-2]))


# The FixMatch pool (Sohn et al., NeurIPS 2020, Table 12; kekmodel/FixMatch-pytorch
# ``fixmatch_augment_pool``), in a fixed order: the op index is part of the params.
OPS: list[tuple[str, Op]] = [
    ("AutoContrast", auto_contrast), ("Brightness", brightness), ("Color", color),
    ("Contrast", contrast), ("Equalize", equalize), ("Identity", identity),
    ("Posterize", posterize), ("Rotate", rotate), ("Sharpness", sharpness),
    ("ShearX", shear_x), ("ShearY", shear_y), ("Solarize", solarize),
    ("TranslateX", translate_x), ("TranslateY", translate_y),
]


def cutout(img: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, size: int,
           fill: int = 127) -> torch.Tensor:
    """Paint the inclusive rectangle [x0, x1] x [y0, y1] (PIL semantics, up to size+1 px).

    img: uint8 [n, 3, H, W]; cx, cy: float [n] centres drawn in [0, W) x [0, H).
    """
    _, _, h, w = img.shape
    half = size / 2.0
    x0 = torch.clamp(cx - half, min=0).long()
    y0 = torch.clamp(cy - half, min=0).long()
    x1 = torch.clamp(x0 + size, max=w)
    y1 = torch.clamp(y0 + size, max=h)
    xs = torch.arange(w, device=img.device).view(1, 1, w)
    ys = torch.arange(h, device=img.device).view(1, h, 1)
    inside = ((xs >= x0.view(-1, 1, 1)) & (xs <= x1.view(-1, 1, 1))
              & (ys >= y0.view(-1, 1, 1)) & (ys <= y1.view(-1, 1, 1)))
    return torch.where(inside.unsqueeze(1), torch.full_like(img, fill), img)
