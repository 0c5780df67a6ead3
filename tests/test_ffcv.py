"""FFCV: byte-exact .beton round trip and the weak/strong views (kept few: JIT compile cost)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import write_cifar

pytest.importorskip("ffcv")
pytestmark = [pytest.mark.ffcv, pytest.mark.slow]


def _weak_candidates(img: np.ndarray, pad: int = 4) -> list[np.ndarray]:
    """All flip x reflect-pad crops of one HWC image."""
    out = []
    for flip in (False, True):
        src = img[:, ::-1] if flip else img
        padded = np.pad(src, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
        out += [padded[oy:oy + 32, ox:ox + 32] for oy in range(2 * pad + 1) for ox in range(2 * pad + 1)]
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from daso_ray.data.catalog import load_source
    from daso_ray.data.ffcv_io import prepare_source

    tmp = tmp_path_factory.mktemp("ffcv")
    folder, images, labels = write_cifar(tmp, 10, per_class_train=4)
    prepare_source(load_source("cifar10", folder), tmp / "out", with_ffcv=True, workers=1)
    return tmp / "out", images, labels


def test_beton_round_trip_is_byte_exact(prepared):
    from daso_ray.data.ffcv_ops import ffcv_loader

    root, images, labels = prepared
    loader = ffcv_loader(str(root / "train.beton"), mode="raw", kind="test", batch_size=16,
                         indices=None, num_workers=1, seed=0, size=32, pad=4, augment=False)
    xs, ys, ids = zip(*[(x.clone(), y.clone(), i.clone()) for x, y, i in loader], strict=True)
    x = torch.cat(xs).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(torch.cat(ys).numpy(), labels)
    np.testing.assert_array_equal(torch.cat(ids).numpy(), np.arange(len(images)))


def test_unlabeled_views_same_sample_and_differ(prepared):
    from daso_ray.data.ffcv_ops import ffcv_loader

    root, images, _ = prepared
    subset = np.arange(0, 40, 2)
    loader = ffcv_loader(str(root / "train.beton"), mode="raw", kind="unlabeled", batch_size=10,
                         indices=subset, num_workers=1, seed=1, size=32, pad=4)
    differ = 0
    for x_w, idx, x_s in loader:
        for w, s, i in zip(x_w.permute(0, 2, 3, 1).numpy(), x_s.permute(0, 2, 3, 1).numpy(),
                           idx.numpy(), strict=True):
            assert i in subset
            cands = _weak_candidates(images[i])
            assert any(np.array_equal(w, c) for c in cands)  # weak view of sample i
            assert any(np.array_equal(s, c) for c in cands)  # strong branch: same sample i
            differ += not np.array_equal(w, s)
    assert differ >= 15  # independent decoders draw independent crops


def test_second_strong_view_draws_its_own_crop(prepared):
    from daso_ray.data.ffcv_ops import ffcv_loader

    root, images, _ = prepared
    loader = ffcv_loader(str(root / "train.beton"), mode="raw", kind="unlabeled", batch_size=10,
                         indices=np.arange(20), num_workers=1, seed=1, size=32, pad=4,
                         strong_views=2)
    differ = 0
    for _x_w, idx, x_s, x_s2 in loader:
        for s, s2, i in zip(x_s.permute(0, 2, 3, 1).numpy(), x_s2.permute(0, 2, 3, 1).numpy(),
                            idx.numpy(), strict=True):
            assert any(np.array_equal(s2, c) for c in _weak_candidates(images[i]))  # sample i
            differ += not np.array_equal(s, s2)
    assert differ >= 15  # not x_s's crop: one of its own


def test_trainddata_ffcv_backend_contract(prepared):
    from daso_ray.config import DataConfig
    from daso_ray.data.module import TrainData

    root, _, _ = prepared
    cfg = DataConfig(dataset="cifar10", root=str(root), loader="ffcv", n_max_l=3, n_max_u=1,
                     imb_ratio_l=3, imb_ratio_u=1, scenario="uniform", num_valid=0, num_workers=1,
                     batch_size=4, mu=1)
    td = TrainData(cfg, seed=0, device="cpu")
    b, u = next(td.labeled()), next(td.unlabeled())
    assert b["x"].shape == (4, 3, 32, 32) and set(u) == {"x_w", "x_s", "idx"}
    assert not torch.equal(u["x_w"], u["x_s"])
    assert sum(len(e["y"]) for e in td.eval_batches("test")) == 20
