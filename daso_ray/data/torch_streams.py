"""The torch backend (``data.loader: torch``): the Arrow stores read through torch DataLoaders.

It runs wherever torch does. Train views leave it whole (uint8, as stored; JPEG images centre
cropped to ``image_size``); their flip + crop is drawn on the device by the ``Augmenter``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from daso_ray.config import DataConfig
from daso_ray.data.augment import Augmenter
from daso_ray.data.loaders import PassSampler
from daso_ray.data.store import Store, Stores


class StoreBatches(torch.utils.data.Dataset):
    """Batch-level dataset: one ``__getitems__`` per batch of indices."""

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


class TorchStreams:
    """:class:`~daso_ray.data.streams.Streams` over the Arrow stores (torch DataLoaders)."""

    def __init__(self, stores: Stores, data: DataConfig, mode: str, device: torch.device):
        self.stores, self.workers, self.size = stores, data.num_workers, data.image_size
        self.pin = device.type == "cuda"
        self.eval_workers = data.num_workers if mode == "jpeg" else 0  # decoding is the only cost

    def crop(self, augmenter: Augmenter):
        return augmenter.weak  # views leave this backend whole

    def _batches(self, sampler: PassSampler, split: str) -> Iterator[tuple]:
        for batch in torch_stream(self.stores(split), sampler, self.workers, self.size, self.pin):
            sampler.consumed += 1
            yield batch

    def labeled(self, sampler: PassSampler, split: str) -> Iterator[tuple]:
        return self._batches(sampler, split)

    def unlabeled(self, sampler: PassSampler, split: str, views: int) -> Iterator[tuple]:
        for x, _labels, idx in self._batches(sampler, split):  # labels dropped here
            yield [x] * views, idx  # one batch: each view draws its own crop on the device

    def eval(self, split: str, rows: np.ndarray, batch: int):
        return torch_eval_loader(self.stores(split), rows, batch, self.eval_workers, self.size)
