"""Loaders with one batch contract for both backends (``data.loader: ffcv|torch``).

Batches (tensors on ``device``; images float32 normalised ``[n, 3, S, S]``):
- labeled:   ``{"x": weak view, "y": long [B], "idx": long [B]}``
- unlabeled: ``{"x_w": weak view, "x_s": strong view, "idx": long [muB]}`` — both views of the
  *same* samples; no label ever reaches the training step (specs/daso.md §11 item 4);
- eval:      ``{"x", "y", "idx"}``, this rank's share (every W-th image) in file order, last
  partial batch kept; read once per run into device (or pinned host) memory.
Train streams are infinite: passes without replacement, concatenated, no partial batch (§6).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from daso_ray.data.augment import Augmenter, normalize
from daso_ray.data.store import Store
from daso_ray.errors import UserError

STATS = {  # specs/daso.md §3.1; ImageNet statistics for the pretrained Semi-Aves backbones
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

    The position is a single counter, so a checkpoint restores it exactly (§11 item 11). With
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
        # Workers prefetch ahead; ``consumed`` is advanced by the consumer (see TrainData), so a
        # checkpoint records what training actually saw.
        k = self.consumed
        while True:
            yield self.batch_at(k)
            k += 1

    def state_dict(self) -> dict:
        return {"consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        self.consumed = int(state["consumed"])


class StoreBatches(torch.utils.data.Dataset):
    """Batch-level dataset for the torch fallback: one ``__getitems__`` per batch of indices."""

    def __init__(self, store: Store, size: int):
        self.store, self.size = store, size

    def __len__(self) -> int:
        return len(self.store)

    def __getitems__(self, idx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = np.asarray(idx, dtype=np.int64)
        if self.store.shape:
            images = torch.from_numpy(self.store.pixels(idx)).permute(0, 3, 1, 2)
        else:
            images = self._jpeg(idx)
        return images, torch.from_numpy(self.store.labels[idx]), torch.from_numpy(idx)

    __getitem__ = __getitems__  # the sampler yields whole batches of indices

    def _jpeg(self, idx: np.ndarray) -> torch.Tensor:
        # Decoding is per image by nature; the 224-px crop is a centre crop here and the random
        # crops of the train views are drawn on the device by the Augmenter.
        from torchvision.io import decode_jpeg
        from torchvision.transforms.v2 import functional as TF

        datas = [torch.frombuffer(bytearray(self.store.jpeg(i)), dtype=torch.uint8) for i in idx]
        return torch.stack([TF.center_crop(im, [self.size, self.size]) for im in decode_jpeg(datas)])


def torch_stream(store: Store, batches, workers: int, size: int, pin: bool = False):
    """Train batches ``(uint8 [n,3,H,W], long [n], long [n])``; ``pin`` (CUDA) page-locks them so
    the copies to the device can be ``non_blocking``."""
    ds = StoreBatches(store, size)
    return torch.utils.data.DataLoader(ds, batch_size=None, sampler=batches, num_workers=workers,
                                       collate_fn=_same, persistent_workers=workers > 0,
                                       prefetch_factor=4 if workers else None, pin_memory=pin)


def torch_eval_loader(store: Store, order: np.ndarray, batch: int, workers: int, size: int):
    """The eval set's rows ``order`` in order, ``batch`` at a time, last partial batch kept.

    Read once per run (``TrainData.eval_set``): workers only pay off for JPEG decoding.
    """
    chunks = [order[s:s + batch] for s in range(0, len(order), batch)]
    return torch.utils.data.DataLoader(StoreBatches(store, size), batch_size=None, sampler=chunks,
                                       num_workers=workers, collate_fn=_same)


def _same(batch):
    return batch  # the dataset already returns whole batches (picklable for worker processes)


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
    """Turns raw uint8 batches from either backend into the batch contract on ``device``."""

    def __init__(self, dataset: str, device, augmenter: Augmenter, image_size: int):
        self.mean, self.std = STATS[dataset]
        self.device, self.aug, self.size = torch.device(device), augmenter, image_size

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [n,3,H,W] anywhere -> float32 [n,3,S,S] normalised on the device (``normalize``
        keeps its mean/std tensors per device, so nothing is copied to the device per batch)."""
        return normalize(x.to(self.device, non_blocking=True), self.mean, self.std, self.size)

    def _long(self, t: torch.Tensor) -> torch.Tensor:
        # Always a copy: FFCV recycles its output buffers, and the loop keeps ``idx`` a while.
        return t.to(self.device, torch.long, non_blocking=True, copy=True)

    def labeled(self, x, y, idx, weak_done: bool) -> dict:
        x = x.to(self.device, non_blocking=True)
        x = x if weak_done else self.aug.weak(x)
        return {"x": self._norm(x), "y": self._long(y), "idx": self._long(idx)}

    def unlabeled(self, x_w, x_s, idx, weak_done: bool, strong_views: int = 1) -> dict:
        """``strong_views`` = 2 adds ``x_s2`` (SeMi): its own flip/crop on the torch path; on the FFCV
        path it shares the strong view's crop and draws its own RandAugment + Cutout."""
        x_w, x_s = x_w.to(self.device, non_blocking=True), x_s.to(self.device, non_blocking=True)
        raw = x_s
        if not weak_done:
            x_w, x_s = self.aug.weak(x_w), self.aug.weak(raw)
        out = {"x_w": self._norm(x_w), "x_s": self._norm(self.aug.strong(x_s)),
               "idx": self._long(idx)}
        if strong_views == 2:
            x_s2 = raw if weak_done else self.aug.weak(raw)
            out["x_s2"] = self._norm(self.aug.strong(x_s2))
        return out

    def eval(self, x, y, idx) -> dict:
        return {"x": self._norm(x), "y": self._long(y), "idx": self._long(idx)}


def data_path(root: Path, split: str, suffix: str) -> Path:
    path = root / f"{split}.{suffix}"
    if not path.is_file():
        raise UserError(f"missing prepared file {path} — run python -m daso_ray.prepare with "
                        f"--out {root}" + (" on a machine with FFCV" if suffix == "beton" else ""))
    return path
