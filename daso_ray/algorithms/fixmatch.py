"""FixMatch (+LA) with the extension points of peers.md §2 [D].

Subclasses change one hook each, never the step: ``pseudo_label`` (DASO blend, DebiasPL
debiasing), ``strong_logits`` (DebiasPL margin), ``extra_losses`` (DASO L_align).
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
    register,
)


@register("fixmatch")
class FixMatch(Algorithm):
    def step(self, batch: dict, t: int, nets) -> StepOut:
        self.before_forward(batch, t, nets)
        parts = forward_parts(nets.model, batch)
        a = self.cfg.algorithm
        loss_x = labeled_ce(parts.logits_l, batch["y"], self.ctx.log_prior, a.logit_adjust_tau)
        probs = torch.softmax(parts.logits_w.detach(), dim=1)  # p̂ [muB, K], temperature 1
        target = self.pseudo_label(probs, parts, t)  # p̂' (the blended vector for DASO)
        conf, yhat = target.max(dim=1)
        mask = (conf >= a.threshold).float()
        loss_u = masked_hard_ce(self.strong_logits(parts.logits_s[0]), yhat, mask)
        loss = loss_x + a.lambda_u * loss_u
        logs = {"train/loss_x": loss_x.detach(), "train/loss_u": loss_u.detach(),
                "train/mask_ratio": mask.mean()}
        for name, (weight, term) in self.extra_losses(parts, t).items():
            loss = loss + weight * term
            logs[f"train/loss_{name}"] = term.detach()
        self.after_loss(yhat, t)
        return StepOut(loss, logs, pl=yhat)

    # -- hooks (identity for plain FixMatch) ------------------------------------------------------
    def before_forward(self, batch: dict, t: int, nets) -> None:
        """State a later hook reads must be computed here, before it is read (peers.md §2)."""

    def pseudo_label(self, probs: torch.Tensor, parts: Parts, t: int) -> torch.Tensor:
        """[muB, K] detached probabilities -> [muB, K] target distribution."""
        return probs

    def strong_logits(self, logits_s: torch.Tensor) -> torch.Tensor:
        return logits_s

    def extra_losses(self, parts: Parts, t: int) -> dict[str, tuple[float, torch.Tensor]]:
        return {}

    def after_loss(self, yhat: torch.Tensor, t: int) -> None:
        """Sees the final pseudo-labels [muB] of this step (e.g. DASO's m̂ window)."""
