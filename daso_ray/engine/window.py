"""What the training iterations of one evaluation window did: mean losses, throughput and
pseudo-label quality, logged beside the evaluation that closes the window.

The iteration never waits on the device, so the per-iteration logs are summed there and read back
once, when the window closes (one host synchronisation per window, not per iteration).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from daso_ray.algorithms import StepOut
from daso_ray.data.module import TrainData
from daso_ray.dist import Collective
from daso_ray.engine.evaluate import pl_quality
from daso_ray.engine.step import check_finite
from daso_ray.metrics import THROUGHPUT


def hidden_labels(data: TrainData, uses_unlabeled: bool) -> np.ndarray | None:
    """True labels of the unlabeled images (−1 where unknown), or None when none is known.

    They only score the pseudo-labels (``pl/*``); the algorithm never sees them.
    """
    labels = data.unlabeled_labels() if uses_unlabeled else np.array([-1])
    return labels if (labels >= 0).any() else None


@dataclass
class Window:
    """Running sums over the iterations since the last evaluation; :meth:`next` starts afresh."""

    dist: Collective
    hidden_u: np.ndarray | None  # see hidden_labels
    num_classes: int
    logs: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> sum on the device
    iterations: int = 0
    images: int = 0
    seconds: float = 0.0  # training time only: the caller stops the clock before evaluating
    idx_u: list[torch.Tensor] = field(default_factory=list)  # which unlabeled images ...
    pl: list[torch.Tensor] = field(default_factory=list)  # ... got which pseudo-label

    def next(self) -> Window:
        """An empty window for the same run."""
        return Window(self.dist, self.hidden_u, self.num_classes)

    def observe(self, out: StepOut, batch: dict) -> None:
        """Add one iteration (no host synchronisation)."""
        for k, v in out.logs.items():
            self.logs[k] = self.logs.get(k, 0.0) + v.detach().float()
        self.iterations += 1
        self.images += sum(len(v) for k, v in batch.items() if k.startswith("x"))
        if out.pl is not None and self.hidden_u is not None:
            self.idx_u.append(batch["idx_u"])
            self.pl.append(out.pl.detach())

    def check_losses(self, t: int) -> None:
        """Raise :class:`NonFiniteLoss` if a summed log is NaN/inf (``t``: the last iteration)."""
        sums = [v.cpu() for v in self.logs.values()] or [torch.zeros(())]
        check_finite(torch.stack(sums), self.logs, t)

    def metrics(self) -> dict:
        """``train/*`` means over iterations and ranks, ``perf/img_per_s``, and ``pl/*`` where
        the unlabeled labels are known. A collective when there are logs: every rank calls it."""
        out = {}
        if self.logs:  # the mean over ranks (identity on one rank)
            total = self.dist.all_sum(torch.stack([v.float() for v in self.logs.values()]))
            n = max(self.iterations, 1)
            out.update({k: v / n for k, v in zip(self.logs, (total / self.dist.world).tolist(),
                                                  strict=True)})
        out[THROUGHPUT] = self.images / max(self.seconds, 1e-9)
        if self.pl:
            idx = torch.cat(self.idx_u).cpu().numpy()
            pred = torch.cat(self.pl).cpu().numpy()
            out.update(pl_quality(self.hidden_u[idx], pred, self.num_classes))
        return out
