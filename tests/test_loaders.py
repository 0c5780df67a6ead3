"""Batch contract, same-sample views, sampler passes/resume/DDP shards (torch backend)."""

from __future__ import annotations

import numpy as np
import torch

from daso_ray.config import DataConfig
from daso_ray.data.augment import Augmenter, normalize
from daso_ray.data.loaders import STATS, PassSampler
from daso_ray.data.module import TrainData
from daso_ray.data.store import Store


def _cfg(root, **kw):
    base = dict(dataset="digits", root=str(root), loader="torch", n_max_l=30, n_max_u=100,
                imb_ratio_l=10, imb_ratio_u=10, num_valid=100, num_workers=1, batch_size=8, mu=2)
    return DataConfig(**{**base, **kw})


def test_batch_contract(digits_root):
    td = TrainData(_cfg(digits_root), seed=0, device="cpu")
    b, u = next(td.labeled()), next(td.unlabeled())
    assert set(b) == {"x", "y", "idx"} and set(u) == {"x_w", "x_s", "idx"}  # no label in U
    assert b["x"].shape == (8, 3, 32, 32) and b["x"].dtype == torch.float32
    assert u["x_w"].shape == u["x_s"].shape == (16, 3, 32, 32)
    assert set(b["idx"].tolist()) <= set(td.split.labeled.tolist())
    assert set(u["idx"].tolist()) <= set(td.split.unlabeled.tolist())
    store = Store(digits_root / "train.arrow")
    assert torch.equal(b["y"], torch.from_numpy(store.labels[b["idx"].numpy()]))


def test_weak_and_strong_views_come_from_the_same_sample(digits_root):
    td = TrainData(_cfg(digits_root), seed=3, device="cpu")
    u = next(td.unlabeled())
    # Replay the augmenter on the source images named by idx: both views must be reproduced.
    raw = torch.from_numpy(Store(digits_root / "train.arrow").pixels(u["idx"].numpy())).permute(0, 3, 1, 2)
    aug = Augmenter(3 * 7919, "cpu", td.pad, 16)
    mean, std = STATS["digits"]
    w, s = aug.weak(raw), aug.weak(raw)
    assert torch.equal(normalize(w, mean, std), u["x_w"])
    assert torch.equal(normalize(aug.strong(s), mean, std), u["x_s"])
    assert not torch.equal(u["x_w"], u["x_s"])


def test_second_strong_view_draws_its_own_crop(digits_root):
    # x_s2 (SeMi) is drawn as x_s is: its own flip + crop, then its own strong ops.
    td = TrainData(_cfg(digits_root), seed=3, device="cpu")
    u = next(td.unlabeled(strong_views=2))
    raw = torch.from_numpy(Store(digits_root / "train.arrow").pixels(u["idx"].numpy())).permute(0, 3, 1, 2)
    aug = Augmenter(3 * 7919, "cpu", td.pad, 16)
    mean, std = STATS["digits"]
    w = aug.weak(raw)
    s = aug.strong(aug.weak(raw))
    s2 = aug.strong(aug.weak(raw))
    assert torch.equal(normalize(w, mean, std), u["x_w"])
    assert torch.equal(normalize(s, mean, std), u["x_s"])
    assert torch.equal(normalize(s2, mean, std), u["x_s2"])


def test_eval_covers_each_sample_once(digits_root):
    td = TrainData(_cfg(digits_root), seed=0, device="cpu")
    test_idx = torch.cat([b["idx"] for b in td.eval_batches("test")])
    assert sorted(test_idx.tolist()) == list(range(300))
    valid_idx = torch.cat([b["idx"] for b in td.eval_batches("valid")])
    assert sorted(valid_idx.tolist()) == sorted(td.split.valid.tolist())


def test_sampler_passes_without_replacement_and_resume():
    idx = np.arange(100, 137)  # 37 samples, batch 8: passes straddle batches
    s = PassSampler(idx, 8, seed=1)
    it = iter(s)
    stream = np.concatenate([next(it) for _ in range(37)])  # 296 = 8 passes exactly
    for p in range(8):
        assert sorted(stream[p * 37:(p + 1) * 37].tolist()) == idx.tolist()
    s2 = PassSampler(idx, 8, seed=1)
    s2.load_state_dict({"consumed": 10})
    np.testing.assert_array_equal(next(iter(s2)), stream[80:88])


def test_sampler_ddp_ranks_partition_the_global_batch():
    idx = np.arange(50)
    full = next(iter(PassSampler(idx, 8, seed=2)))
    shards = [next(iter(PassSampler(idx, 8, seed=2, rank=r, world_size=2))) for r in range(2)]
    np.testing.assert_array_equal(np.concatenate(shards), full)


def test_resume_continues_stream_exactly(digits_root):
    a = TrainData(_cfg(digits_root), seed=5, device="cpu")
    la, ua = a.labeled(), a.unlabeled()
    for _ in range(3):
        next(la), next(ua)
    state = a.state_dict()
    expect_l, expect_u = next(la), next(ua)
    b = TrainData(_cfg(digits_root), seed=5, device="cpu")
    b.load_state_dict(state)
    got_l, got_u = next(b.labeled()), next(b.unlabeled())
    assert torch.equal(got_l["x"], expect_l["x"]) and torch.equal(got_u["x_s"], expect_u["x_s"])
