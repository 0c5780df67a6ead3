"""The batch contract both backends serve (``data.loader: ffcv|torch``, see ``streams``).

- :class:`PassSampler`: which rows each train batch reads, the same on both backends;
- :class:`Views`: a backend's uint8 images -> the training batches (fields in its docstring);
- :func:`eval_storage` / :func:`fill_eval_set`: an eval set read once per run and kept in device
  (or pinned host) memory; this rank's share (every W-th image), in file order, last partial
  batch kept.
Train streams are endless: passes without replacement, concatenated, no partial batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from daso_ray.data.augment import Augmenter, normalize
from daso_ray.errors import UserError

# Per-channel mean and std after ToTensor: CIFAR/STL as ytaek-oh/daso ``lib/dataset/transform``;
# ImageNet statistics for the pretrained Semi-Aves backbones (and user folders).
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "stl10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "semi_aves": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "folder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "digits": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
EVAL_DEVICE_BUDGET = 2 << 30  # bytes per eval set kept on a CUDA device (CIFAR test: 31 MB)


class PassSampler:
    """Infinite batches of indices: a fresh seeded permutation per pass, passes concatenated.

    The position is a single counter, so a checkpoint restores it exactly (the reference code
    pre-builds whole-run index lists from the global RNG instead). With
    ``world_size`` > 1 each rank takes its contiguous share of every global batch.
    """

    def __init__(self, indices: np.ndarray, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1):
        if batch_size % world_size:
            raise UserError(f"data.batch_size: {batch_size} is not divisible by {world_size} workers")
        if len(indices) == 0:
            raise UserError("data: a training split is empty; check the split parameters")
        self.indices, self.batch, self.seed = np.asarray(indices), batch_size, seed
        self.rank, self.world = rank, world_size
        self.consumed = 0  # global batches handed out

    def _perm(self, p: int) -> np.ndarray:
        return self.indices[np.random.default_rng([self.seed, p]).permutation(len(self.indices))]

    def batch_at(self, k: int) -> np.ndarray:
        """This rank's share of global batch ``k`` (pure function of seed and k)."""
        n, share = len(self.indices), self.batch // self.world
        start, out, need = k * self.batch, [], self.batch
        p, off = divmod(start, n)
        while need:
            take = self._perm(p)[off:off + need]
            out.append(take)
            need, p, off = need - len(take), p + 1, 0
        return np.concatenate(out)[self.rank * share:(self.rank + 1) * share]

    def __iter__(self) -> Iterator[np.ndarray]:
        # Workers prefetch ahead; ``consumed`` is advanced as batches are handed out (see
        # ``streams.Streams``), so a checkpoint records what training actually saw.
        k = self.consumed
        while True:
            yield self.batch_at(k)
            k += 1

    def state_dict(self) -> dict:
        return {"consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        self.consumed = int(state["consumed"])


def eval_storage(n: int, side: int, device: torch.device, budget: int = EVAL_DEVICE_BUDGET):
    """Where an eval set of ``n`` uint8 [3, side, side] images lives for the whole run: on the
    device when it fits in ``budget`` bytes, else in host memory (page-locked for CUDA copies).

    Returns empty ``(x uint8 [n,3,side,side], y long [n], idx long [n])``.
    """
    on_device = device.type == "cpu" or n * 3 * side * side <= budget
    where = device if on_device else torch.device("cpu")
    pin = where.type == "cpu" and device.type == "cuda"
    return tuple(torch.empty(shape, dtype=dt, device=where, pin_memory=pin) for shape, dt in
                 (((n, 3, side, side), torch.uint8), ((n,), torch.long), ((n,), torch.long)))


def fill_eval_set(batches, n: int, size: int, device: torch.device):
    """Copy a finite stream of raw ``(x uint8 [b,3,H,W], y [b], idx [b])`` batches into
    :func:`eval_storage`, resized to ``size`` once (the per-image antialiased resize ``Views``
    would apply at every evaluation). Copies, so recycled loader buffers (FFCV) are safe."""
    x, y, idx = eval_storage(n, size, device)
    at = 0
    for xb, yb, ib in batches:
        if xb.shape[-1] != size:
            xb = TF.resize(xb, [size, size], antialias=True)
        k = len(yb)
        x[at:at + k].copy_(xb)
        y[at:at + k].copy_(yb)
        idx[at:at + k].copy_(ib)
        at += k
    if at != n:
        raise RuntimeError(f"eval set read {at} images, expected {n}")
    return x, y, idx


class Views:
    """Turns a backend's uint8 images into the training batches, on ``device``.

    Each field means the same on both backends (S = ``image_size``, B = ``data.batch_size``,
    muB = ``data.batch_size * data.mu``):

    - labeled: ``x`` float32 [B, 3, S, S], the weak view (flip + crop) of rows ``idx`` long
      [B], labels ``y`` long [B];
    - unlabeled: ``x_w`` float32 [muB, 3, S, S], the weak view of rows ``idx`` long [muB];
      ``x_s`` float32 [muB, 3, S, S], a strong view of the same rows: a flip + crop of its own,
      then RandAugment + Cutout; with two strong views (SeMi) ``x_s2``, drawn as ``x_s`` is and
      independently of it. No label.
    - eval: ``x`` float32 [n, 3, S, S] not augmented, ``y`` and ``idx`` long [n].

    Images are normalised with the dataset's mean and std and resized to S when they are not S.
    ``crop`` is the backend's ``Streams.crop``: the flip + crop still to draw here, per view. The
    kind of crop is the backend's: a reflect-padded crop, except FFCV's random-resized crop of
    JPEG images.
    """

    def __init__(self, dataset: str, device, augmenter: Augmenter, image_size: int,
                 crop: Callable[[torch.Tensor], torch.Tensor]):
        self.mean, self.std = STATS[dataset]
        self.device, self.aug, self.size, self.crop = torch.device(device), augmenter, image_size, crop

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [n,3,H,W] anywhere -> float32 [n,3,S,S] normalised on the device (``normalize``
        keeps its mean/std tensors per device, so nothing is copied to the device per batch)."""
        return normalize(x.to(self.device, non_blocking=True), self.mean, self.std, self.size)

    def _long(self, t: torch.Tensor) -> torch.Tensor:
        # Always a copy: FFCV recycles its output buffers, and the loop keeps ``idx`` a while.
        return t.to(self.device, torch.long, non_blocking=True, copy=True)

    def _on_device(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each distinct tensor copied once: the torch backend hands one batch for every view."""
        moved = {id(v): v.to(self.device, non_blocking=True) for v in views}
        return [moved[id(v)] for v in views]

    def labeled(self, x, y, idx) -> dict:
        x = self.crop(x.to(self.device, non_blocking=True))
        return {"x": self._norm(x), "y": self._long(y), "idx": self._long(idx)}

    def unlabeled(self, views: list[torch.Tensor], idx) -> dict:
        """``views``: the weak view's image, then one per strong view (1 or 2), same rows."""
        x_w, *strong = self._on_device(views)
        # One generator draws every view, always in this order (the weak view's crop, then per
        # strong view its crop and its strong ops), so a seed and a resume give the same views.
        x_w = self._norm(self.crop(x_w))
        x_s = [self._norm(self.aug.strong(self.crop(x))) for x in strong]
        out = {"x_w": x_w, "x_s": x_s[0], "idx": self._long(idx)}
        if len(x_s) == 2:
            out["x_s2"] = x_s[1]
        return out

    def eval(self, x, y, idx) -> dict:
        return {"x": self._norm(x), "y": self._long(y), "idx": self._long(idx)}
