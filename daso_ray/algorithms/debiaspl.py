"""DebiasPL (Wang et al., CVPR 2022: counterfactual debiasing and the adaptive marginal loss) on
FixMatch, as the official code runs it (frank-xwang/debiased-pseudo-labeling, ``main_DebiasPL.py``:
``causal_inference``, ``update_qhat`` and the margin in ``train``).

State: p̄ [K], an EMA (momentum m) of the mean RAW weak-view probabilities, initialised uniform.
1. p̃ = softmax(z_w − λ log p̄) with p̄ before the update; mask and ŷ come from p̃.
2. p̄ ← m p̄ + (1 − m) mean_u softmax(z_w) — over the batch dimension (USB's port averages over
   all elements, so its p̄ stays uniform and the method is a no-op).
3. L_u = (1/μB) Σ m_u CE(z_s + λ log p̄, ŷ) with p̄ AFTER the update (adaptive margin loss).
``debiaspl.single_qhat`` uses the pre-update p̄ in step 3 as well (the TLlib variant).
"""

from __future__ import annotations

import torch
from pydantic import Field

from daso_ray.algorithms.fixmatch import FixMatch
from daso_ray.registry import Strict, register


class DebiasPLConfig(Strict):
    tau: float = Field(0.4, ge=0.0)  # debias factor λ (the authors' ImageNet scripts: --tau 0.4)
    qhat_m: float = Field(0.999, ge=0.0, lt=1.0)  # m, the reference's argparse default
    single_qhat: bool = False


@register
class DebiasPL(FixMatch):
    name = "debiaspl"
    section = DebiasPLConfig

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        k = ctx.num_classes
        self.qhat = torch.full((k,), 1.0 / k, device=ctx.device)
        self._margin_prior = self.qhat

    def _log(self, q: torch.Tensor) -> torch.Tensor:
        return self.cfg.algorithm.debiaspl.tau * q.clamp_min(1e-12).log()

    def pseudo_label(self, probs, parts, t):
        """Steps 1–2. p̂ = softmax(z_w) [μB, K] -> p̃ = softmax(z_w − λ log p̄) [μB, K] with the p̄
        [K] of before this step (reference ``causal_inference``); then p̄ ← m p̄ + (1 − m) mean_u p̂,
        averaged over ranks (reference ``update_qhat``, unmasked)."""
        debias = self.cfg.algorithm.debiaspl
        debiased = torch.softmax(parts.logits_w.detach() - self._log(self.qhat), dim=1)
        before = self.qhat
        # The batch mean over ALL ranks (identity on one), so every rank keeps the same prior.
        mean = self.ctx.dist.all_sum(probs.mean(dim=0)) / self.ctx.dist.world
        self.qhat = debias.qhat_m * self.qhat + (1 - debias.qhat_m) * mean
        self._margin_prior = before if debias.single_qhat else self.qhat
        return debiased

    def strong_logits(self, logits_s):
        """Step 3, the adaptive margin: z_s [μB, K] -> z_s + λ log p̄ [μB, K], p̄ after this step's
        update (before it with ``single_qhat``); reference ``train``, ``delta_logits``."""
        return logits_s + self._log(self._margin_prior)

    def state_dict(self):
        """{"qhat": p̄ [K]}."""
        return {"qhat": self.qhat.clone()}

    def load_state_dict(self, state):
        """Restore p̄ [K] onto this run's device."""
        self.qhat = state["qhat"].to(self.ctx.device)
