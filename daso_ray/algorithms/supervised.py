"""Supervised baseline on the labeled set only (optionally logit-adjusted: "Supervised w/ LA",
DASO paper Table 1; ytaek-oh/daso, ``lib/algorithm/supervised.py``)."""

from __future__ import annotations

from daso_ray.algorithms.base import Algorithm, StepOut, forward_parts, labeled_ce
from daso_ray.registry import register


@register
class Supervised(Algorithm):
    name = "supervised"
    uses_unlabeled = False

    def step(self, batch, t, nets):
        """L = CE(f(x) + τ_LA log π_l, y) over ``x`` [B, C, H, W], ``y`` [B]; no unlabeled view."""
        parts = forward_parts(nets.model, {"x": batch["x"]})
        loss = labeled_ce(parts.logits_l, batch["y"], self.ctx.log_prior,
                          self.cfg.algorithm.logit_adjust_tau)
        return StepOut(loss, {"train/loss_x": loss.detach()})
