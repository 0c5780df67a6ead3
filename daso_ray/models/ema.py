"""EMA teacher θ' (specs/daso.md §6 step 11): evaluation model and DASO's momentum encoder."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """θ' ← d_t θ' + (1 − d_t) θ with d_t = min(1 − 1/(t+1), ρ): a plain copy at t = 0.

    Floating-point buffers (BN running statistics) are averaged like parameters; integer buffers
    (``num_batches_tracked``) are copied [D].
    """

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval()
        self.decay = decay
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, t: int) -> None:
        d = min(1.0 - 1.0 / (t + 1), self.decay)
        src = dict(model.named_parameters())
        for name, p in self.module.named_parameters():
            p.lerp_(src[name].detach(), 1.0 - d)
        srcb = dict(model.named_buffers())
        for name, b in self.module.named_buffers():
            if b.is_floating_point():
                b.lerp_(srcb[name], 1.0 - d)
            else:
                b.copy_(srcb[name])

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
