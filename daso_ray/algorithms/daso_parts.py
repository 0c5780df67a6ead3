"""DASO's components (Oh et al., CVPR 2022, Sec. 3; ytaek-oh/daso ``lib/models/daso_model.py``
and ``lib/models/feature_queue.py``), usable beside any base learner (docs/algorithms.md):

- :class:`FeatureQueue` — per-class FIFO of labeled EMA features and the prototypes c_k (Sec. 3.2);
- :func:`semantic_pl` — q(z) = softmax(cos(z, c_k) / T_proto) (Eq. 2);
- :class:`PLDistribution` — m̂ from hard argmax counts in a non-overlapping window of
  ``dist_update_period`` iterations (the reference's ``update_pl_dist``) and the
  distribution-aware weight υ (Eq. 3).
"""

from __future__ import annotations

import torch
from torch import nn


class FeatureQueue:
    """Q_k: the most recent ``capacity[k]`` features of class k, in arrival order (ring buffer).

    Balanced DASO gives every class the same capacity L; the unbalanced ablation gives 5 N_k
    (the paper's Table 7 ablation). Prototypes c_k are means of the UNnormalised features; a class
    never seen keeps c_k = 0.
    """

    def __init__(self, num_classes: int, dim: int, capacity: list[int], device,
                 normalize: bool = False, track: bool = False):
        self.normalize = normalize  # mean of unit features instead (an option, not the paper's)
        # track: arrivals [K, b_max + 1], steps at which a batch brought b features of class k,
        # so a shared warm-up can rebuild a shorter queue's ring exactly (daso_warmup).
        self.arrivals: torch.Tensor | None = None
        self.track = track
        # capacity: Python ints, so building the queue inside a compiled step reads no tensor.
        self.capacity = torch.tensor(capacity, dtype=torch.long, device=device)  # [K]
        # [K, L + 1, D]: the ring buffers plus one spare slot that absorbs evicted writes (push).
        self._store = torch.zeros(num_classes, max(capacity) + 1, dim, device=device)
        self.count = torch.zeros(num_classes, dtype=torch.long, device=device)  # filled slots
        self.ptr = torch.zeros(num_classes, dtype=torch.long, device=device)  # next write slot
        self.protos = torch.zeros(num_classes, dim, device=device)  # C [K, D]

    def push(self, feats: torch.Tensor, labels: torch.Tensor) -> None:
        """Append ``feats [n, D]`` to the queues of their ``labels [n]`` in batch order; then
        recompute the prototypes of the classes present in this batch (others are kept).

        Vectorised over classes with fixed-size tensors only, so it never waits on the GPU: each
        sample's rank among its class in this batch gives its slot; when a class brings more than
        its capacity, the older entries (which the newer ones would evict anyway) are written to
        a spare slot past the end of the buffer instead. Same result as the per-class FIFO of the
        reference (ytaek-oh/daso, `lib/models/feature_queue.py`).
        """
        with torch.no_grad():  # a context, not a decorator: traceable inside a compiled step
            if self.normalize:
                feats = nn.functional.normalize(feats, dim=1, eps=1e-8)
            k, cap = self.buf.shape[0], self.capacity
            onehot = nn.functional.one_hot(labels, k)  # [n, K]
            brought = onehot.sum(0)  # [K] samples of each class in this batch
            rank = (onehot.cumsum(0) - 1).gather(1, labels.view(-1, 1)).squeeze(1)  # [n] 0-based
            kept = rank - (brought - cap).clamp_min(0)[labels]  # < 0: evicted within this batch
            slot = torch.where(kept >= 0, (self.ptr[labels] + kept) % cap[labels], self._spare)
            self._store[labels, slot] = feats.to(self.buf.dtype)
            taken = torch.minimum(brought, cap)
            self.ptr = (self.ptr + taken) % cap
            self.count = torch.minimum(self.count + taken, cap)
            means = self.means(self.buf, self.count)
            self.protos = torch.where((brought > 0).view(-1, 1), means, self.protos)
            if self.track:
                if self.arrivals is None:
                    self.arrivals = torch.zeros(k, labels.numel() + 1, dtype=torch.long,
                                                device=labels.device)
                self.arrivals[torch.arange(k, device=labels.device), brought] += 1

    @staticmethod
    def means(buf: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """Prototypes [K, D]: the mean of each ring's ``count`` filled slots of ``buf`` [K, L, D]."""
        filled = torch.arange(buf.shape[1], device=buf.device) < count.view(-1, 1)
        return (buf * filled.unsqueeze(2)).sum(1) / count.clamp_min(1).view(-1, 1)

    @property
    def buf(self) -> torch.Tensor:
        """The ring buffers [K, L, D] (a view without the spare slot)."""
        return self._store[:, :-1]

    @property
    def _spare(self) -> int:
        return self._store.shape[1] - 1

    def contents(self, k: int) -> torch.Tensor:
        """Q_k oldest -> newest, [count_k, D] (for tests and inspection)."""
        cap, n = int(self.capacity[k]), int(self.count[k])
        start = (int(self.ptr[k]) - n) % cap
        return self.buf[k, (start + torch.arange(n, device=self.buf.device)) % cap]

    def state_dict(self) -> dict:
        out = {"buf": self.buf.clone(), "count": self.count.clone(), "ptr": self.ptr.clone(),
               "protos": self.protos.clone()}
        if self.arrivals is not None:
            out["arrivals"] = self.arrivals.clone()
        return out

    def load_state_dict(self, s: dict) -> None:
        dev = self._store.device
        buf = s["buf"].to(dev)
        self._store = torch.cat([buf, torch.zeros_like(buf[:, :1])], dim=1)
        self.count, self.ptr, self.protos = (s[k].to(dev) for k in ("count", "ptr", "protos"))
        self.arrivals = s["arrivals"].to(dev) if "arrivals" in s else None


def semantic_logits(z: torch.Tensor, protos: torch.Tensor, t_proto: float) -> torch.Tensor:
    """cos(z, c_k) / T_proto, [n, K] for z [n, D] and protos [K, D] (Eq. 2).

    Normalise, then one matmul: O(n K + (n + K) D) memory, where ``cosine_similarity`` on
    broadcast [n, K, D] inputs materialises n K D floats (~0.5 GB per call at Semi-Aves' K = 200,
    D = 2048). ε = 1e-8 on each norm makes a zero prototype score 0.
    """
    zn = nn.functional.normalize(z, dim=1, eps=1e-8)
    cn = nn.functional.normalize(protos, dim=1, eps=1e-8)
    return zn @ cn.t() / t_proto


def semantic_pl(z: torch.Tensor, protos: torch.Tensor, t_proto: float) -> torch.Tensor:
    """q(z) [n, K] = softmax_k(cos(z, c_k) / T_proto) (Eq. 2)."""
    return torch.softmax(semantic_logits(z, protos, t_proto), dim=1)


class PLDistribution:
    """h (the last refreshed window) and the running window counts, both long [K]: m̂ = h / Σh
    is refreshed every ``period`` iterations from hard argmax counts, not smoothed."""

    def __init__(self, num_classes: int, period: int, iterations: int, device, reduce=None,
                 keep: int = 0):
        self.period, self.iterations = period, iterations
        self.reduce = reduce or (lambda t: t)  # all-reduce (sum) over data-parallel ranks
        self.hist = torch.zeros(num_classes, dtype=torch.long, device=device)
        self.window = torch.zeros(num_classes, dtype=torch.long, device=device)
        # keep > 0: the last ``keep`` iterations' counts [keep, K], iteration t in row t % keep,
        # from which a shared warm-up rebuilds m-hat for any period (daso_warmup).
        self.recent = torch.zeros(keep, num_classes, dtype=torch.long, device=device) if keep else None

    def observe(self, pred: torch.Tensor, t: int) -> None:
        """Count the final argmax of EVERY unlabeled sample (no threshold); refresh when due.

        h is REPLACED by the window at (t+1) % period == 0 and t+1 < T_max — not smoothed.
        """
        # scatter_add into the fixed [K] window: bincount's output size depends on the data,
        # which would make every step wait on the GPU.
        self.window.scatter_add_(0, pred, torch.ones_like(pred))
        if self.recent is not None:
            counts = torch.zeros_like(self.window).scatter_add_(0, pred, torch.ones_like(pred))
            self.recent[t % self.recent.shape[0]] = counts
        if (t + 1) % self.period == 0 and t + 1 < self.iterations:
            self.hist = self.reduce(self.window).clone()  # the window of the GLOBAL batch
            self.window.zero_()

    def upsilon(self, t_dist: float) -> torch.Tensor:
        """υ [K] = m̂^{1/T} / max_j m̂_j^{1/T} with m̂ = h / Σh (Eq. 3); all zeros before any count."""
        # No branch on the count (a host sync): with h = 0, m = 0 and the clamp gives υ = 0.
        m = (self.hist.double() / self.hist.sum().clamp_min(1)) ** (1.0 / t_dist)
        return (m / m.max().clamp_min(torch.finfo(torch.float64).tiny)).float()

    def state_dict(self) -> dict:
        out = {"hist": self.hist.clone(), "window": self.window.clone()}
        if self.recent is not None:
            out["recent"] = self.recent.clone()
        return out

    def load_state_dict(self, s: dict) -> None:
        self.hist, self.window = s["hist"].to(self.hist.device), s["window"].to(self.hist.device)
        if "recent" in s and self.recent is not None:
            self.recent = s["recent"].to(self.hist.device)


def blend(probs: torch.Tensor, q: torch.Tensor, upsilon_k: torch.Tensor) -> torch.Tensor:
    """p̂' = (1 − υ_k') p̂ + υ_k' q with k' = argmax p̂ per sample (Eq. 3); [n, K] each, υ_k' [n]."""
    u = upsilon_k.unsqueeze(1)
    return (1 - u) * probs + u * q
