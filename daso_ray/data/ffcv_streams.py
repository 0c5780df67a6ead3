"""The FFCV backend (``data.loader: ffcv``): the ``.beton`` files read through FFCV loaders.

Imports ffcv; :func:`daso_ray.data.streams.open_streams` loads it only when it is chosen. The
pipelines (:mod:`daso_ray.data.ffcv_ops`) flip and crop every train view themselves, each view
with its own draws, so nothing is left for the device but the strong ops.

FFCV sets torch's (intra-op) thread count: to 1 when ``ffcv`` is imported and to the loader's
``num_workers`` when a ``Loader`` is built and at each epoch (ffcv 1.0.2: ``pipeline/compiler.py``,
``loader/loader.py``). The count the process had before is put back after each of those, so the
model keeps every core it was given.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from daso_ray.config import DataConfig
from daso_ray.data import ffcv_ops  # called through the module: tests swap ffcv_loader
from daso_ray.data.augment import Augmenter
from daso_ray.data.loaders import PassSampler
from daso_ray.data.store import data_path

_EPOCHS: list = []  # FFCV epoch iterators (each runs a prefetch thread) started here


def _start_epoch(loader):
    """``iter(loader)``, kept referenced until its thread has fully ended.

    FFCV's epoch iterator is a daemon thread. Were the last reference to it dropped in that thread
    (its own exit), freeing its tensors there releases the GIL; if the interpreter is finalising at
    that moment the thread is killed inside C++ and the process aborts ("terminate called without
    an active exception", SIGABRT) after a run that otherwise succeeded. Holding a reference until
    ``is_alive()`` is false (FFCV's thread has then finished) moves every release to this thread.
    """
    _EPOCHS[:] = [e for e in _EPOCHS if e.is_alive()]
    epoch = iter(loader)
    _EPOCHS.append(epoch)
    return epoch


@atexit.register
def _stop_ffcv_threads() -> None:
    """Stop and join FFCV's prefetch threads before the interpreter finalises (see
    :func:`_start_epoch`); ``terminate_event`` is FFCV's own stop flag."""
    for epoch in _EPOCHS:
        epoch.terminate_event.set()
    for epoch in _EPOCHS:
        epoch.join(timeout=5)
    _EPOCHS.clear()


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


class FfcvStreams:
    """:class:`~daso_ray.data.streams.Streams` over the ``.beton`` files (FFCV loaders).

    ``threads``: the process's torch thread count from before ffcv was imported (see above).
    """

    def __init__(self, root: Path, data: DataConfig, mode: str, pad: int, device: torch.device,
                 threads: int):
        self.root, self.mode, self.pad, self.size = root, mode, pad, data.image_size
        self.device, self.threads = device, threads
        # FFCV's numba workers come from the config, capped at the cores there are — never from
        # torch's thread count, which FFCV itself lowers.
        self.workers = max(1, min(data.num_workers, os.cpu_count() or 1))
        self._keep_threads()

    def _keep_threads(self, result=None):
        """Put back the thread count this process had; returns ``result`` (for chaining)."""
        torch.set_num_threads(self.threads)
        return result

    def _loader(self, kind: str, split: str, **kw):
        path = str(data_path(self.root, split, "beton"))
        loader = ffcv_ops.ffcv_loader(path, mode=self.mode, kind=kind, pad=self.pad,
                                      num_workers=self.workers, size=self.size, **kw)
        return self._keep_threads(loader)

    def crop(self, augmenter: Augmenter):
        return _same  # the pipelines flipped and cropped every view already

    def _batches(self, kind: str, sampler: PassSampler, split: str, strong_views: int = 1):
        # The sampler's batches, as on the torch path (ffcv_ops.PassOrder): sets smaller than
        # a batch fill every batch, ranks read their shares, and ``consumed`` checkpoints.
        loader = self._loader(kind, split, batch_size=0, indices=None, seed=0, sampler=sampler,
                              device=self.device, strong_views=strong_views)
        order = loader.traversal_order
        while True:
            order.start, before = sampler.consumed, sampler.consumed
            for batch in self._keep_threads(_start_epoch(loader)):  # epochs reset the count
                sampler.consumed += 1
                yield batch
            if sampler.consumed == before:  # never spin on empty epochs (a silent hang)
                raise RuntimeError(f"the FFCV {kind} stream yielded an empty epoch")

    def labeled(self, sampler: PassSampler, split: str) -> Iterator[tuple]:
        return self._batches("labeled", sampler, split)

    def unlabeled(self, sampler: PassSampler, split: str, views: int) -> Iterator[tuple]:
        for x_w, idx, *strong in self._batches("unlabeled", sampler, split, views - 1):
            yield [x_w, *strong], idx

    def eval(self, split: str, rows: np.ndarray, batch: int):
        # Not distributed: FFCV would shard again and pad the last batch with duplicates.
        loader = self._loader("test", split, batch_size=batch, indices=rows, seed=0, augment=False,
                              distributed=False)
        return self._keep_threads(_start_epoch(loader))
