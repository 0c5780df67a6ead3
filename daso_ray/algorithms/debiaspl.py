"""DebiasPL (Wang et al., CVPR 2022) on FixMatch, as the official code runs it (peers.md §5.2).

State: p̄ [K], an EMA (momentum m) of the mean RAW weak-view probabilities, initialised uniform.
1. p̃ = softmax(z_w − λ log p̄) with p̄ before the update; mask and ŷ come from p̃.
2. p̄ ← m p̄ + (1 − m) mean_u softmax(z_w)  — over the batch dimension (USB's port averages over
   all elements, so its p̄ stays uniform and the method is a no-op: peers.md §5.5).
3. L_u = (1/μB) Σ m_u CE(z_s + λ log p̄, ŷ) with p̄ AFTER the update (adaptive margin loss).
``debiaspl.single_qhat`` uses the pre-update p̄ in step 3 as well (the TLlib variant).
"""

from __future__ import annotations

import torch

from daso_ray.algorithms.base import register
from daso_ray.algorithms.fixmatch import FixMatch


@register("debiaspl")
class DebiasPL(FixMatch):
    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        k = ctx.num_classes
        self.qhat = torch.full((k,), 1.0 / k, device=ctx.device)
        self._margin_prior = self.qhat

    def _log(self, q: torch.Tensor) -> torch.Tensor:
        return self.cfg.algorithm.debiaspl.tau * q.clamp_min(1e-12).log()

    def pseudo_label(self, probs, parts, t):
        d = self.cfg.algorithm.debiaspl
        debiased = torch.softmax(parts.logits_w.detach() - self._log(self.qhat), dim=1)
        before = self.qhat
        # The batch mean over ALL ranks (identity on one), so every rank keeps the same prior.
        mean = self.ctx.dist.all_sum(probs.mean(dim=0)) / self.ctx.dist.world
        self.qhat = d.qhat_m * self.qhat + (1 - d.qhat_m) * mean
        self._margin_prior = before if d.single_qhat else self.qhat
        return debiased

    def strong_logits(self, logits_s):
        return logits_s + self._log(self._margin_prior)

    def state_dict(self):
        return {"qhat": self.qhat.clone()}

    def load_state_dict(self, state):
        self.qhat = state["qhat"].to(self.ctx.device)
