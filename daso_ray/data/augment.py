"""Batched weak and strong augmentation on the batch's device (specs/daso.md §3).

Random parameters are drawn **per sample** from a ``torch.Generator``; every op is applied to the
whole sub-batch that drew it with vectorised tensor ops (no Python loop over samples). Images stay
uint8 ``[N, 3, H, W]`` until :func:`normalize`, so each op computes what the matching
``torchvision.transforms.v2.functional`` uint8 kernel computes on one sample (tests pin this).

Strong = FixMatch RandAugment (2 ops drawn with replacement from 14, each applied with p=0.5,
integer level v in 1..9, ± ops negated with p=0.5) then Cutout (gray 127, inclusive rectangle).
No maintained library offers this exact op set with per-sample randomness on batches (kornia's
and torchaug's RandAugment use other pools and magnitude maps), so it is written here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

Op = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _col(t: torch.Tensor) -> torch.Tensor:
    """[n] -> [n, 1, 1, 1] for broadcasting over (C, H, W)."""
    return t.view(-1, 1, 1, 1)


def _enhance_factor(v: torch.Tensor) -> torch.Tensor:
    """0.9 * v / 10 + 0.05 in float64 (0.14 .. 0.86): enhance ops only ever reduce (kept, §11)."""
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


def sharpness(img, v, sign):
    """Blend with a 3x3 smoothing (5 in the centre) on the interior; borders are kept."""
    k = torch.full((3, 3), 1.0 / 13.0, device=img.device)
    k[1, 1] = 5.0 / 13.0
    out = img.float()
    blurred = F.conv2d(out, k.expand(3, 1, 3, 3), groups=3).round_()
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
    scaled = theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h], device=img.device)
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


# The FixMatch pool (specs/daso.md §3.3), in a fixed order: the op index is part of the params.
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


# ---------------------------------------------------------------------------------------------
# Parameter draws and the two views


def weak_params(n: int, h: int, w: int, pad: int, gen: torch.Generator, device) -> dict:
    """Per sample: flip (bool [n]) and crop offsets oy, ox in 0..2*pad (long [n])."""
    return {
        "flip": torch.rand(n, generator=gen, device=device) < 0.5,
        "oy": torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=device),
        "ox": torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=device),
    }


def apply_weak(img: torch.Tensor, p: dict, pad: int) -> torch.Tensor:
    """Horizontal flip, then reflect-pad ``pad`` px and crop back to (H, W). uint8 [n,3,H,W].

    The crop is one ``gather`` over the flattened padded image (2.5x faster than 4-D indexing).
    """
    n, c, h, w = img.shape
    img = torch.where(_col(p["flip"]), img.flip(-1), img)
    padded = F.pad(img.float(), (pad, pad, pad, pad), mode="reflect").to(img.dtype)
    rows = p["oy"].view(n, 1, 1) + torch.arange(h, device=img.device).view(1, h, 1)
    cols = p["ox"].view(n, 1, 1) + torch.arange(w, device=img.device).view(1, 1, w)
    flat = (rows * (w + 2 * pad) + cols).view(n, 1, h * w).expand(n, c, h * w)
    return padded.view(n, c, -1).gather(2, flat).view(n, c, h, w)


def strong_params(n: int, h: int, w: int, gen: torch.Generator, device) -> dict:
    """Per sample and slot (2 slots): op id, applied (p=0.5), level 1..9, sign; Cutout centre."""
    def draw(fn, *a):
        return fn(*a, generator=gen, device=device)
    return {
        "op": draw(torch.randint, 0, len(OPS), (n, 2)),
        "apply": draw(torch.rand, (n, 2)) < 0.5,
        "level": draw(torch.randint, 1, 10, (n, 2)),
        "sign": torch.where(draw(torch.rand, (n, 2)) < 0.5, -1, 1),
        "cx": draw(torch.rand, (n,)) * w,
        "cy": draw(torch.rand, (n,)) * h,
    }


def apply_strong(img: torch.Tensor, p: dict, cutout_size: int) -> torch.Tensor:
    """RandAugment (2 slots, vectorised per op over the samples that drew it), then Cutout."""
    img = img.clone()
    for slot in range(2):
        for op_id, (_, fn) in enumerate(OPS):
            idx = ((p["op"][:, slot] == op_id) & p["apply"][:, slot]).nonzero().squeeze(1)
            if idx.numel() and fn is not identity:
                img[idx] = fn(img[idx], p["level"][idx, slot], p["sign"][idx, slot])
    return cutout(img, p["cx"], p["cy"], cutout_size)


class Augmenter:
    """Draws parameters from its own generator and applies the views on ``device``.

    Its generator state is part of the training checkpoint (resume == never stopped).
    """

    def __init__(self, seed: int, device: torch.device | str = "cpu", pad: int = 4,
                 cutout_size: int = 16):
        self.device = torch.device(device)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(seed)
        self.pad, self.cutout_size = pad, cutout_size

    def weak(self, img: torch.Tensor) -> torch.Tensor:
        n, _, h, w = img.shape
        return apply_weak(img, weak_params(n, h, w, self.pad, self.gen, self.device), self.pad)

    def strong(self, img: torch.Tensor) -> torch.Tensor:
        n, _, h, w = img.shape
        return apply_strong(img, strong_params(n, h, w, self.gen, self.device), self.cutout_size)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])


def normalize(img: torch.Tensor, mean: tuple, std: tuple, size: int | None = None) -> torch.Tensor:
    """uint8 [n,3,H,W] -> float32 normalised; optionally resized (antialiased bilinear, as PIL)."""
    if size is not None and img.shape[-1] != size:
        img = TF.resize(img, [size, size], antialias=True)
    m = torch.tensor(mean, device=img.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=img.device).view(1, 3, 1, 1)
    return (img.float().div_(255.0) - m) / s

