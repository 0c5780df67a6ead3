"""Long-tailed labeled/unlabeled splits: pure numpy, seed -> indices (the CISSL benchmarks
of DASO, Oh et al., CVPR 2022, Sec. 4.1 and App. C.1).

Reproduces the construction of ytaek-oh/daso (``lib/dataset/cifar10.py``, ``cifar100.py``,
``stl10.py``, ``utils.py``) bit for bit, so a seed gives the reference subsets: every step makes its
own fresh ``numpy.random.RandomState(seed)`` and writes its output in class (rank) order, and the
next step indexes into that reordered array. Here every step maps *positions in the source split* so the
result is a set of index arrays into the prepared ``.beton`` files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from daso_ray.errors import UserError


def class_counts(n_max: int, gamma: float, num_classes: int, reverse: bool = False) -> list[int]:
    """Per-class sizes of the exponential profile N_k = N_1 · γ^(-k/(K-1)) (DASO App. C.1, after
    Cui et al., CVPR 2019), in float64 and truncated toward zero as ytaek-oh/daso
    ``lib/dataset/utils.py`` computes it (rounding would change tail sizes).

    ``count(r) = int(n_max * ((1.0 / gamma) ** (r / (K - 1.0))))`` for rank r; with
    ``reverse`` class K-1 gets rank 0. gamma <= 1 gives ``n_max`` for every class.
    E.g. ``class_counts(500, 100, 10) == [500, 299, 179, 107, 64, 38, 23, 13, 8, 5]``.
    """
    if gamma <= 1 or num_classes == 1:
        return [int(n_max)] * num_classes
    counts = [int(n_max * ((1.0 / gamma) ** (r / (num_classes - 1.0)))) for r in range(num_classes)]
    return counts[::-1] if reverse else counts


def _per_class(labels: np.ndarray, positions: np.ndarray, cls: int) -> np.ndarray:
    return positions[np.where(labels[positions] == cls)[0]]


def split_trainval(labels: np.ndarray, positions: np.ndarray, num_valid: int, num_classes: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced validation hold-out (reference ``split_trainval``) -> (train positions,
    valid positions)."""
    rng = np.random.RandomState(seed)
    per_class = num_valid // num_classes
    train, valid = [], []
    for c in range(num_classes):
        idx = _per_class(labels, positions, c)
        rng.shuffle(idx)
        train.append(idx[per_class:])
        valid.append(idx[:per_class])
    return np.concatenate(train), np.concatenate(valid)


