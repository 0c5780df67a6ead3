"""Everything a training run reads: the split (manifest), the train streams and the eval sets.

``TrainData(cfg.data, seed, device)`` checks the prepared folder against the config, builds the
long-tail split from the stored labels, records it (atomically) under ``<root>/splits/`` and serves
the batch contract of :mod:`daso_ray.data.loaders` from FFCV or the torch fallback.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from daso_ray.config import DataConfig
from daso_ray.data.augment import Augmenter
from daso_ray.data.ffcv_io import atomic_write_text, ffcv_available, read_manifest
from daso_ray.data.loaders import (
    PassSampler,
    Views,
    data_path,
    fill_eval_set,
    torch_eval_loader,
    torch_stream,
)
from daso_ray.data.longtail import Split, make_split, split_spec
from daso_ray.data.store import Store
from daso_ray.errors import UserError

EVAL_BATCH = 256
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


def build_split(data: DataConfig, manifest: dict, root: Path) -> Split:
    """The split for ``data`` over the prepared files, written to ``root/splits/<digest>.json``."""
    train = Store(data_path(root, "train", "arrow")).labels
    unl = None
    if "unlabeled" in manifest["splits"]:
        unl = Store(data_path(root, "unlabeled", "arrow")).labels
        n_in = manifest.get("extra", {}).get("unlabeled_in_count")
        if data.unlabeled_pool == "in" and n_in is not None:
            unl = unl[:n_in]  # Semi-Aves: U_in is stored first, then U_out
    split = make_split(train, split_spec(data, manifest["num_classes"]), unl)
    # scenario / gamma_l / gamma_u come from the split: what it applied, not what was asked.
    record = {**split.record(), "dataset": data.dataset, "source_checksum": manifest["checksum"],
              "seed": data.seed_split}
    text = json.dumps(record)
    out = root / "splits" / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    if not out.is_file():
        out.parent.mkdir(exist_ok=True)
        atomic_write_text(out, text)
    split.path = out
    return split


def check_holdout(num_valid: int, num_classes: int, per_class: list[int] | None = None) -> None:
    """A validation hold-out asked for (``num_valid`` > 0) must hold out every class.

    It is ``num_valid // K`` images per class, so ``num_valid`` < K holds out none, and a class
    with no image left to hold out (``per_class``: the split's valid counts) is missing from every
    valid/* metric — both silently, and a search ranking on valid/* then compares NaNs.
    """
    if num_valid <= 0:
        return
    if num_valid < num_classes:
        raise UserError(f"data.num_valid: {num_valid} holds out 0 images per class of the "
                        f"{num_classes} classes — set data.num_valid >= {num_classes} (or 0 for "
                        "no validation hold-out)")
    empty = [c for c, n in enumerate(per_class or []) if n == 0]
    if empty:
        raise UserError(f"data.num_valid: class {empty[0]} has no image to hold out for "
                        f"validation ({len(empty)} such classes) — add images of it, or set "
                        "data.num_valid: 0")


class TrainData:
    """Train streams and eval sets for one worker (``rank`` of ``world_size``).

    FFCV sets torch's (intra-op) thread count: to 1 when ``ffcv`` is imported and to the loader's
    ``num_workers`` when a ``Loader`` is built and at each epoch (ffcv 1.0.2: ``pipeline/compiler.py``,
    ``loader/loader.py``). The count the process had when this object was built is put back after
    each of those, so the model keeps every core it was given.
    """

    def __init__(self, data: DataConfig, seed: int, device, rank: int = 0, world_size: int = 1,
                 distributed: bool = False):
        self.threads = torch.get_num_threads()  # first: before anything here imports ffcv
        self.cfg, self.root = data, Path(data.root)
        self.manifest = read_manifest(self.root, verify=True)
        if self.manifest["dataset"] != data.dataset:
            raise UserError(f"data.dataset: '{data.dataset}' but {self.root} holds "
                            f"'{self.manifest['dataset']}' — fix data.root or data.dataset")
        self.num_classes = self.manifest["num_classes"]
        check_holdout(data.num_valid, self.num_classes)
        self.split = build_split(data, self.manifest, self.root)
        check_holdout(data.num_valid, self.num_classes, self.split.counts["valid"])
        self.mode = self.manifest["mode"]
        if data.loader == "ffcv" and not self._keep_threads(ffcv_available()):
            raise UserError("data.loader: ffcv is not installed here; run `make setup` or set "
                            "data.loader: torch")
        side = data.image_size if self.mode == "jpeg" else self.manifest["image_shape"][0]
        self.pad = max(1, int(round(side * 0.125)))  # 4 px at 32 px (int(32 * 0.125)), 12 at 96
        cutout = 16 if self.mode == "raw" else side // 2  # 112 px at 224 (specs/daso.md §3.5)
        self.augmenter = Augmenter(seed * 7919 + rank, device, self.pad, cutout)
        self.views = Views(data.dataset, device, self.augmenter, data.image_size)
        self.rank, self.world, self.distributed = rank, world_size, distributed
        self.samplers = {
            "labeled": PassSampler(self.split.labeled, data.batch_size, seed, rank, world_size),
            "unlabeled": PassSampler(self.split.unlabeled, data.batch_size * data.mu, seed + 1,
                                     rank, world_size)}
        self._eval: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _keep_threads(self, result=None):
        """Put back the thread count this process had; returns ``result`` (for chaining)."""
        torch.set_num_threads(self.threads)
        return result

    # -- train streams ------------------------------------------------------------------------
    def _ffcv(self, kind: str, split: str, indices, batch: int, seed: int, augment=True,
              distributed: bool | None = None, sampler: PassSampler | None = None):
        from daso_ray.data.ffcv_ops import ffcv_loader

        # FFCV's numba workers come from the config, capped at the cores there are — never from
        # torch's thread count, which FFCV itself lowers.
        workers = max(1, min(self.cfg.num_workers, os.cpu_count() or 1))
        train = kind != "test"
        loader = ffcv_loader(str(data_path(self.root, split, "beton")), mode=self.mode, kind=kind,
                             batch_size=batch, indices=indices, seed=seed, pad=self.pad,
                             num_workers=workers, size=self.cfg.image_size, augment=augment,
                             distributed=self.distributed if distributed is None else distributed,
                             device=self.views.device if train else None, sampler=sampler)
        return self._keep_threads(loader)

    def _raw_stream(self, name: str, split: str) -> Iterator:
        sampler = self.samplers[name]
        if self.cfg.loader == "ffcv":
            # The sampler's batches, as on the torch path (ffcv_ops.PassOrder): sets smaller than
            # a batch fill every batch, ranks read their shares, and ``consumed`` checkpoints.
            loader = self._ffcv(name, split, None, 0, 0, sampler=sampler)
            order = loader.traversal_order
            while True:
                order.start, before = sampler.consumed, sampler.consumed
                for batch in self._keep_threads(_start_epoch(loader)):  # epochs reset the count
                    sampler.consumed += 1
                    yield batch
                if sampler.consumed == before:  # never spin on empty epochs (a silent hang)
                    raise RuntimeError(f"the FFCV {name} stream yielded an empty epoch")
        else:
            pin = self.views.device.type == "cuda"
            for batch in torch_stream(Store(data_path(self.root, split, "arrow")), sampler,
                                       self.cfg.num_workers, self.cfg.image_size, pin):
                sampler.consumed += 1
                yield batch

    def labeled(self) -> Iterator[dict]:
        for x, y, idx in self._raw_stream("labeled", "train"):
            yield self.views.labeled(x, y, idx, weak_done=self.cfg.loader == "ffcv")

    def unlabeled(self, strong_views: int = 1) -> Iterator[dict]:
        src, n = self.split.unlabeled_source, strong_views
        if self.cfg.loader == "ffcv":
            for x_w, idx, x_s in self._raw_stream("unlabeled", src):
                yield self.views.unlabeled(x_w, x_s, idx, weak_done=True, strong_views=n)
        else:
            for x, _labels, idx in self._raw_stream("unlabeled", src):  # labels dropped here
                yield self.views.unlabeled(x, x, idx, weak_done=False, strong_views=n)

    # -- eval sets ----------------------------------------------------------------------------
    def eval_batches(self, which: str = "test") -> Iterator[dict]:
        """``test`` or ``valid``: this rank's share, in order, unaugmented, last partial batch kept.

        Rank r of W scores rows r, r + W, ... of the set, so the W ranks score every image exactly
        once (summing their confusion matrices gives the whole set's).
        """
        x, y, idx = self.eval_set(which)
        for s in range(0, len(y), EVAL_BATCH):
            yield self.views.eval(x[s:s + EVAL_BATCH], y[s:s + EVAL_BATCH], idx[s:s + EVAL_BATCH])

    def eval_set(self, which: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's share of ``which`` as uint8 [n, 3, S, S], labels [n], indices [n] (long),
        read on first use and kept for the run (on the device when it fits, see ``eval_storage``)."""
        if which not in self._eval:
            self._eval[which] = self._read_eval(which)
        return self._eval[which]

    def _read_eval(self, which: str):
        split = "test" if which == "test" else "train"
        if which == "test":
            every = np.arange(self.manifest["splits"]["test"]["count"])
        else:
            every = np.asarray(self.split.valid)
        mine = every[self.rank::self.world]
        device, size = self.views.device, self.cfg.image_size
        if len(mine) == 0:
            return fill_eval_set([], 0, size, device)
        if self.cfg.loader == "ffcv":
            # Not distributed: FFCV would shard again and pad the last batch with duplicates.
            loader = self._ffcv("test", split, mine, EVAL_BATCH, 0, augment=False, distributed=False)
            return fill_eval_set(self._keep_threads(_start_epoch(loader)), len(mine), size, device)
        workers = self.cfg.num_workers if self.mode == "jpeg" else 0  # decoding is the only cost
        store = Store(data_path(self.root, split, "arrow"))
        return fill_eval_set(torch_eval_loader(store, mine, EVAL_BATCH, workers, size),
                             len(mine), size, device)

    def unlabeled_labels(self) -> np.ndarray:
        """Hidden true labels of U (for pseudo-label diagnostics only; -1 = unknown)."""
        return Store(data_path(self.root, self.split.unlabeled_source, "arrow")).labels

    # -- checkpoint ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"samplers": {k: s.state_dict() for k, s in self.samplers.items()},
                "augmenter": self.augmenter.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        for k, s in self.samplers.items():
            s.load_state_dict(state["samplers"][k])
        self.augmenter.load_state_dict(state["augmenter"])
