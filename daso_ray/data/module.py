"""Everything a training run reads: the split (manifest), the train streams and the eval sets.

``TrainData(cfg.data, seed, device)`` checks the prepared folder against the config, builds the
long-tail split from the stored labels, records it (atomically) under ``<root>/splits/`` and serves
the batch contract of :mod:`daso_ray.data.loaders` from the backend ``data.loader`` names
(:mod:`daso_ray.data.streams`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from daso_ray.config import DataConfig
from daso_ray.data.augment import Augmenter
from daso_ray.data.ffcv_io import read_manifest
from daso_ray.data.loaders import PassSampler, Views, fill_eval_set
from daso_ray.data.longtail import Split, make_split, split_spec
from daso_ray.data.store import Stores
from daso_ray.data.streams import open_streams
from daso_ray.errors import UserError
from daso_ray.files import atomic_write_text

EVAL_BATCH = 256


def build_split(data: DataConfig, manifest: dict, stores: Stores) -> Split:
    """The split for ``data`` over the prepared files (their labels read from ``stores``),
    written to ``<stores.root>/splits/<digest>.json``."""
    train = stores("train").labels
    unl = None
    if "unlabeled" in manifest["splits"]:
        unl = stores("unlabeled").labels
        n_in = manifest.get("extra", {}).get("unlabeled_in_count")
        if data.unlabeled_pool == "in" and n_in is not None:
            unl = unl[:n_in]  # Semi-Aves: U_in is stored first, then U_out
    split = make_split(train, split_spec(data, manifest["num_classes"]), unl)
    # scenario / gamma_l / gamma_u come from the split: what it applied, not what was asked.
    record = {**split.record(), "dataset": data.dataset, "source_checksum": manifest["checksum"],
              "seed": data.seed_split}
    text = json.dumps(record)
    out = stores.root / "splits" / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
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

    ``distributed`` is accepted for the engine's call and changes nothing: every stream reads
    this rank's share through its :class:`PassSampler`, and eval sets are split by rank here.
    """

    def __init__(self, data: DataConfig, seed: int, device, rank: int = 0, world_size: int = 1,
                 distributed: bool = False):
        self.cfg, self.root, self.device = data, Path(data.root), torch.device(device)
        self.manifest = read_manifest(self.root, verify=True)
        if self.manifest["dataset"] != data.dataset:
            raise UserError(f"data.dataset: '{data.dataset}' but {self.root} holds "
                            f"'{self.manifest['dataset']}' — fix data.root or data.dataset")
        self.num_classes = self.manifest["num_classes"]
        check_holdout(data.num_valid, self.num_classes)
        self.stores = Stores(self.root)  # opened once: the split, the torch backend, hidden labels
        self.split = build_split(data, self.manifest, self.stores)
        check_holdout(data.num_valid, self.num_classes, self.split.counts["valid"])
        self.mode = self.manifest["mode"]
        side = data.image_size if self.mode == "jpeg" else self.manifest["image_shape"][0]
        self.pad = max(1, int(round(side * 0.125)))  # 4 px at 32 px (int(32 * 0.125)), 12 at 96
        self.streams = open_streams(data, self.stores, self.mode, self.pad, self.device)
        # The DASO paper gives no Semi-Aves strong view: keep Cutout's 16/32 side ratio (112 px at 224).
        cutout = 16 if self.mode == "raw" else side // 2
        self.augmenter = Augmenter(seed * 7919 + rank, device, self.pad, cutout)
        self.views = Views(data.dataset, device, self.augmenter, data.image_size,
                           self.streams.crop(self.augmenter))
        self.rank, self.world = rank, world_size
        self.samplers = {
            "labeled": PassSampler(self.split.labeled, data.batch_size, seed, rank, world_size),
            "unlabeled": PassSampler(self.split.unlabeled, data.batch_size * data.mu, seed + 1,
                                     rank, world_size)}
        self._eval: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    # -- train streams ------------------------------------------------------------------------
    def labeled(self) -> Iterator[dict]:
        for x, y, idx in self.streams.labeled(self.samplers["labeled"], "train"):
            yield self.views.labeled(x, y, idx)

    def unlabeled(self, strong_views: int = 1) -> Iterator[dict]:
        stream = self.streams.unlabeled(self.samplers["unlabeled"], self.split.unlabeled_source,
                                        1 + strong_views)
        for views, idx in stream:
            yield self.views.unlabeled(views, idx)

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
        if which == "test":
            split, every = "test", np.arange(self.manifest["splits"]["test"]["count"])
        else:
            split, every = "train", np.asarray(self.split.valid)
        mine = every[self.rank::self.world]
        size = self.cfg.image_size
        batches = self.streams.eval(split, mine, EVAL_BATCH) if len(mine) else []
        return fill_eval_set(batches, len(mine), size, self.device)

    def unlabeled_labels(self) -> np.ndarray:
        """Hidden true labels of U (for pseudo-label diagnostics only; -1 = unknown)."""
        return self.stores(self.split.unlabeled_source).labels

    # -- checkpoint ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"samplers": {k: s.state_dict() for k, s in self.samplers.items()},
                "augmenter": self.augmenter.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        for k, s in self.samplers.items():
            s.load_state_dict(state["samplers"][k])
        self.augmenter.load_state_dict(state["augmenter"])
