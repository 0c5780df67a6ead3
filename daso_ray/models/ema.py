"""EMA teacher θ' (decay min(1 − 1/(t+1), ρ), as ytaek-oh/daso): evaluation model and DASO's
momentum encoder (the DASO paper's appendix uses the same ρ for both)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """θ' ← d_t θ' + (1 − d_t) θ with d_t = min(1 − 1/(t+1), ρ): a plain copy at t = 0.

    Floating-point buffers (BN running statistics) are averaged like parameters; integer buffers
    (``num_batches_tracked``) are copied (a choice of this package).
    """

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval()
        self.decay = decay
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._pairs, self._source = None, None  # tensor lists for the fused update (_pair_with)

    @torch.no_grad()
    def update(self, model: nn.Module, t: int) -> None:
        d = min(1.0 - 1.0 / (t + 1), self.decay)
        if self._pairs is None or self._source is not model:
            self._pair_with(model)
        ema_f, src_f, ema_i, src_i = self._pairs
        # One fused multi-tensor launch per group instead of one kernel per tensor (~130 for
        # WRN-28-2): lerp(θ', θ, 1 − d) = d θ' + (1 − d) θ.
        torch._foreach_lerp_(ema_f, src_f, 1.0 - d)
        if ema_i:
            torch._foreach_copy_(ema_i, src_i)

    def _pair_with(self, model: nn.Module) -> None:
        """Match the EMA's tensors to ``model``'s by name, once: parameters and floating buffers
        are averaged, integer buffers copied."""
        src = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        mine = {**dict(self.module.named_parameters()), **dict(self.module.named_buffers())}
        floats = [n for n, t in mine.items() if t.is_floating_point()]
        ints = [n for n, t in mine.items() if not t.is_floating_point()]
        self._pairs = ([mine[n] for n in floats], [src[n].detach() for n in floats],
                       [mine[n] for n in ints], [src[n].detach() for n in ints])
        self._source = model

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)  # in place: the paired tensor lists stay valid
