"""DASO's components (specs/daso.md §5), shared by every base learner (§11 item 7).

- :class:`FeatureQueue` — per-class FIFO of labeled EMA features and the prototypes (§5.1);
- :func:`semantic_pl` — q(z) = softmax(cos(z, c_k) / T_proto) (Eq. 2, §5.2);
- :class:`PLDistribution` — m̂ from hard argmax counts in a non-overlapping window (§5.5) and the
  distribution-aware weight υ (Eq. 3, §5.3).
"""

from __future__ import annotations

import torch
from torch import nn


class FeatureQueue:
    """Q_k: the most recent ``capacity[k]`` features of class k, in arrival order (ring buffer).

    Balanced DASO gives every class the same capacity L; the unbalanced ablation gives 5 N_k
    (specs/daso.md §10.5, Table 7). Prototypes c_k are means of the UNnormalised features; a class
    never seen keeps c_k = 0.
    """

    def __init__(self, num_classes: int, dim: int, capacity: torch.Tensor, device,
                 normalize: bool = False):
        self.normalize = normalize  # specs/daso.md §12 item 4: mean of unit features instead
        self.capacity = capacity.long().to(device)  # [K]
        self.buf = torch.zeros(num_classes, int(self.capacity.max()), dim, device=device)  # [K, L, D]
        self.count = torch.zeros(num_classes, dtype=torch.long, device=device)  # filled slots
        self.ptr = torch.zeros(num_classes, dtype=torch.long, device=device)  # next write slot
        self.protos = torch.zeros(num_classes, dim, device=device)  # C [K, D]

    @torch.no_grad()
    def push(self, feats: torch.Tensor, labels: torch.Tensor) -> None:
        """Append ``feats [n, D]`` to the queues of their ``labels [n]`` in batch order; then
        recompute the prototypes of the classes present in this batch (others are kept)."""
        if self.normalize:
            feats = nn.functional.normalize(feats, dim=1, eps=1e-8)
        for k in labels.unique().tolist():
            f = feats[labels == k]
            cap = int(self.capacity[k])
            f = f[-cap:]  # older entries of this batch would be evicted by newer ones anyway
            slots = (self.ptr[k] + torch.arange(len(f), device=f.device)) % cap
            self.buf[k, slots] = f.to(self.buf.dtype)
            self.ptr[k] = (self.ptr[k] + len(f)) % cap
            self.count[k] = min(int(self.count[k]) + len(f), cap)
            self.protos[k] = self.buf[k, : int(self.count[k])].mean(dim=0)

    def contents(self, k: int) -> torch.Tensor:
        """Q_k oldest -> newest, [count_k, D] (for tests and inspection)."""
        cap, n = int(self.capacity[k]), int(self.count[k])
        start = (int(self.ptr[k]) - n) % cap
        return self.buf[k, (start + torch.arange(n, device=self.buf.device)) % cap]

    def state_dict(self) -> dict:
        return {"buf": self.buf.clone(), "count": self.count.clone(), "ptr": self.ptr.clone(),
                "protos": self.protos.clone()}

    def load_state_dict(self, s: dict) -> None:
        dev = self.buf.device
        keys = ("buf", "count", "ptr", "protos")
        self.buf, self.count, self.ptr, self.protos = (s[k].to(dev) for k in keys)


def semantic_logits(z: torch.Tensor, protos: torch.Tensor, t_proto: float) -> torch.Tensor:
    """cos(z, c_k) / T_proto, [n, K]; ε = 1e-8 makes a zero prototype score 0 (Eq. 2)."""
    sim = nn.functional.cosine_similarity(z.unsqueeze(1), protos.unsqueeze(0), dim=2, eps=1e-8)
    return sim / t_proto


def semantic_pl(z: torch.Tensor, protos: torch.Tensor, t_proto: float) -> torch.Tensor:
    """q(z) [n, K] = softmax_k(cos(z, c_k) / T_proto) (Eq. 2)."""
    return torch.softmax(semantic_logits(z, protos, t_proto), dim=1)


class PLDistribution:
    """h (the last refreshed window) and the running window counts, both long [K] (§5.5)."""

    def __init__(self, num_classes: int, period: int, iterations: int, device, reduce=None):
        self.period, self.iterations = period, iterations
        self.reduce = reduce or (lambda t: t)  # all-reduce (sum) over data-parallel ranks, §6.1
        self.hist = torch.zeros(num_classes, dtype=torch.long, device=device)
        self.window = torch.zeros(num_classes, dtype=torch.long, device=device)

    def observe(self, pred: torch.Tensor, t: int) -> None:
        """Count the final argmax of EVERY unlabeled sample (no threshold); refresh when due.

        h is REPLACED by the window at (t+1) % period == 0 and t+1 < T_max — not smoothed.
        """
        self.window += torch.bincount(pred, minlength=len(self.window))
        if (t + 1) % self.period == 0 and t + 1 < self.iterations:
            self.hist = self.reduce(self.window).clone()  # the window of the GLOBAL batch (§6.1)
            self.window.zero_()

    def upsilon(self, t_dist: float) -> torch.Tensor:
        """υ [K] = m̂^{1/T} / max_j m̂_j^{1/T} with m̂ = h / Σh (Eq. 3); all zeros before any count."""
        total = self.hist.sum()
        if total == 0:
            return torch.zeros(len(self.hist), device=self.hist.device)
        m = (self.hist.double() / total) ** (1.0 / t_dist)
        return (m / m.max()).float()

    def state_dict(self) -> dict:
        return {"hist": self.hist.clone(), "window": self.window.clone()}

    def load_state_dict(self, s: dict) -> None:
        self.hist, self.window = s["hist"].to(self.hist.device), s["window"].to(self.hist.device)


def blend(probs: torch.Tensor, q: torch.Tensor, upsilon_k: torch.Tensor) -> torch.Tensor:
    """p̂' = (1 − υ_k') p̂ + υ_k' q with k' = argmax p̂ per sample (Eq. 3); [n, K] each, υ_k' [n]."""
    u = upsilon_k.unsqueeze(1)
    return (1 - u) * probs + u * q