def x_u_split(labels: np.ndarray, positions: np.ndarray, n_l: int, n_u: int, num_classes: int,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint per-class labeled (first n_l) and unlabeled (next n_u) pools (reference
    ``x_u_split``)."""
    rng = np.random.RandomState(seed)
    lab, unl = [], []
    for c in range(num_classes):
        idx = _per_class(labels, positions, c)
        rng.shuffle(idx)
        lab.append(idx[:n_l])
        unl.append(idx[n_l:n_l + n_u])
    return np.concatenate(lab), np.concatenate(unl)


def make_imbalance(labels: np.ndarray, positions: np.ndarray, n_max: int, gamma: float,
                   num_classes: int, seed: int, reverse: bool = False,
                   order: list[int] | None = None) -> np.ndarray:
    """Keep the first count(rank) shuffled samples of each class, in rank order (reference
    ``make_imbalance``; run once for the labeled and once for the unlabeled pool).

    ``order``: the classes from rank 0 (the head) on; default class ids (reversed with ``reverse``).
    """
    rng = np.random.RandomState(seed)
    if order is None:
        order = list(range(num_classes))[::-1] if reverse else list(range(num_classes))
    kept = []
    for rank, c in enumerate(order):
        idx = _per_class(labels, positions, c)
        rng.shuffle(idx)
        kept.append(idx[:int(n_max * ((1.0 / gamma) ** (rank / (num_classes - 1.0))))])
    return np.concatenate(kept)


@dataclass
class SplitSpec:
    """What defines a split. ``n_max_u=None``: unlabeled comes whole from its own source split."""

    num_classes: int
    num_valid: int
    n_max_l: int | None  # None: natural labeled set (Semi-Aves, folders): no x/u split, no profile
    n_max_u: int | None
    imb_ratio_l: float
    imb_ratio_u: float
    scenario: str
    seed: int
    # A user's folders: the labeled profile ranks classes by their own labeled counts (the largest
    # is the head), so sub-sampling keeps the data's head and tail; the benchmarks rank by class id.
    rank_by_count: bool = False


@dataclass
class Split:
    """Index arrays into the prepared source splits plus the record written to the manifest."""

    labeled: np.ndarray
    unlabeled: np.ndarray  # into train (CIFAR, digits) or into the unlabeled source split
    valid: np.ndarray
    unlabeled_source: str  # "train" or "unlabeled"
    spec: SplitSpec
    counts: dict = field(default_factory=dict)

    def record(self) -> dict:
        """JSON-ready dict: spec, what was applied, per-class counts and the index lists.

        ``scenario`` / ``gamma_l`` / ``gamma_u`` say what the split *did*: ``gamma_l`` is null when
        the labeled set is the data's own, ``scenario`` and ``gamma_u`` are null when the unlabeled
        images come whole (or capped) from a split without labels — their profile is unknown.
        """
        carved = self.unlabeled_source == "train"
        return {
            "spec": asdict(self.spec),
            "scenario": self.spec.scenario if carved else None,
            "gamma_l": self.spec.imb_ratio_l if self.spec.n_max_l is not None else None,
            "gamma_u": self.spec.imb_ratio_u if carved else None,
            "unlabeled_source": self.unlabeled_source,
            "counts": self.counts,
            "indices": {k: getattr(self, k).tolist() for k in ("labeled", "unlabeled", "valid")},
        }


def _bincount(labels: np.ndarray, k: int) -> list[int]:
    return np.bincount(labels[labels >= 0], minlength=k)[:k].tolist() if labels.size else [0] * k


def _check_pool(labels: np.ndarray, positions: np.ndarray, need: int, k: int, key: str) -> None:
    pool = np.bincount(labels[positions], minlength=k)
    short = np.where(pool < need)[0]
    if short.size:
        c = int(short[0])
        raise UserError(
            f"{key}: needs {need} images per class but class {c} has only {int(pool[c])} left "
            f"after the validation hold-out; lower {key}"
        )


def _check_hold_out(labels: np.ndarray, num_valid: int, k: int) -> None:
    """The class-balanced hold-out must leave every class a training image; name data.num_valid
    (not the keys of later steps, which would otherwise see an empty class and be blamed)."""
    per_class, pool = num_valid // k, np.bincount(labels[labels >= 0], minlength=k)[:k]
    c = int(np.argmin(pool))
    if per_class >= pool[c]:
        fits = k * max(0, int(pool[c]) - 1)
        raise UserError(
            f"data.num_valid: {num_valid} holds out {per_class} images of every class but class {c} "
            f"has only {int(pool[c])} labeled images — set data.num_valid to at most {fits} "
            "(0: no validation hold-out)"
        )


def _labeled_profile(labels: np.ndarray, train: np.ndarray, spec: SplitSpec) -> np.ndarray:
    """Sub-sample a separate labeled set (STL-10, folders) to the profile N_1, gamma_l."""
    k = spec.num_classes
    pool = np.bincount(labels[train], minlength=k)[:k]
    # Stable sort: ties keep class-id order, so a balanced set ranks exactly like the benchmarks.
    order = np.argsort(-pool, kind="stable").tolist() if spec.rank_by_count else list(range(k))
    need = class_counts(spec.n_max_l, spec.imb_ratio_l, k)
    for rank, c in enumerate(order):
        if pool[c] < need[rank]:
            raise UserError(
                f"data.n_max_l: the profile N_1={spec.n_max_l}, gamma_l={spec.imb_ratio_l:g} needs "
                f"{need[rank]} labeled images of class {c} (rank {rank}) but it has {int(pool[c])} "
                "after the validation hold-out — lower data.n_max_l or data.num_valid, or set "
                "data.n_max_l: null for every labeled image"
            )
    return make_imbalance(labels, train, spec.n_max_l, spec.imb_ratio_l, k, spec.seed, order=order)


def _no_unlabeled_profile(scenario: str, imb_ratio_u: float) -> None:
    if imb_ratio_u > 1 or scenario != "uniform":
        key = "data.imb_ratio_u" if imb_ratio_u > 1 else "data.scenario"
        raise UserError(
            f"{key}: scenario '{scenario}' with imb_ratio_u {imb_ratio_u:g} shapes the unlabeled "
            "classes, but this dataset's unlabeled images have no labels — set data.scenario: "
            "uniform and data.imb_ratio_u: 1 (data.n_max_u still caps their number)"
        )


def _cap_unlabeled(n: int, spec: SplitSpec) -> np.ndarray:
    """Positions into a separate unlabeled split of ``n`` images, none of them labeled.

    Without labels no class profile can be imposed, so only the uniform one is accepted and
    ``n_max_u`` (M_1, per class as everywhere) caps the split at K * M_1 images, drawn at random.
    """
    every = np.arange(n)
    _no_unlabeled_profile(spec.scenario, spec.imb_ratio_u)
    if spec.n_max_u is None:
        return every
    want = spec.n_max_u * spec.num_classes
    if want > n:
        raise UserError(
            f"data.n_max_u: {spec.n_max_u} per class x {spec.num_classes} classes = {want} unlabeled "
            f"images but the unlabeled split has {n} — set data.n_max_u to at most "
            f"{n // spec.num_classes}, or null for all of them"
        )
    return np.sort(np.random.RandomState(spec.seed).permutation(n)[:want])


def make_split(train_labels: np.ndarray, spec: SplitSpec,
               unlabeled_labels: np.ndarray | None = None) -> Split:
    """Build the split from the source train labels: hold-out, then labeled/unlabeled pools, then the
    labeled and unlabeled profiles, each with a fresh RNG of the same seed (ytaek-oh/daso order).

    ``train_labels``: int64[N] (class ids 0..K-1). ``unlabeled_labels``: int64[M] of a separate
    unlabeled source split (STL-10, Semi-Aves, folders; -1 = unknown), or None when U is carved
    out of the train split (CIFAR, digits). Every setting either acts or is refused in one line.
    """
    k = spec.num_classes
    positions = np.arange(len(train_labels))
    train, valid = positions, positions[:0]
    if spec.num_valid > 0:
        _check_hold_out(train_labels, spec.num_valid, k)
        train, valid = split_trainval(train_labels, positions, spec.num_valid, k, spec.seed)
    if spec.n_max_l is None and spec.imb_ratio_l > 1:
        raise UserError(f"data.imb_ratio_l: {spec.imb_ratio_l:g} needs data.n_max_l (the head class's "
                        "labeled size) — set data.n_max_l, or imb_ratio_l: 1 for every labeled image")
    if unlabeled_labels is None:
        if spec.n_max_l is None or spec.n_max_u is None:
            raise UserError("data.n_max_u: this dataset carves U out of train; set n_max_l and n_max_u")
        _check_pool(train_labels, train, spec.n_max_l + spec.n_max_u, k, "data.n_max_l + data.n_max_u")
        labeled, unlabeled = x_u_split(train_labels, train, spec.n_max_l, spec.n_max_u, k, spec.seed)
        if spec.imb_ratio_u > 1:
            unlabeled = make_imbalance(train_labels, unlabeled, spec.n_max_u, spec.imb_ratio_u, k,
                                       spec.seed, reverse=spec.scenario == "reversed")
        if spec.imb_ratio_l > 1:
            labeled = make_imbalance(train_labels, labeled, spec.n_max_l, spec.imb_ratio_l, k, spec.seed)
        source = "train"
    else:
        unlabeled, source = _cap_unlabeled(len(unlabeled_labels), spec), "unlabeled"
        labeled = train if spec.n_max_l is None else _labeled_profile(train_labels, train, spec)
    u_labels = train_labels[unlabeled] if source == "train" else unlabeled_labels[unlabeled]
    counts = {
        "labeled": _bincount(train_labels[labeled], k),
        "unlabeled": _bincount(u_labels, k),
        "unlabeled_unknown": int((u_labels < 0).sum()),
        "valid": _bincount(train_labels[valid], k),
    }
    empty = [c for c, n in enumerate(counts["labeled"]) if n == 0]
    if empty:
        raise UserError(
            f"data.imb_ratio_l: class {empty[0]} gets 0 labeled images (N_1={spec.n_max_l}, "
            f"gamma_l={spec.imb_ratio_l}); raise data.n_max_l or lower data.imb_ratio_l"
        )
    return Split(labeled, unlabeled, valid, source, spec, counts)


SEPARATE_UNLABELED = ("stl10", "semi_aves", "folder")  # their unlabeled images: a split, no labels

# Semi-Aves's labeled split is the benchmark's own. The shipped configs and search scenarios carry
# n_max_l: 1, imb_ratio_l: 1 as "unused" (a search scenario's n1 cannot be null), so that pair means
# the natural set too; anything else would be silently ignored, so it is refused.
def split_spec(data, num_classes: int) -> SplitSpec:
    """The :class:`SplitSpec` of a ``DataConfig`` (duck-typed: this module stays numpy-only).

    Raises the refusals that follow from the dataset alone, so a caller without the prepared data
    (a search validating its scenarios) gets them too; the rest come from :func:`make_split`.
    """
    if data.unlabeled_pool != "in" and data.dataset != "semi_aves":
        raise UserError(f"data.unlabeled_pool: '{data.unlabeled_pool}' chooses Semi-Aves's U_in + "
                        f"U_out; {data.dataset} has one unlabeled pool — remove the key")
    n_max_l = data.n_max_l
    if data.dataset == "semi_aves":
        if data.imb_ratio_l != 1 or n_max_l not in (None, 1):
            raise UserError(
                f"data.n_max_l: {n_max_l} / data.imb_ratio_l: {data.imb_ratio_l:g} — Semi-Aves's "
                "labeled set is the benchmark's own and cannot be re-sampled; set data.n_max_l: "
                "null and data.imb_ratio_l: 1"
            )
        n_max_l = None
    if data.dataset in SEPARATE_UNLABELED:
        _no_unlabeled_profile(data.scenario, data.imb_ratio_u)
    return SplitSpec(num_classes=num_classes, num_valid=data.num_valid, n_max_l=n_max_l,
                     n_max_u=data.n_max_u, imb_ratio_l=data.imb_ratio_l,
                     imb_ratio_u=data.imb_ratio_u, scenario=data.scenario, seed=data.seed_split,
                     rank_by_count=data.dataset == "folder")
