"""SGD (Nesterov) and the three LR schedules of the protocols: constant (DASO, ytaek-oh/daso configs),
cosine lr·cos(7πt/16T) (FixMatch, Sohn et al., NeurIPS 2020; ACR/SeMi code) and warm-up + steps
(DASO's Semi-Aves recipe, paper App. C.2)."""

from __future__ import annotations

import bisect
import math

import torch
from torch import nn

from daso_ray.config import OptimConfig


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.SGD:
    """Weight decay on every parameter by default (as ytaek-oh/daso, the protocol behind the
    published numbers); ``wd_exclude_norm_bias`` drops it for 1-d tensors (BN, biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.wd_exclude_norm_bias:
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
    else:
        groups = [{"params": params, "weight_decay": cfg.weight_decay}]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def lr_factor(cfg: OptimConfig, t: int, total: int) -> float:
    """Multiplier of ``optim.lr`` at iteration ``t`` (0-based) of ``total``."""
    if cfg.schedule == "cosine":
        return math.cos(7 * math.pi * t / (16 * total))  # FixMatch / ACR: cos(7πk/16K)
    if cfg.schedule == "warmup_multistep":
        if t < cfg.warmup_iters:
            return (t + 1) / cfg.warmup_iters
        return cfg.gamma ** bisect.bisect_right(sorted(cfg.milestones), t)
    return 1.0


def make_scheduler(opt: torch.optim.Optimizer, cfg: OptimConfig, total: int):
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda t: lr_factor(cfg, t, total))
