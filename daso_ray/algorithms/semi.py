"""SeMi (Wang et al., ACM MM 2025) on the ACR two-head FixMatch, as intended (peers.md §7.2),
with the released code's defects fixed (§7.5): features stay aligned with their samples (no
interleaving), the memory bank replaces its minimum slot, the ramp is t / T_max and the blended
p' is renormalised (``semi.renormalize_blend: false`` reproduces the code).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from daso_ray.algorithms.base import (
    Algorithm,
    StepOut,
    forward_parts,
    labeled_ce,
    masked_hard_ce,
    register,
)
from daso_ray.algorithms.semi_bank import MemoryBank


@register("semi")
class SeMi(Algorithm):
    balanced_head = True

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self.strong_views = cfg.algorithm.semi.strong_views
        k = ctx.num_classes
        self.bank: MemoryBank | None = None
        self.center: torch.Tensor | None = None  # c̄ [D], EMA of the EA target softmax
        self.pl_counts = torch.zeros(k, dtype=torch.long, device=ctx.device)  # confident PLs so far
        self.pi_u = torch.zeros(k, device=ctx.device)  # π̂^u, refreshed once per epoch
        self._ea_target_mean: torch.Tensor | None = None

    def predict(self, model, x):
        return model.fc_bal(model(x)[1])  # the balanced head (peers.md §6)

    def step(self, batch, t, nets):
        s, a, prior = self.cfg.algorithm.semi, self.cfg.algorithm, self.ctx.log_prior
        parts = forward_parts(nets.model, batch)
        head2 = nets.model.fc_bal
        if self.bank is None:
            self._init_state(parts.feat_l.shape[1])
        active = t >= s.est_epoch_iters
        loss_x = nn.functional.cross_entropy(parts.logits_l, batch["y"])
        loss_xb = labeled_ce(head2(parts.feat_l), batch["y"], prior, s.tau2)
        zw = parts.logits_w.detach()
        probs_raw = torch.softmax(zw, dim=1)
        p = torch.softmax(zw - s.tau1 * prior, dim=1) if s.pula else probs_raw
        if active:
            p = self._blend(p, parts.feat_s[0].detach(), t)
        conf, yhat = p.max(dim=1)
        m1 = ((conf >= a.threshold) | (probs_raw.max(dim=1).values >= a.threshold)).float()
        w = self._oheml(p) if active else torch.ones_like(conf)
        loss_u = _mean_views(parts.logits_s, lambda z: masked_hard_ce(z, yhat, m1 * w))
        # Head 2: targets from head-1 logits, logit-adjusted by τ12 (ACR).
        p2 = torch.softmax(zw - s.tau12 * prior, dim=1)
        conf2, y2 = p2.max(dim=1)
        pb = torch.softmax(head2(parts.feat_w.detach()), dim=1)
        m2 = ((conf2 >= a.threshold) | (pb.max(dim=1).values >= a.threshold)).float()
        loss_ub = _mean_views(parts.feat_s, lambda f: masked_hard_ce(head2(f), y2, m2))
        loss = loss_x + loss_xb + a.lambda_u * (loss_u + loss_ub)
        logs = {"train/loss_x": loss_x.detach(), "train/loss_xb": loss_xb.detach(),
                "train/loss_u": loss_u.detach(), "train/loss_ub": loss_ub.detach(),
                "train/mask_ratio": m1.mean()}
        if active and s.lambda_ea > 0:
            loss_ea = self._embedding_align(parts.feat_w.detach(), parts.feat_s, m1)
            loss = loss + s.lambda_ea * loss_ea
            logs["train/loss_ea"] = loss_ea.detach()
        self._update_state(parts.feat_s, yhat, conf, m1, t)
        return StepOut(loss, logs, pl=yhat)

    # -- pieces ------------------------------------------------------------------------------------
    def _init_state(self, dim: int) -> None:
        s = self.cfg.algorithm.semi
        self.bank = MemoryBank(self.ctx.num_classes, s.mb_size, dim, self.ctx.device)
        self.center = torch.zeros(dim, device=self.ctx.device)

    def _blend(self, p: torch.Tensor, f_s1: torch.Tensor, t: int) -> torch.Tensor:
        """PLCE: p'_k = (1 − w_k) p_k + w_k q_k, w_k = α · (t / T_max) · π̂^u_k (column-wise)."""
        s = self.cfg.algorithm.semi
        protos, filled = self.bank.prototypes()
        if not bool(filled.any()):
            return p
        dist = torch.cdist(f_s1, protos)  # Euclidean, unnormalised features, strong view 1
        q = torch.softmax((-dist / s.t_tar).masked_fill(~filled, float("-inf")), dim=1)
        w = s.alpha * (t / self.ctx.iterations) * self.pi_u  # [K]
        out = (1 - w) * p + w * q
        return out / out.sum(dim=1, keepdim=True) if s.renormalize_blend else out

    def _oheml(self, p: torch.Tensor) -> torch.Tensor:
        """w_b = s H(p'_b) / log K + (1 − s): the hardest (max-entropy) samples weigh 1."""
        s = self.cfg.algorithm.semi.oheml_scale
        pc = p.clamp(1e-8, 1 - 1e-8)
        ent = -(pc * pc.log()).sum(dim=1)
        return s * ent / math.log(self.ctx.num_classes) + (1 - s)

    def _embedding_align(self, f_w, feats_s, m1):
        """EA on still-uncertain samples (m1 = 0): soft CE over the D feature dimensions."""
        tp = self.cfg.algorithm.semi.proto_t
        target = torch.softmax((f_w - self.center) / (tp / 5), dim=1)  # [muB, D]
        self._ea_target_mean = target.mean(dim=0)
        return _mean_views(feats_s, lambda f: ((1 - m1) * -(target * torch.log_softmax(
            f / tp, dim=1)).sum(dim=1)).mean())

    @torch.no_grad()
    def _update_state(self, feats_s, yhat, conf, m1, t):
        s = self.cfg.algorithm.semi
        sel = m1.bool()
        if self._ea_target_mean is not None:
            self.center = 0.9 * self.center + 0.1 * self._ea_target_mean  # DINO-style centre
            self._ea_target_mean = None
        for f in feats_s:  # both strong views of every confident sample
            self.bank.push(f.detach(), yhat, conf, sel)
        if (t + 1) % s.decay_step == 0:
            self.bank.decay(s.beta)
        # Fixed-size counting and no branch on the count: nothing here waits on the GPU.
        self.pl_counts.scatter_add_(0, yhat, sel.long())
        if (t + 1) % s.epoch_iters == 0:
            total = self.pl_counts.sum()
            self.pi_u = torch.where(total > 0, self.pl_counts.float() / total.clamp_min(1), self.pi_u)

    def state_dict(self):
        return {"bank": None if self.bank is None else self.bank.state_dict(), "center": self.center,
                "pl_counts": self.pl_counts.clone(), "pi_u": self.pi_u.clone()}

    def load_state_dict(self, state):
        if state["bank"] is not None:
            self._init_state(state["bank"]["feat"].shape[2])
            self.bank.load_state_dict(state["bank"])
            self.center = state["center"].to(self.ctx.device)
        self.pl_counts = state["pl_counts"].to(self.ctx.device)
        self.pi_u = state["pi_u"].to(self.ctx.device)


def _mean_views(items, fn):
    """(1 / #views) Σ_views fn(view): the 1/(2μB) normalisation of peers.md §7.2 with 2 views."""
    return sum(fn(x) for x in items) / len(items)
