"""Long-tailed labeled/unlabeled splits: pure numpy, seed -> indices (specs/daso.md §2).

Reproduces the reference construction bit for bit (§2.3): every step makes its own fresh
``numpy.random.RandomState(seed)`` and writes its output in class (rank) order, and the next step
indexes into that reordered array. Here every step maps *positions in the source split* so the
result is a set of index arrays into the prepared ``.beton`` files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from daso_ray.errors import UserError


def class_counts(n_max: int, gamma: float, num_classes: int, reverse: bool = False) -> list[int]:
    """Per-class sizes of the int-truncated exponential profile (specs/daso.md §2.1).

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
    """Class-balanced validation hold-out (§2.3 step 2) -> (train positions, valid positions)."""
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
    """Disjoint per-class labeled (first n_l) and unlabeled (next n_u) pools (§2.3 step 3)."""
    rng = np.random.RandomState(seed)
    lab, unl = [], []
    for c in range(num_classes):
        idx = _per_class(labels, positions, c)
        rng.shuffle(idx)
        lab.append(idx[:n_l])
        unl.append(idx[n_l:n_l + n_u])
    return np.concatenate(lab), np.concatenate(unl)


def make_imbalance(labels: np.ndarray, positions: np.ndarray, n_max: int, gamma: float,
                   num_classes: int, seed: int, reverse: bool = False) -> np.ndarray:
    """Keep the first count(rank) shuffled samples of each class, in rank order (§2.3 steps 4-5)."""
    rng = np.random.RandomState(seed)
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
        """JSON-ready dict: spec, per-class counts and the index lists."""
        return {
            "spec": asdict(self.spec),
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


def make_split(train_labels: np.ndarray, spec: SplitSpec,
               unlabeled_labels: np.ndarray | None = None) -> Split:
    """Build the split of specs/daso.md §2.3 from the source train labels.

    ``train_labels``: int64[N] (class ids 0..K-1). ``unlabeled_labels``: int64[M] of a separate
    unlabeled source split (STL-10, Semi-Aves, folders; -1 = unknown), or None when U is carved
    out of the train split (CIFAR, digits).
    """
    k = spec.num_classes
    positions = np.arange(len(train_labels))
    train, valid = positions, positions[:0]
    if spec.num_valid > 0:
        train, valid = split_trainval(train_labels, positions, spec.num_valid, k, spec.seed)
    if unlabeled_labels is None:
        if spec.n_max_l is None or spec.n_max_u is None:
            raise UserError("data.n_max_u: this dataset carves U out of train; set n_max_l and n_max_u")
        _check_pool(train_labels, train, spec.n_max_l + spec.n_max_u, k, "data.n_max_l + data.n_max_u")
        labeled, unlabeled = x_u_split(train_labels, train, spec.n_max_l, spec.n_max_u, k, spec.seed)
        if spec.imb_ratio_u > 1:
            unlabeled = make_imbalance(train_labels, unlabeled, spec.n_max_u, spec.imb_ratio_u, k,
                                       spec.seed, reverse=spec.scenario == "reversed")
        source = "train"
    else:
        labeled, unlabeled, source = train, np.arange(len(unlabeled_labels)), "unlabeled"
        if spec.n_max_l is not None:
            _check_pool(train_labels, train, spec.n_max_l, k, "data.n_max_l")
    if spec.n_max_l is not None and spec.imb_ratio_l > 1:
        labeled = make_imbalance(train_labels, labeled, spec.n_max_l, spec.imb_ratio_l, k, spec.seed)
    u_labels = train_labels[unlabeled] if source == "train" else unlabeled_labels
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
