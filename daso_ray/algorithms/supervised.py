"""Supervised baseline on the labeled set only (optionally logit-adjusted: "Supervised w/ LA")."""

from __future__ import annotations

from daso_ray.algorithms.base import Algorithm, StepOut, forward_parts, labeled_ce, register


@register("supervised")
class Supervised(Algorithm):
    uses_unlabeled = False

    def step(self, batch, t, nets):
        parts = forward_parts(nets.model, {"x": batch["x"]})
        loss = labeled_ce(parts.logits_l, batch["y"], self.ctx.log_prior,
                          self.cfg.algorithm.logit_adjust_tau)
        return StepOut(loss, {"train/loss_x": loss.detach()})
