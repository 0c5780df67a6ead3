"""Split counts for every benchmark of the DASO paper (Oh et al., CVPR 2022, Sec. 4.1, Tables 1-2),
and equality with the reference procedure (ytaek-oh/daso ``lib/dataset``)."""

from __future__ import annotations

import numpy as np
import pytest

from daso_ray.data.longtail import SplitSpec, class_counts, make_split

C10_L = {(500, 100): [500, 299, 179, 107, 64, 38, 23, 13, 8, 5],
         (1500, 100): [1500, 899, 539, 323, 193, 116, 69, 41, 25, 15],
         (500, 150): [500, 286, 164, 94, 53, 30, 17, 10, 5, 3],
         (1500, 150): [1500, 859, 492, 282, 161, 92, 53, 30, 17, 10]}
C10_U = {(4000, 100): [4000, 2397, 1437, 861, 516, 309, 185, 111, 66, 40],
         (3000, 100): [3000, 1798, 1078, 646, 387, 232, 139, 83, 50, 30],
         (4000, 150): [4000, 2292, 1313, 752, 431, 247, 141, 81, 46, 26],
         (3000, 150): [3000, 1719, 985, 564, 323, 185, 106, 60, 34, 20]}
C100 = {(50, 10): (50, 5, 1911), (150, 10): (150, 15, 5835), (50, 20): (50, 2, 1545),
        (150, 20): (150, 7, 4741), (400, 10): (400, 40, 15651), (300, 10): (300, 30, 11720),
        (400, 20): (400, 20, 12719), (300, 20): (300, 15, 9527)}
STL = {(150, 10): [150, 116, 89, 69, 53, 41, 32, 25, 19, 15],
       (450, 10): [450, 348, 269, 208, 161, 125, 96, 75, 58, 45],
       (150, 20): [150, 107, 77, 55, 39, 28, 20, 14, 10, 7],
       (450, 20): [450, 322, 231, 165, 118, 85, 61, 43, 31, 22]}


def test_class_counts_contract():
    assert class_counts(500, 100, 10) == [500, 299, 179, 107, 64, 38, 23, 13, 8, 5]
    assert class_counts(500, 100, 10, reverse=True) == [5, 8, 13, 23, 38, 64, 107, 179, 299, 500]
    assert class_counts(50, 20, 100)[-1] == 2  # int(2.5) truncates; rounding would give 3
    assert class_counts(300, 1, 10) == [300] * 10


@pytest.mark.parametrize("table", [C10_L, C10_U, STL])
def test_profile_tables(table):
    for (n, g), row in table.items():
        assert class_counts(n, g, 10) == row


def test_c100_profile_head_tail_total():
    for (n, g), (head, tail, total) in C100.items():
        c = class_counts(n, g, 100)
        assert (c[0], c[-1], sum(c)) == (head, tail, total)


def _cifar_labels(k: int, per_class: int) -> np.ndarray:
    return np.random.default_rng(0).permutation(np.repeat(np.arange(k), per_class))


def _spec(k, n_l, n_u, g_l, g_u, scenario, num_valid=5000, seed=0):
    return SplitSpec(k, num_valid, n_l, n_u, g_l, g_u, scenario, seed)


@pytest.mark.parametrize("n_l,n_u", [(500, 4000), (1500, 3000)])
@pytest.mark.parametrize("gamma", [100, 150])
@pytest.mark.parametrize("scenario", ["consistent", "uniform", "reversed"])
def test_cifar10_splits(n_l, n_u, gamma, scenario):
    labels = _cifar_labels(10, 5000)
    g_u = {"consistent": gamma, "uniform": 1, "reversed": 100}[scenario]
    s = make_split(labels, _spec(10, n_l, n_u, gamma, g_u, scenario))
    assert s.counts["labeled"] == C10_L[(n_l, gamma)]
    expect_u = {"consistent": C10_U.get((n_u, gamma)), "uniform": [n_u] * 10,
                "reversed": C10_U[(n_u, 100)][::-1]}[scenario]
    assert s.counts["unlabeled"] == expect_u
    assert s.counts["valid"] == [500] * 10
    parts = [set(s.labeled.tolist()), set(s.unlabeled.tolist()), set(s.valid.tolist())]
    assert sum(map(len, parts)) == len(set.union(*parts))  # disjoint


