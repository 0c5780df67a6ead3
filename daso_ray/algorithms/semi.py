"""SeMi (Wang et al., ACM MM 2025, arXiv 2501.06004) on the ACR two-head FixMatch (Wei & Gan,
CVPR 2023), as intended (reference pywin/SeMi, ``train_semi.py``; ACR: Gank0078/ACR, ``train.py``),
with the released code's defects fixed: features stay aligned with their samples (no
interleaving), the memory bank replaces its minimum slot, the ramp is t / T_max and the blended
p' is renormalised (``semi.renormalize_blend: false`` reproduces the code).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from daso_ray.algorithms.base import Algorithm, StepOut, forward_parts, labeled_ce, masked_hard_ce
from daso_ray.algorithms.semi_bank import MemoryBank
from daso_ray.registry import Strict, register


class SeMiConfig(Strict):
    est_epoch_iters: int = Field(2500, ge=0)  # components start after est_epoch (5 x 500 iters)
    epoch_iters: int = Field(500, ge=1)  # pi-hat^u refresh period (one ACR "epoch")
    alpha: float = Field(0.4, ge=0.0, le=1.0)
    t_tar: float = Field(0.1, gt=0.0)
    mb_size: int = Field(128, ge=1)
    decay_step: int = Field(100, ge=1)
    beta: float = Field(0.99, gt=0.0, le=1.0)
    oheml_scale: float = Field(0.75, gt=0.0)
    proto_t: float = Field(0.09, gt=0.0)
    lambda_ea: float = Field(0.15, ge=0.0)
    tau1: float = Field(2.0, ge=0.0)  # head-1 target LA (applied only with pula)
    tau12: float = Field(2.0, ge=0.0)  # head-2 targets from head-1 logits
    tau2: float = Field(2.0, ge=0.0)  # balanced-head labeled LA
    pula: bool = False
    renormalize_blend: bool = True  # false: the released code's unnormalised blend
    strong_views: int = Field(2, ge=1, le=2)


@register
class SeMi(Algorithm):
    name = "semi"
    section = SeMiConfig
    scaled_keys = ("est_epoch_iters", "epoch_iters", "decay_step")
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
        """Evaluation logits [n, K] of the balanced head g on the features of ``x`` (ACR)."""
        return model.fc_bal(model(x)[1])

    def step(self, batch, t, nets):
        """One loss on ``batch`` (``x`` [B, C, H, W], ``y`` [B], ``x_w``, ``x_s`` (, ``x_s2``)
        [μB, C, H, W]) with head f and the balanced head g on shared features z [n, D]:
        L = L_x + L_x^b + λ_u (L_u + L_u^b) + λ_ea L_ea, where L_x = CE(f(x), y) and
        L_x^b = CE(g(z_x) + τ2 log π_l, y); the target p [μB, K] = softmax(z_w) (``pula``: minus
        τ1 log π_l), from ``est_epoch_iters`` on blended with the bank's prototypes (PLCE,
        :meth:`_blend`); mask [μB] = 1[max p ≥ τ or max softmax(z_w) ≥ τ]; L_u = the strong views'
        mean of (1/μB) Σ mask · ω · CE(f(z_s), argmax p), ω the OHEML weight (:meth:`_oheml`);
        head g learns argmax softmax(z_w − τ12 log π_l) under its own mask (ACR); L_ea, from
        ``est_epoch_iters`` on, aligns the still-unmasked samples' features
        (:meth:`_embedding_align`). Reference: ``train_semi.py`` ``train``. ``pl``: ŷ [μB]."""
        semi, shared, prior = self.cfg.algorithm.semi, self.cfg.algorithm, self.ctx.log_prior
        parts = forward_parts(nets.model, batch)
        head_bal = nets.model.fc_bal
        if self.bank is None:
            self._init_state(parts.feat_l.shape[1])
        active = t >= semi.est_epoch_iters
        loss_x = nn.functional.cross_entropy(parts.logits_l, batch["y"])
        loss_xb = labeled_ce(head_bal(parts.feat_l), batch["y"], prior, semi.tau2)
        logits_w = parts.logits_w.detach()
        probs_raw = torch.softmax(logits_w, dim=1)
        target = torch.softmax(logits_w - semi.tau1 * prior, dim=1) if semi.pula else probs_raw
        if active:
            target = self._blend(target, parts.feat_s[0].detach(), t)
        conf, yhat = target.max(dim=1)
        mask = _confident(conf, probs_raw, shared.threshold)
        weight = self._oheml(target) if active else torch.ones_like(conf)
        loss_u = _mean_views(parts.logits_s, lambda z: masked_hard_ce(z, yhat, mask * weight))
        # Head 2: targets from head-1 logits, logit-adjusted by τ12 (ACR).
        conf_bal, yhat_bal = torch.softmax(logits_w - semi.tau12 * prior, dim=1).max(dim=1)
        probs_bal = torch.softmax(head_bal(parts.feat_w.detach()), dim=1)
        mask_bal = _confident(conf_bal, probs_bal, shared.threshold)
        loss_ub = _mean_views(parts.feat_s, lambda f: masked_hard_ce(head_bal(f), yhat_bal, mask_bal))
        loss = loss_x + loss_xb + shared.lambda_u * (loss_u + loss_ub)
        logs = {"train/loss_x": loss_x.detach(), "train/loss_xb": loss_xb.detach(),
                "train/loss_u": loss_u.detach(), "train/loss_ub": loss_ub.detach(),
                "train/mask_ratio": mask.mean()}
        if active and semi.lambda_ea > 0:
            loss_ea = self._embedding_align(parts.feat_w.detach(), parts.feat_s, mask)
            loss = loss + semi.lambda_ea * loss_ea
            logs["train/loss_ea"] = loss_ea.detach()
        self._update_state(parts.feat_s, yhat, conf, mask, t)
        return StepOut(loss, logs, pl=yhat)

    # -- pieces ------------------------------------------------------------------------------------
    def _init_state(self, dim: int) -> None:
        semi = self.cfg.algorithm.semi
        self.bank = MemoryBank(self.ctx.num_classes, semi.mb_size, dim, self.ctx.device)
        self.center = torch.zeros(dim, device=self.ctx.device)

    def _blend(self, p: torch.Tensor, f_s1: torch.Tensor, t: int) -> torch.Tensor:
        """PLCE: p'_k = (1 − w_k) p_k + w_k q_k, w_k = α · (t / T_max) · π̂^u_k (column-wise)."""
        semi = self.cfg.algorithm.semi
        protos, filled = self.bank.prototypes()
        if not bool(filled.any()):
            return p
        dist = torch.cdist(f_s1, protos)  # Euclidean, unnormalised features, strong view 1
        q = torch.softmax((-dist / semi.t_tar).masked_fill(~filled, float("-inf")), dim=1)
        w = semi.alpha * (t / self.ctx.iterations) * self.pi_u  # [K]
        out = (1 - w) * p + w * q
        return out / out.sum(dim=1, keepdim=True) if semi.renormalize_blend else out

    def _oheml(self, p: torch.Tensor) -> torch.Tensor:
        """w_b = s H(p'_b) / log K + (1 − s): the hardest (max-entropy) samples weigh 1."""
        scale = self.cfg.algorithm.semi.oheml_scale
        pc = p.clamp(1e-8, 1 - 1e-8)
        ent = -(pc * pc.log()).sum(dim=1)
        return scale * ent / math.log(self.ctx.num_classes) + (1 - scale)

    def _embedding_align(self, feat_w, feats_s, mask):
        """EA on still-uncertain samples (mask = 0): soft CE over the D feature dimensions."""
        tp = self.cfg.algorithm.semi.proto_t
        target = torch.softmax((feat_w - self.center) / (tp / 5), dim=1)  # [muB, D]
        self._ea_target_mean = target.mean(dim=0)
        return _mean_views(feats_s, lambda f: ((1 - mask) * -(target * torch.log_softmax(
            f / tp, dim=1)).sum(dim=1)).mean())

    @torch.no_grad()
    def _update_state(self, feats_s, yhat, conf, mask, t):
        semi = self.cfg.algorithm.semi
        sel = mask.bool()
        if self._ea_target_mean is not None:
            self.center = 0.9 * self.center + 0.1 * self._ea_target_mean  # DINO-style centre
            self._ea_target_mean = None
        for f in feats_s:  # both strong views of every confident sample
            self.bank.push(f.detach(), yhat, conf, sel)
        if (t + 1) % semi.decay_step == 0:
            self.bank.decay(semi.beta)
        # Fixed-size counting and no branch on the count: nothing here waits on the GPU.
        self.pl_counts.scatter_add_(0, yhat, sel.long())
        if (t + 1) % semi.epoch_iters == 0:
            total = self.pl_counts.sum()
            self.pi_u = torch.where(total > 0, self.pl_counts.float() / total.clamp_min(1), self.pi_u)

    def state_dict(self):
        """{"bank": None before the first step, else ``feat`` [K, S, D], ``conf``/``fresh``
        [K, S]; "center": c̄ [D]; "pl_counts": long [K]; "pi_u": π̂^u [K]}."""
        return {"bank": None if self.bank is None else self.bank.state_dict(), "center": self.center,
                "pl_counts": self.pl_counts.clone(), "pi_u": self.pi_u.clone()}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s output onto this run's device."""
        if state["bank"] is not None:
            self._init_state(state["bank"]["feat"].shape[2])
            self.bank.load_state_dict(state["bank"])
            self.center = state["center"].to(self.ctx.device)
        self.pl_counts = state["pl_counts"].to(self.ctx.device)
        self.pi_u = state["pi_u"].to(self.ctx.device)


def _confident(conf: torch.Tensor, probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """1[conf ≥ τ or max probs ≥ τ] as float [μB]: a sample passes on either of two predictions."""
    return ((conf >= threshold) | (probs.max(dim=1).values >= threshold)).float()


def _mean_views(items, fn):
    """(1 / #views) Σ_views fn(view): the 1/(2μB) normalisation with 2 strong views."""
    return sum(fn(x) for x in items) / len(items)
