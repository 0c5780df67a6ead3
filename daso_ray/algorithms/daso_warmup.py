"""DASO's state at step P for another queue length L or m-hat period, rebuilt exactly from a
shared warm-up that kept a superset (issue 16: every trial of a study forks from one warm-up).

Before P, DASO is FixMatch (Oh et al., CVPR 2022, Sec. 3.4: the semantic pseudo-label and the
blend start after the pre-training steps; ytaek-oh/daso ``lib/algorithms/daso.py``), so the model,
EMA, optimiser, data and RNG at P do not depend on L or the period. Only two pieces of state do,
and each is a function of something a warm-up can keep for every value at once:

- the class-balanced queue of capacity L holds the last min(n_k, L) features of class k, laid
  out in its ring from its write pointer, which is sum_t min(b_t,k, L) mod L (b_t,k: features of
  class k the step-t batch brought). A warm-up queue of capacity L_max >= L keeps the features,
  and a per-class histogram of b_t,k (``arrivals``) gives every L's pointer;
- m-hat with period d at P is the argmax count of the last complete window of d steps, and the
  running window the counts since; both are sums of per-step counts over the last
  d + (P mod d) <= 2d - 1 steps, which the warm-up keeps (``recent``: step s in row s mod H).

The rebuilt tensors are written by the same code and shapes as a run that never forked, so a
forked trial is bit-identical to training from scratch (tests/test_shared_warmup.py).
"""

from __future__ import annotations

import torch


def queue_state(superset: dict, capacity: list[int], means, device=None) -> dict:
    """The :class:`FeatureQueue` state dict of ``capacity`` [K] (each <= the superset's) at the
    superset's step. ``superset``: a queue state with ``buf`` [K, L_max, D], ``count``, ``ptr``
    [K] and ``arrivals`` [K, b_max + 1]. ``means(buf, count)``: the queue's own prototype
    formula, computed on ``device`` (the run's: the same kernel as the run's own pushes).
    Raises ValueError when a capacity exceeds the superset's."""
    buf, arrivals = superset["buf"], superset["arrivals"]
    k, l_max, dim = buf.shape
    cap = torch.tensor(capacity, dtype=torch.long)
    if int(cap.max()) > l_max:
        raise ValueError(f"queue capacity {int(cap.max())} > the warm-up's {l_max}")
    sizes = torch.arange(arrivals.shape[1], dtype=torch.long)
    seen = (arrivals * sizes).sum(1)  # n_k: features of class k ever pushed
    ptr = (arrivals * torch.minimum(sizes.view(1, -1), cap.view(-1, 1))).sum(1) % cap
    count = torch.minimum(seen, cap)
    store = torch.zeros(k, int(cap.max()) + 1, dim, dtype=buf.dtype)  # + the spare slot
    for c in range(k):
        m = int(count[c])
        if m:
            newest = _contents(superset, c)[-m:]  # oldest -> newest
            slots = (int(ptr[c]) - m + torch.arange(m)) % int(cap[c])
            store[c, slots] = newest
    store, count = store.to(device), count.to(device)
    protos = torch.where((seen.to(device) > 0).view(-1, 1), means(store[:, :-1], count),
                         torch.zeros(k, dim, dtype=buf.dtype, device=device))
    return {"buf": store[:, :-1].clone(), "count": count, "ptr": ptr.to(device), "protos": protos}


def _contents(state: dict, c: int) -> torch.Tensor:
    """Class ``c``'s queued features, oldest -> newest, [count_c, D]."""
    cap, n = state["buf"].shape[1], int(state["count"][c])
    start = (int(state["ptr"][c]) - n) % cap
    return state["buf"][c, (start + torch.arange(n)) % cap]


def dist_state(superset: dict, period: int, step: int) -> dict:
    """The :class:`PLDistribution` state (``hist``, ``window``, long [K]) of ``period`` after
    ``step`` observed iterations (single process), from the superset's per-step counts ``recent``
    [H, K]. Raises ValueError when H does not reach back to the last complete window."""
    recent = superset["recent"]
    boundary = (step // period) * period  # the last refresh: after iteration boundary - 1
    first = boundary - period if boundary >= period else boundary
    if step - first > recent.shape[0]:
        raise ValueError(f"m-hat period {period} at step {step} needs the last {step - first} "
                         f"steps' counts; the warm-up kept {recent.shape[0]}")
    total = lambda lo, hi: sum((recent[s % recent.shape[0]] for s in range(lo, hi)),  # noqa: E731
                               torch.zeros_like(recent[0]))
    hist = total(boundary - period, boundary) if boundary >= period else torch.zeros_like(recent[0])
    return {"hist": hist, "window": total(boundary, step)}
