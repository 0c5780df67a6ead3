"""Data-parallel collectives for the training loop, no Ray (docs/architecture.md, "The training
loop").

The Ray Train worker (``ray_jobs/worker.py``) has ``torch.distributed`` initialised (gloo on CPU,
NCCL on GPU) and hands the loop a :class:`Collective`; a single process uses :data:`LOCAL`, whose
operations are identities, so the single-worker path stays bit-identical to before.

Why gradients are averaged by hand instead of wrapping the model in ``DistributedDataParallel``:
algorithms reach into submodules (SeMi's balanced head ``model.fc_bal``, DASO's EMA encoder) and the
model may be ``torch.compile``d; a wrapper would hide both. One flat all-reduce per step after
``backward`` gives DDP's averaging (local losses divided by local batch sizes, then the mean
over workers reproduces the global normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as tdist
from torch import nn


@dataclass(frozen=True)
class Collective:
    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        """``t [n, ...]`` of every rank concatenated in rank order -> ``[world * n, ...]``."""
        if not self.active:
            return t
        parts = [torch.empty_like(t) for _ in range(self.world)]
        tdist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks (a new tensor; ``t`` is left alone)."""
        if not self.active:
            return t
        cpu_on_nccl = not t.is_cuda and tdist.get_backend() == "nccl"  # NCCL reduces GPU tensors only
        out = t.cuda() if cpu_on_nccl else t.clone()
        tdist.all_reduce(out)
        return out.cpu() if cpu_on_nccl else out

    def all_objects(self, obj) -> list:
        """``obj`` of every rank, in rank order (picklable objects, e.g. per-rank RNG states)."""
        if not self.active:
            return [obj]
        out = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out

    def average_gradients(self, model: nn.Module) -> None:
        """Mean of every parameter gradient over ranks, in one flat all-reduce."""
        if not self.active:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        _flat_in_place(grads, lambda flat: tdist.all_reduce(flat.div_(self.world)))

    def broadcast(self, tensors) -> None:
        """Rank 0's values of ``tensors`` to every rank, in place. Used on the parameters at start
        and on the BN running statistics after each step (DDP's ``broadcast_buffers``), so the
        EMA teacher, the evaluation and the checkpoint agree across ranks without SyncBN."""
        if not self.active:
            return
        groups: dict[torch.dtype, list[torch.Tensor]] = {}
        for t in tensors:
            groups.setdefault(t.dtype, []).append(t.data)
        for same in groups.values():  # one collective per dtype, not one per tensor
            _flat_in_place(same, lambda flat: tdist.broadcast(flat, src=0))


def _flat_in_place(tensors: list[torch.Tensor], collective) -> None:
    """Run ``collective`` (in place) on one flat copy of ``tensors`` (same dtype), then write the
    result back into each tensor: one collective instead of one per tensor."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    collective(flat)
    torch._foreach_copy_(tensors, [v.view_as(t) for v, t in zip(
        flat.split([t.numel() for t in tensors]), tensors, strict=True)])


LOCAL = Collective()
