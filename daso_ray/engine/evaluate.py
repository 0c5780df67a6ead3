"""Evaluation metrics (names are the contract with Tune and export, built in
``daso_ray/metrics.py``; docs/architecture.md, "Metrics").

Everything derives from a confusion matrix ``conf [K, K]`` (rows = true class, columns =
prediction). Head / medium / tail are the first, middle and last third of the classes ordered by
labeled frequency (most frequent first).
"""

from __future__ import annotations

import numpy as np
import torch

from daso_ray.metrics import GROUPS


@torch.no_grad()
def confusion(predict, batches, num_classes: int, log_prior: torch.Tensor | None = None):
    """(conf [K, K], conf_la [K, K] or None), long on the host, over ``batches`` of
    ``{"x" [n, 3, S, S], "y" [n]}``.

    ``conf_la`` scores post-hoc logit-adjusted predictions argmax(z − log π_l) ("LA (inf)",
    DASO paper Table 14; ``top1_la`` in ytaek-oh/daso ``lib/algorithm/base_algorithm.py``). Counts
    accumulate on the logits' device and come to the host once at the end.
    """
    k = num_classes
    conf = conf_la = None
    for b in batches:
        logits = predict(b["x"]).float()
        if conf is None:
            conf = torch.zeros(k * k, dtype=torch.long, device=logits.device)
            conf_la = None if log_prior is None else conf.clone()
        y = b["y"].to(logits.device, non_blocking=True)
        conf += _pairs(y, logits.argmax(1), k)
        if conf_la is not None:
            conf_la += _pairs(y, (logits - log_prior.to(logits.device)).argmax(1), k)
    if conf is None:  # no batch on this rank
        conf = torch.zeros(k * k, dtype=torch.long)
        conf_la = None if log_prior is None else conf.clone()
    return conf.view(k, k).cpu(), None if conf_la is None else conf_la.view(k, k).cpu()


def _pairs(y: torch.Tensor, pred: torch.Tensor, k: int) -> torch.Tensor:
    """Counts of (true, predicted) pairs, flat [K * K]."""
    return torch.bincount(y * k + pred, minlength=k * k)


def class_groups(labeled_counts, parts: int = 3) -> list[np.ndarray]:
    """Class indices split into ``parts`` groups by labeled frequency (stable, head first).

    With fewer classes than groups the groups at the ends are filled first (two classes: head =
    the frequent one, tail = the rare one, medium empty), so the tail is never the empty one.
    """
    order = np.argsort(-np.asarray(labeled_counts), kind="stable")
    if len(order) >= parts:
        return np.array_split(order, parts)
    half = (len(order) + 1) // 2
    return [order[:half]] + [order[:0]] * (parts - 2) + [order[half:]]


def metrics_from_confusion(conf, labeled_counts, prefix: str = "eval") -> dict:
    """top1 (plain accuracy), balanced_acc, gmean_recall, head/medium/tail_acc, per_class_recall.

    A metric over no image — a head/medium/tail group without a class (fewer than 3 classes) or
    without a scored image, or an empty set — is absent, never 0.0: a 0.0 reads as "all wrong",
    and a search ranking on it would trust it (study/objective.py averages the keys present).
    """
    conf = np.asarray(conf, dtype=np.float64)
    support = conf.sum(axis=1)
    recall = np.divide(np.diag(conf), support, out=np.zeros_like(support), where=support > 0)
    present = support > 0
    r = recall[present]
    pct = 100.0
    out = {f"{prefix}/per_class_recall": [round(pct * float(v), 3) for v in recall]}
    if r.size:
        gmean = float(np.exp(np.log(np.clip(r, 1e-12, None)).mean())) if (r > 0).all() else 0.0
        out[f"{prefix}/top1"] = pct * float(np.trace(conf) / conf.sum())
        out[f"{prefix}/balanced_acc"] = pct * float(r.mean())
        out[f"{prefix}/gmean_recall"] = pct * gmean
    for name, group in zip(GROUPS, class_groups(labeled_counts), strict=True):
        scored = recall[group[present[group]]]
        if scored.size:
            out[f"{prefix}/{name}_acc"] = pct * float(scored.mean())
    return out


def pl_quality(true: np.ndarray, pred: np.ndarray, num_classes: int) -> dict:
    """Pseudo-label precision / recall / gain per class (as ytaek-oh/daso logs them); −1 labels
    skipped.

    Macro precision averages the classes predicted at least once (the reference counts −1 for a
    class never predicted); their number is logged.
    """
    keep = true >= 0
    true, pred = true[keep], pred[keep]
    if true.size == 0:
        return {}
    hit = np.bincount(true[true == pred], minlength=num_classes).astype(float)
    n_true = np.bincount(true, minlength=num_classes).astype(float)
    n_pred = np.bincount(pred, minlength=num_classes).astype(float)
    rec = np.divide(hit, n_true, out=np.zeros(num_classes), where=n_true > 0)
    prec = np.divide(hit, n_pred, out=np.zeros(num_classes), where=n_pred > 0)
    gain = np.divide(n_pred, n_true, out=np.zeros(num_classes), where=n_true > 0)
    return {
        "pl/precision": 100 * float(prec[n_pred > 0].mean()) if (n_pred > 0).any() else 0.0,
        "pl/recall": 100 * float(rec[n_true > 0].mean()),
        "pl/predicted_classes": int((n_pred > 0).sum()),
        "pl/precision_k": [round(100 * v, 3) for v in prec],
        "pl/recall_k": [round(100 * v, 3) for v in rec],
        "pl/gain_k": [round(float(v), 4) for v in gain],
    }