@pytest.mark.parametrize("n_l,n_u", [(50, 400), (150, 300)])
@pytest.mark.parametrize("gamma", [10, 20])
def test_cifar100_splits(n_l, n_u, gamma):
    s = make_split(_cifar_labels(100, 500), _spec(100, n_l, n_u, gamma, gamma, "consistent"))
    assert sum(s.counts["labeled"]) == C100[(n_l, gamma)][2]
    assert sum(s.counts["unlabeled"]) == C100[(n_u, gamma)][2]
    assert s.counts["valid"] == [50] * 100


@pytest.mark.parametrize("n_l,gamma", list(STL))
def test_stl10_splits(n_l, gamma):
    train = _cifar_labels(10, 500)
    unl = np.full(1000, -1)
    s = make_split(train, _spec(10, n_l, None, gamma, 1, "uniform", num_valid=500), unl)
    assert s.counts["labeled"] == STL[(n_l, gamma)]
    assert s.unlabeled_source == "unlabeled" and len(s.unlabeled) == 1000
    assert s.counts["unlabeled_unknown"] == 1000


# --- the reference procedure (ytaek-oh/daso lib/dataset/utils.py), composed over datasets -------

def _ref_take(ds, inds):
    return {"images": ds["images"][inds], "labels": ds["labels"][inds]}


def _ref_split(labels, n_l, n_u, g_l, g_u, reverse, num_valid, seed):
    ds = {"images": np.arange(len(labels)), "labels": labels}
    k = len(np.unique(labels))
    rng = np.random.RandomState(seed)
    tr, va = [], []
    for c in range(k):
        i = np.where(ds["labels"] == c)[0]
        rng.shuffle(i)
        tr.extend(i[num_valid // k:])
        va.extend(i[:num_valid // k])
    valid, ds = _ref_take(ds, va), _ref_take(ds, tr)
    rng = np.random.RandomState(seed)
    li, ui = [], []
    for c in range(k):
        i = np.where(ds["labels"] == c)[0]
        rng.shuffle(i)
        li.extend(i[:n_l])
        ui.extend(i[n_l:n_l + n_u])
    lab, unl = _ref_take(ds, li), _ref_take(ds, ui)

    def imbalance(d, n, g, order):
        rng = np.random.RandomState(seed)
        keep = []
        for rank, c in enumerate(order):
            i = np.where(d["labels"] == c)[0]
            rng.shuffle(i)
            keep.extend(i[:int(n * ((1. / g) ** (rank / (k - 1.0))))])
        return _ref_take(d, keep)

    lab = imbalance(lab, n_l, g_l, list(range(k)))
    if g_u > 1:
        unl = imbalance(unl, n_u, g_u, list(range(k))[::-1] if reverse else list(range(k)))
    return lab["images"], unl["images"], valid["images"]


@pytest.mark.parametrize("scenario,g_u", [("consistent", 100), ("reversed", 100), ("uniform", 1)])
@pytest.mark.parametrize("seed", [0, 5491305])
def test_identical_to_reference_procedure(scenario, g_u, seed):
    labels = _cifar_labels(10, 600)
    s = make_split(labels, _spec(10, 150, 300, 100, g_u, scenario, num_valid=1000, seed=seed))
    ref = _ref_split(labels, 150, 300, 100, g_u, scenario == "reversed", 1000, seed)
    for ours, theirs in zip((s.labeled, s.unlabeled, s.valid), ref, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_seed_changes_subsets_and_is_deterministic():
    labels = _cifar_labels(10, 600)
    a, b, c = (make_split(labels, _spec(10, 150, 300, 10, 10, "consistent", 1000, seed))
               for seed in (0, 0, 1))
    np.testing.assert_array_equal(a.labeled, b.labeled)
    assert not np.array_equal(a.labeled, c.labeled)
