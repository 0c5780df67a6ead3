"""FixMatch (+LA) as a template: L = L_s + λ_u L_u (Sohn et al., NeurIPS 2020, Sec. 2.2 and
Alg. 1), as the DASO reference code runs it (ytaek-oh/daso, ``lib/algorithm/fixmatch.py``).

Subclasses change hooks, never the step: ``pseudo_label`` (DASO blend, DebiasPL debiasing),
``strong_logits`` (DebiasPL margin), ``extra_losses`` (DASO L_align), ``before_forward`` and
``after_loss`` (DASO's queue and m̂ window).
"""

from __future__ import annotations

import torch

from daso_ray.algorithms.base import (
    Algorithm,
    Parts,
    StepOut,
    forward_parts,
    labeled_ce,
    masked_hard_ce,
)
from daso_ray.registry import register


@register
class FixMatch(Algorithm):
    name = "fixmatch"

    def step(self, batch: dict, t: int, nets) -> StepOut:
        """One loss on ``batch`` (``x`` [B, C, H, W], ``y`` [B], ``x_w``/``x_s`` [μB, C, H, W]):
        L_s = CE(f(x) + τ_LA log π_l, y); ŷ, mask from the hooked target p̂'; L_u = (1/μB) Σ mask ·
        CE(strong_logits(f(x_s)), ŷ); plus ``extra_losses``. ``pl``: ŷ [μB]."""
        self.before_forward(batch, t, nets)
        parts = forward_parts(nets.model, batch)
        shared = self.cfg.algorithm  # the keys every algorithm reads
        loss_x = labeled_ce(parts.logits_l, batch["y"], self.ctx.log_prior, shared.logit_adjust_tau)
        probs = torch.softmax(parts.logits_w.detach(), dim=1)  # p̂ [muB, K], temperature 1
        target = self.pseudo_label(probs, parts, t)  # p̂' (the blended vector for DASO)
        conf, yhat = target.max(dim=1)
        mask = (conf >= shared.threshold).float()
        loss_u = masked_hard_ce(self.strong_logits(parts.logits_s[0]), yhat, mask)
        loss = loss_x + shared.lambda_u * loss_u
        logs = {"train/loss_x": loss_x.detach(), "train/loss_u": loss_u.detach(),
                "train/mask_ratio": mask.mean()}
        for name, (weight, term) in self.extra_losses(parts, t).items():
            loss = loss + weight * term
            logs[f"train/loss_{name}"] = term.detach()
        self.after_loss(yhat, t)
        return StepOut(loss, logs, pl=yhat)

    # -- hooks (identity for plain FixMatch) ------------------------------------------------------
    def before_forward(self, batch: dict, t: int, nets) -> None:
        """Runs before the forward pass; state a later hook reads is computed here, first."""

    def pseudo_label(self, probs: torch.Tensor, parts: Parts, t: int) -> torch.Tensor:
        """p̂ = softmax(z_w) [μB, K], detached -> the target [μB, K] whose argmax is ŷ and whose max
        is thresholded (identity here)."""
        return probs

    def strong_logits(self, logits_s: torch.Tensor) -> torch.Tensor:
        """Strong-view logits [μB, K] -> the logits L_u's cross-entropy sees (identity here)."""
        return logits_s

    def extra_losses(self, parts: Parts, t: int) -> dict[str, tuple[float, torch.Tensor]]:
        """{name: (weight, scalar loss)} added to L and logged as ``train/loss_<name>`` (none)."""
        return {}

    def after_loss(self, yhat: torch.Tensor, t: int) -> None:
        """Sees the final pseudo-labels ŷ [μB] (long) of this step, e.g. for DASO's m̂ window."""
